/**
 * What each job used, measured on the real engine and carried in its final report (`x-foreman-usage`, and the
 * `usage` of the agent's own reports): memory peaks, CPU time, processes, wall time, I/O.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './support/wait.ts';
import { testJobImage } from './support/image.ts';
import { type Stack, startStack } from './support/agents.ts';
import { job, reportOf } from './support/reports.ts';
import type { RecordedRequest } from './support/servers.ts';

const MiB = 1024 * 1024;
const LIMIT = 512 * MiB;

interface Usage {
  cpuSeconds: number | null;
  memoryPeakBytes: number | null;
  memoryLimitBytes: number | null;
  pidsPeak: number | null;
  wallMs: number;
  networkRxBytes?: number;
  networkTxBytes?: number;
  note?: string;
}

function usageOf(request: RecordedRequest): Usage {
  const header = request.headers['x-foreman-usage'];
  assert.equal(typeof header, 'string', `the final report carries x-foreman-usage (headers: ${JSON.stringify(request.headers)})`);
  return JSON.parse(String(header)) as Usage;
}

describe('usage in every final report', () => {
  let stack: Stack;

  before(async () => {
    await testJobImage();
    stack = await startStack({ FOREMAN_DOCKER_MEMORY_LIMIT: String(LIMIT), FOREMAN_CORE_USAGE_INTERVAL: '500ms', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '60s' });
  });

  after(() => stack?.close());

  test('a job that allocates and touches 256 MiB reports its peak within 10 % of what its own cgroup recorded', async (t) => {
    const { control, callbacks } = stack;
    control.reply([job('alloc-256', callbacks.url(), { action: 'alloc', mb: 256, holdMs: 1500 })]);
    const done = await callbacks.waitForCompletion('alloc-256');
    const usage = usageOf(done);
    const own = (JSON.parse(done.body.toString()) as { cgroupPeakBytes: number | null }).cgroupPeakBytes;
    t.diagnostic(`reported peak ${((usage.memoryPeakBytes ?? 0) / MiB).toFixed(1)} MiB; the job's own cgroup recorded ${((own ?? NaN) / MiB).toFixed(1)} MiB`);
    const peak = usage.memoryPeakBytes ?? 0;
    assert.ok(peak >= 256 * MiB, `at least the 256 MiB it touched (${(peak / MiB).toFixed(1)} MiB)`);
    if (own !== null) assert.ok(Math.abs(peak - own) <= 0.1 * own, `within 10 % of the kernel's own peak (${(own / MiB).toFixed(1)} MiB)`);
    assert.equal(usage.memoryLimitBytes, LIMIT, 'the limit docker.memory_limit gave it');
    assert.ok((usage.pidsPeak ?? 0) >= 1, `processes seen (${usage.pidsPeak})`);
    assert.ok(usage.wallMs >= 1500, `wall time covers the hold (${usage.wallMs} ms)`);
    assert.ok((usage.networkRxBytes ?? 0) > 0, 'the network counters of its container (it talked to the job API)');
  });

  test('a job that burns 2 s of CPU reports 2 s (±10 %) of CPU time', async (t) => {
    const { control, callbacks } = stack;
    control.reply([job('burn-2s', callbacks.url(), { action: 'burn', cpuMs: 2000 })]);
    const done = await callbacks.waitForCompletion('burn-2s');
    const usage = usageOf(done);
    const own = (JSON.parse(done.body.toString()) as { cpuMs: number }).cpuMs;
    t.diagnostic(`the job measured ${own} ms of its own CPU; the report says ${usage.cpuSeconds} s`);
    assert.ok(usage.cpuSeconds !== null && Math.abs(usage.cpuSeconds - 2) <= 0.2, `cpuSeconds ${usage.cpuSeconds}, expected 2 ± 0.2`);
  });

  test('an OOM-killed job reports a peak of at least 95 % of its limit', async () => {
    const { control, callbacks } = stack;
    control.reply([job('oom-usage', callbacks.url(), { action: 'oom' })]);
    const done = await callbacks.waitForCompletion('oom-usage');
    assert.equal(done.headers['x-foreman-job-outcome'], 'oom-killed', 'killed for its memory');
    const usage = usageOf(done);
    assert.ok((usage.memoryPeakBytes ?? 0) >= 0.95 * LIMIT, `peak ${(usage.memoryPeakBytes ?? 0) / MiB} MiB against a ${LIMIT / MiB} MiB limit`);
    assert.deepEqual((reportOf(done) as unknown as { usage: Usage }).usage, usage, 'the body carries the same usage');
  });

  test('endings the agent reports carry usage too: failed, timed-out, canceled', async () => {
    const { control, callbacks } = stack;
    control.reply([
      // Long enough to be sampled: a container that exits by itself cannot be asked afterwards.
      job('usage-failed', callbacks.url(), { action: 'exit', code: 3, ms: 2500 }),
      job('usage-timeout', callbacks.url(), { action: 'sleep' }, { timeout: 4000 }),
      job('usage-cancel', callbacks.url(), { action: 'sleep' }),
    ]);
    // Canceled after it has run a while: a container that is gone cannot be asked what it used.
    await waitFor('usage-cancel to run', () => stack.running.store.get('usage-cancel')?.state === 'running', 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    control.replyHeaders = { 'x-foreman-cancel': 'usage-cancel' };
    for (const [id, outcome] of [
      ['usage-failed', 'failed'],
      ['usage-timeout', 'timed-out'],
      ['usage-cancel', 'canceled'],
    ] as const) {
      const done = await callbacks.waitForCompletion(id, 60_000);
      assert.equal(done.headers['x-foreman-job-outcome'], outcome, `${id} ended ${outcome}`);
      const usage = usageOf(done);
      assert.ok(usage.wallMs > 0 && usage.cpuSeconds !== null && (usage.memoryPeakBytes ?? 0) > 0, `${id}: ${JSON.stringify(usage)}`);
    }
    control.replyHeaders = {};
  });
});
