import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { MemoryStore } from '../../jobs/memory-store.ts';
import { Redactor } from '../../logs/redactor.ts';
import type { JobSpec } from '../../shared/job-spec.ts';
import { JobSecrets, redactionForms, withoutSecretValues } from './secrets.ts';

const log = pino({ level: 'silent' });
const spec = (secrets?: Record<string, string>): JobSpec => ({
  id: 'j1',
  image: 'img:1',
  body: {},
  callbackUrl: 'http://127.0.0.1:9/cb',
  ...(secrets ? { secrets } : {}),
});

test('the stored spec keeps the names, never the values', () => {
  assert.deepEqual(withoutSecretValues(spec({ a: 'v1', b: 'v2' })).secrets, { a: '', b: '' }, 'names with blank values');
  const plain = spec();
  assert.equal(withoutSecretValues(plain), plain, 'a job without secrets is stored as it came');
});

test('every encoded form of a value is hidden, also when the engine cut it across a line split', () => {
  const value = 'p@ss "w" /+&=é';
  const redactor = new Redactor(redactionForms(value));
  for (const form of [value, Buffer.from(value).toString('base64'), encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]) {
    assert.equal(redactor.redact(`x ${form} y`), 'x [redacted] y', form);
  }
  const cut = Math.floor(value.length / 2);
  assert.equal(redactor.redact(`aaaa${value.slice(0, cut)}`, { continues: true }), 'aaaa[redacted]', 'the first piece');
  assert.equal(redactor.redact(`${value.slice(cut)}bbbb`, { continued: true }), '[redacted]bbbb', 'the second piece');
  assert.deepEqual(redactionForms(''), [], 'an empty value hides nothing');
});

test('refused where they cannot be delivered: not a tmpfs, or an executor that cannot', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-secrets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const onDisk = new JobSecrets(log, { dir, agentId: 'a', unsupported: undefined, user: undefined });
  const tmpIsTmpfs = onDisk.refuses(spec({ a: 'v' })) === undefined;
  if (!tmpIsTmpfs) assert.match(onDisk.refuses(spec({ a: 'v' })) ?? '', /is not a tmpfs/, 'a folder on a disk is refused');
  assert.equal(onDisk.refuses(spec()), undefined, 'a job without secrets is never refused');
  const swarm = new JobSecrets(log, { dir: '/dev/shm', agentId: 'a', unsupported: 'the swarm executor does not take jobs with secrets', user: undefined });
  assert.match(swarm.refuses(spec({ a: 'v' })) ?? '', /swarm/, 'the reason');
});

test('files are written 0400 in a 0500 folder, lost after a restart, and removed on release', (t) => {
  const shm = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const agentId = `unit-${process.pid}-${Date.now()}`;
  t.after(() => rmSync(join(shm, `foreman-${agentId}`), { recursive: true, force: true }));
  const secrets = new JobSecrets(log, { dir: shm, agentId, unsupported: undefined, user: undefined });
  const store = new MemoryStore();
  const received = spec({ token: 'value-1', 'cert.pem': 'value-2' });
  store.admit(withoutSecretValues(received), 'job-secret', 'c');
  const job = store.get('j1');
  assert.ok(job, 'stored');
  assert.equal(secrets.lost(job), true, 'names without values: the values went with a restart');
  secrets.hold(received);
  assert.equal(secrets.lost(job), false, 'held');
  assert.ok(secrets.hidden('j1').includes('value-1'), 'its values are hidden in its logs');
  const dir = secrets.materialize(job);
  assert.ok(dir, 'a folder to bind');
  assert.deepEqual(readdirSync(dir).sort(), ['cert.pem', 'token'], 'one file per secret');
  assert.equal(readFileSync(join(dir, 'token'), 'utf8'), 'value-1', 'the value');
  assert.equal(statSync(join(dir, 'token')).mode & 0o777, 0o400, 'mode 0400');
  assert.equal(statSync(dir).mode & 0o777, 0o500, 'folder 0500');
  secrets.release('j1');
  secrets.release('j1');
  assert.equal(existsSync(dir), false, 'removed');
  store.transition('j1', 'creating');
  assert.equal(secrets.lost(store.transition('j1', 'stopped')), false, 'an ended job is never lost: its values were released on purpose');
  assert.deepEqual(secrets.hidden('j1'), [], 'and forgotten');
});
