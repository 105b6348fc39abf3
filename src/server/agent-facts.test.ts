import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeAttributes, encodeUsage } from '../protocol/wire.ts';
import { checkUsage, newTraceparent, parseAttributes, parseImages } from './agent-facts.ts';

test("a poll's host facts read back as the agent encodes them; a malformed header is ignored", () => {
  const header = encodeAttributes(
    {
      arch: 'x64',
      os: 'linux',
      cpus: 2,
      memoryBytes: 8_000_000_000,
      engine: 'docker',
      engineVersion: '20.10.24',
      runtimes: ['runc', 'nvidia'],
      diskFreeBytes: 5e9,
    },
    'docker',
  );
  assert.deepEqual(
    parseAttributes(header),
    {
      arch: 'x64',
      os: 'linux',
      cpus: '2',
      memory: '8000000000',
      disk_free: '5000000000',
      engine: 'docker',
      engine_version: '20.10.24',
      runtimes: 'runc,nvidia',
      executor: 'docker',
    },
    'every fact, decoded',
  );
  for (const bad of ['cpus', '=2', 'cpus=%E0%A4%A', 'x'.repeat(9000), Array.from({ length: 40 }, (_, i) => `k${i}=v`).join(','), '__proto__=1']) {
    assert.equal(parseAttributes(bad), undefined, `ignored: ${bad.slice(0, 40)}`);
  }
  assert.equal(parseAttributes(undefined), undefined, 'absent: keep the last ones');
});

test("a poll's images: the references, decoded, at most 50; bad entries skipped", () => {
  assert.deepEqual(parseImages(`${encodeURIComponent('registry:5000/app:1')}@sha256:abc,busybox@sha256:def,%E0%A4%A@sha256:x,,app@x`), [
    'registry:5000/app:1',
    'busybox',
    'app',
  ]);
  assert.equal(parseImages(Array.from({ length: 80 }, (_, i) => `i${i}@sha256:0`).join(',')).length, 50, 'bounded');
  assert.deepEqual(parseImages(undefined), [], 'absent: none');
  assert.deepEqual(parseImages('x'.repeat(9000)), [], 'too long: none');
});

test("a final report's usage is kept when it is a JSON object of bounded size", () => {
  const usage = { cpuSeconds: 1.5, memoryPeakBytes: 1024, memoryLimitBytes: null, pidsPeak: 3, wallMs: 2000 };
  assert.deepEqual(JSON.parse(checkUsage(encodeUsage(usage)) ?? 'null'), usage);
  for (const bad of ['nope', '[1]', '3', 'null', `{"a":"${'x'.repeat(5000)}"}`]) assert.equal(checkUsage(bad), undefined, `ignored: ${bad.slice(0, 20)}`);
});

test('a trace the server begins is a sampled W3C traceparent, new each time', () => {
  assert.match(newTraceparent(), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.notEqual(newTraceparent(), newTraceparent(), 'random');
});
