/**
 * A job's `secrets` on the real engine, with a real agent process: files under /run/foreman/secrets (read-only,
 * mode 0400), never in the container's config; hidden in the live log and the agent's log in every encoded form;
 * no value anywhere in the data directory (database, WAL, log store) after the job ended or after a restart; a job
 * with secrets found live after a restart ends `agent-shutdown`; values a job adds through the job API's redactions
 * route are hidden from then on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { testJobImage } from './support/image.ts';
import { readLog, spawnStack, type SpawnedStack } from './support/agents.ts';
import { containersOf, docker } from './support/containers.ts';
import { job, reportOf } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

/** A value whose raw, base64, URL-encoded and JSON-escaped forms all differ. */
const VALUE = `tok "quoted" /+&=é-${Math.random().toString(36).slice(2)}`;
const LIVE_VALUE = `live-secret-${Math.random().toString(36).slice(2)}`;

/** Every form of `value` a leak could take. */
function forms(value: string): string[] {
  return [value, Buffer.from(value).toString('base64'), encodeURIComponent(value), JSON.stringify(value).slice(1, -1)];
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [path] : [];
  });
}

describe('secrets', () => {
  let s: SpawnedStack;

  /** The data dir's files that hold `value` in any form (database, WAL, shared memory, log store). */
  function leaksInDataDir(value: string): string[] {
    const dataDir = s.env.env.FOREMAN_CORE_DATA_DIR ?? '';
    return filesUnder(dataDir).filter((file) => {
      const bytes = readFileSync(file);
      return forms(value).some((form) => bytes.includes(Buffer.from(form)));
    });
  }

  function secretFilesLeft(): string[] {
    const root = join('/dev/shm', `foreman-${s.agentId() ?? ''}`);
    return existsSync(root) ? filesUnder(root) : [];
  }

  before(async () => {
    await testJobImage();
    // Containers stay a minute after they stop, so the test can inspect them (the close removes them).
    s = await spawnStack({ FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '60000', FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4' });
    await s.waitForAgentId();
  });

  after(() => s?.close());

  test('secrets arrive as read-only files, never in the config, and are hidden wherever the job prints them', async () => {
    s.control.reply([
      job(
        'sec-1',
        s.callbacks.url(),
        { action: 'secret', name: 'token' },
        { secrets: { token: VALUE, 'other.pem': 'second-value-xyz' }, logsUrl: s.callbacks.url('logs/sec-1') },
      ),
    ]);
    const done = await s.callbacks.waitForCompletion('sec-1', 60_000);
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', `the job read its secret: ${done.body.toString()}`);
    const seen = JSON.parse(done.body.toString()) as { sha256: string; length: number; mode: string; names: string[]; writeError: string | null };
    assert.equal(seen.sha256, createHash('sha256').update(VALUE).digest('hex'), 'the file holds the value, byte for byte');
    assert.equal(seen.mode, '400', 'mode 0400');
    assert.deepEqual(seen.names.sort(), ['other.pem', 'token'], 'one file per secret');
    assert.equal(seen.writeError, 'EROFS', 'the folder is read-only for the job');

    const container = await waitFor('the container', async () => (await containersOf(s.agentId())).find((c) => c.Labels['foreman.job-id'] === 'sec-1'));
    const inspected = JSON.stringify(await docker.getContainer(container.Id).inspect());
    assert.ok(!forms(VALUE).some((form) => inspected.includes(form)), 'the container config holds no value (docker inspect)');
    assert.ok(inspected.includes('/run/foreman/secrets'), 'it names the folder only');

    // The whole live log arrived (the final update waits for it): no form of the value in it, and the hiding shows.
    const sent = s.callbacks.requests.map((r) => `${JSON.stringify(r.headers)}\n${r.body.toString()}`).join('\n');
    for (const form of forms(VALUE)) assert.ok(!sent.includes(form), `nothing the agent sent holds ${JSON.stringify(form)}`);
    assert.match(sent, /raw \[redacted\]/, 'the raw value is hidden');
    assert.match(sent, /base64 \[redacted\]/, 'its base64 too');
    assert.match(sent, /url \[redacted\]/, 'its URL-encoded form too');
    assert.match(sent, /json \[redacted\]/, 'its JSON-escaped form too');
    const agentLog = readLog(s.agent.logFile);
    assert.ok(!forms(VALUE).some((form) => agentLog.includes(form)), "the agent's own log holds no value");

    await waitFor('the secret files removed once the container stopped', () => secretFilesLeft().length === 0);
    assert.deepEqual(leaksInDataDir(VALUE), [], 'no file of the data dir holds the value (db, WAL, log store)');
  });

  test('a job with secrets found live after a restart ends agent-shutdown; no value stays anywhere', async () => {
    s.control.reply([job('sec-live', s.callbacks.url(), { action: 'secret', name: 'key', then: 'sleep' }, { secrets: { key: LIVE_VALUE } })]);
    await waitFor('the job read its secret', () => s.callbacks.for('sec-live').some((r) => r.headers['x-foreman-job-status'] === 'running'), 60_000);
    assert.deepEqual(leaksInDataDir(LIVE_VALUE), [], 'not in the data dir while the job runs either');
    await s.restart({ signal: 'SIGKILL' });
    const done = await s.callbacks.waitForCompletion('sec-live', 60_000);
    const report = reportOf(done);
    assert.equal(report.outcome, 'agent-shutdown', 'ended as the design says');
    assert.match(report.message, /secrets are kept in memory only/, report.message);
    await waitFor('its container stopped', async () => {
      const c = (await containersOf(s.agentId())).find((x) => x.Labels['foreman.job-id'] === 'sec-live');
      return c?.State === 'exited';
    });
    assert.deepEqual(secretFilesLeft(), [], 'the files the killed agent left are swept at start');
    assert.deepEqual(leaksInDataDir(LIVE_VALUE), [], 'no file of the data dir holds the value after the restart');
    assert.ok(statSync(s.env.env.FOREMAN_CORE_DATA_DIR ?? '').isDirectory(), 'the data dir is still there');
  });

  test('a job adds values to redact through the job API: hidden from then on, in every form, never stored', async () => {
    const value = `runtime-${Math.random().toString(36).slice(2)}`;
    // The job redacts the value it is sent reversed: the value itself is then in no stored job spec.
    const reversed = [...value].reverse().join('');
    s.control.reply([job('red-1', s.callbacks.url(), { action: 'redact', value: reversed }, { logsUrl: s.callbacks.url('logs/red-1') })]);
    const done = await s.callbacks.waitForCompletion('red-1', 60_000);
    assert.deepEqual(JSON.parse(done.body.toString()), { redactStatus: 200 }, 'the job API took the values');
    const sent = s.callbacks.requests.map((r) => r.body.toString()).join('\n');
    assert.match(sent, /after raw \[redacted\]/, 'the raw value is hidden from then on');
    assert.match(sent, /after base64 \[redacted\]/, 'its base64 too');
    assert.ok(!forms(value).some((form) => sent.includes(form)), 'no form of it went out');
    assert.deepEqual(leaksInDataDir(value), [], 'nor is it in the data dir');
  });

  test('a secret name that is no plain file name is refused as invalid, and nothing runs', async () => {
    s.control.reply([job('sec-bad', s.callbacks.url(), { action: 'secret', name: 'x' }, { secrets: { '../escape': 'v-123456' } })]);
    const report = reportOf(await s.callbacks.waitForCompletion('sec-bad'));
    assert.equal(report.outcome, 'invalid', 'refused');
    assert.match(report.message, /secrets has a name that is not a file name/, report.message);
  });
});
