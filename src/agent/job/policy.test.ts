import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateJob, type JobSpec } from '../../shared/job-spec.ts';
import { jobPolicy } from './policy.ts';

const base = { id: 'j1', image: 'foreman-test-job:latest', body: null, callbackUrl: 'http://127.0.0.1:9/cb' };

function valid(extra: Record<string, unknown> = {}): JobSpec {
  const result = validateJob({ ...base, ...extra });
  assert.ok(result.ok, JSON.stringify(result));
  return result.job;
}

test('the job schema takes resources within the engine minima and refuses the rest', () => {
  valid({ resources: {} });
  valid({ resources: { cpus: 0.01, memory: 6 * 1024 * 1024, pids: 1 } });
  for (const resources of [{ cpus: 0 }, { cpus: '1' }, { memory: 1024 }, { memory: 1.5e7 + 0.5 }, { pids: 0 }, 'lots']) {
    const result = validateJob({ ...base, resources });
    assert.equal(result.ok, false, JSON.stringify(resources));
    if (!result.ok) assert.match(result.reason, /resources/);
  }
});

test('maxima of 0 allow any request; with maxima a job may ask for up to them, not more', () => {
  const open = jobPolicy({ allowedImages: [], cpus: 0, memory: 0, pids: 0 });
  assert.equal(open(valid({ resources: { cpus: 64, memory: 2 ** 40, pids: 1e6 } })), undefined);

  const policy = jobPolicy({ allowedImages: [], cpus: 1, memory: 256 * 1024 * 1024, pids: 100 });
  assert.equal(policy(valid()), undefined);
  assert.equal(policy(valid({ resources: { cpus: 1, memory: 256 * 1024 * 1024, pids: 100 } })), undefined);
  assert.equal(policy(valid({ resources: { cpus: 1.5 } })), 'resources.cpus 1.5 is more than this agent allows (docker.cpus = 1)');
  assert.equal(
    policy(valid({ resources: { memory: 512 * 1024 * 1024, pids: 101 } })),
    'resources.memory 536870912 is more than this agent allows (docker.memory_limit = 268435456); resources.pids 101 is more than this agent allows (docker.pids_limit = 100)',
  );
});

test('an unknown resources field is refused, not ignored', () => {
  const policy = jobPolicy({ allowedImages: [], cpus: 0, memory: 0, pids: 0 });
  assert.equal(policy(valid({ resources: { gpus: 1 } })), 'resources.gpus is not a limit foreman applies (it knows cpus, memory, pids)');
});

test('an image matching no allowed pattern is refused, naming the patterns', () => {
  const policy = jobPolicy({ allowedImages: ['foreman-test-job:*', 'registry.example.com/ci/**'], cpus: 0, memory: 0, pids: 0 });
  assert.equal(policy(valid()), undefined);
  assert.equal(policy(valid({ image: 'registry.example.com/ci/a/b:1' })), undefined);
  assert.equal(
    policy(valid({ image: 'busybox' })),
    'image busybox is not allowed on this agent (docker.allowed_images: foreman-test-job:*, registry.example.com/ci/**)',
  );
});

test("a job's own timeout: a whole number of ms from 1; above core.max_job_timeout it is refused, with 0 any is allowed", () => {
  valid({ timeout: 1 });
  for (const timeout of [0, -1, 1.5, '60000', 2_147_483_648]) {
    const result = validateJob({ ...base, timeout });
    assert.equal(result.ok, false, `timeout ${JSON.stringify(timeout)} fails the schema`);
    if (!result.ok) assert.match(result.reason, /^timeout /, 'and the reason names it');
  }
  const open = jobPolicy({ allowedImages: [], cpus: 0, memory: 0, pids: 0, maxTimeout: 0 });
  assert.equal(open(valid({ timeout: 2_147_483_647 })), undefined, 'no maximum');
  const capped = jobPolicy({ allowedImages: [], cpus: 0, memory: 0, pids: 0, maxTimeout: 3_600_000 });
  assert.equal(capped(valid({ timeout: 3_600_000 })), undefined, 'up to the maximum');
  assert.equal(capped(valid()), undefined, 'no timeout of its own: the default, which the config keeps within the maximum');
  assert.equal(capped(valid({ timeout: 3_600_001 })), 'timeout 3600001 is more than this agent allows (core.max_job_timeout = 3600000)');
});
