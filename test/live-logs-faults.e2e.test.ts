/** Live job logs survive faults, end to end: a logs server down for 30 s, and the agent killed with -9 twice mid-stream. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { spawnStack, startStack } from './support/agents.ts';
import { containersOf } from './support/containers.ts';
import { freePort } from './support/ports.ts';
import { job } from './support/reports.ts';
import { CallbackReceiver } from './support/servers.ts';
import { assertWhole, joinedLines, printedLines, receivedLog } from './support/logs.ts';
import { waitFor } from './support/wait.ts';

describe('live job logs under faults', () => {
  /** The logs server of both tests (each reads its own job's lines). */
  let logs: CallbackReceiver;

  before(async () => {
    await testJobImage();
    logs = await new CallbackReceiver().start();
  });

  after(() => logs?.stop());

  /** Every line once, in order, and the log end before the report. */
  function assertDelivered(callbacks: CallbackReceiver, jobId: string, shape: { lines: number }): ReturnType<typeof receivedLog> {
    const log = receivedLog(logs.requests, jobId);
    assertWhole(log);
    const printed = printedLines(shape);
    assert.deepEqual(joinedLines(log.lines, 'stdout'), printed.stdout);
    assert.deepEqual(joinedLines(log.lines, 'stderr'), printed.stderr);
    const report = callbacks.completion(jobId);
    assert.ok(report && log.end && log.end.at <= report.at, 'the log end arrived before the report');
    return log;
  }

  test('the logs server down for 30 s mid-stream: nothing is lost, and the report waits for the whole log', async (t) => {
    const stack = await startStack();
    const { control, callbacks, running } = stack;
    try {
      const shape = { lines: 6000 };
      control.reply([job('outage-1', callbacks.url(), { action: 'log', ...shape, perTick: 100, tickMs: 100 }, { logsUrl: logs.url('logs/outage-1') })]);
      await waitFor('the first log batch', () => receivedLog(logs.requests, 'outage-1').lines.length > 0);
      await logs.stop();
      const downAt = Date.now();
      // The job prints on and completes while the logs server is down; its report is held back.
      await waitFor('the job container to exit', async () => (await containersOf(running.agent.agentId)).every((c) => c.State === 'exited'), 30_000);
      await waitFor('30 s of outage', () => Date.now() - downAt >= 30_000, 35_000, 200);
      assert.equal(callbacks.completion('outage-1'), undefined, 'no report while the log is not all delivered');
      const before = receivedLog(logs.requests, 'outage-1').lines.length;
      await logs.start();
      const report = await callbacks.waitForCompletion('outage-1', 30_000);
      assert.equal(report.headers['x-foreman-job-outcome'], 'succeeded');
      const log = assertDelivered(callbacks, 'outage-1', shape);
      assert.ok(before < log.lines.length, `${before} lines before the outage, ${log.lines.length} in all`);
      t.diagnostic(`${before} lines before the outage; the report came ${report.at - downAt - 30_000} ms after the logs server was back`);
    } finally {
      await stack.close();
    }
  });

  test('the agent killed with -9 twice mid-stream: after each restart it reads on from where it stopped', async (t) => {
    const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()) });
    const { control, callbacks } = s;
    try {
      const shape = { lines: 8000, longEvery: 500 };
      control.reply([job('kill-1', callbacks.url(), { action: 'log', ...shape, perTick: 100, tickMs: 100 }, { logsUrl: logs.url('logs/kill-1') })]);
      for (let round = 1; round <= 2; round++) {
        const seen = receivedLog(logs.requests, 'kill-1').lines.length;
        await waitFor(`log lines after start ${round}`, () => receivedLog(logs.requests, 'kill-1').lines.length > seen, 30_000);
        await s.restart({ signal: 'SIGKILL' });
      }
      const report = await callbacks.waitForCompletion('kill-1', 60_000);
      assert.equal(report.headers['x-foreman-job-outcome'], 'succeeded');
      const log = assertDelivered(callbacks, 'kill-1', shape);
      assert.ok(log.lines.length > 8000, `${log.lines.length} lines`);
      t.diagnostic(`${log.lines.length} lines in ${log.batches} batches; ${log.duplicates} lines sent again after the restarts`);
    } finally {
      await s.close();
    }
  });
});
