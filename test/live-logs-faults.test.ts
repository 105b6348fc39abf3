/** Live job logs survive faults, end to end: a logs server down for 30 s, and the agent killed with -9 twice mid-stream. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import {
  CallbackReceiver,
  FakeControlServer,
  cleanup,
  containersOf,
  freePort,
  job,
  spawnAgent,
  startAgent,
  testEnv,
  waitFor,
  type InProcessAgent,
  type TestEnv,
} from './support/harness.ts';
import { assertWhole, joinedLines, printedLines, receivedLog } from './support/logs.ts';

describe('live job logs under faults', () => {
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  let logs: CallbackReceiver;
  const envs: Array<{ env: TestEnv; agentId?: string }> = [];

  before(async () => {
    await testJobImage();
    control = await new FakeControlServer().start();
    callbacks = await new CallbackReceiver().start();
    logs = await new CallbackReceiver().start();
  });

  after(async () => {
    await control?.close();
    await callbacks?.stop();
    await logs?.stop();
    for (const { env, agentId } of envs) await cleanup(env, agentId);
  });

  /** Every line once, in order, and the log end before the report. */
  function assertDelivered(jobId: string, shape: { lines: number }): ReturnType<typeof receivedLog> {
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
    const env = testEnv(control.url);
    let running: InProcessAgent | undefined;
    envs.push({ env });
    try {
      running = await startAgent(env);
      envs[envs.length - 1] = { env, agentId: running.agent.agentId };
      const shape = { lines: 6000 };
      control.reply([job('outage-1', callbacks.url(), { action: 'log', ...shape, perTick: 100, tickMs: 100 }, { logsUrl: logs.url('logs/outage-1') })]);
      await waitFor('the first log batch', () => receivedLog(logs.requests, 'outage-1').lines.length > 0);
      await logs.stop();
      const downAt = Date.now();
      // The job prints on and completes while the logs server is down; its report is held back.
      await waitFor('the job container to exit', async () => (await containersOf(running?.agent.agentId)).every((c) => c.State === 'exited'), 30_000);
      await waitFor('30 s of outage', () => Date.now() - downAt >= 30_000, 35_000, 200);
      assert.equal(callbacks.completion('outage-1'), undefined, 'no report while the log is not all delivered');
      const before = receivedLog(logs.requests, 'outage-1').lines.length;
      await logs.start();
      const report = await callbacks.waitForCompletion('outage-1', 30_000);
      assert.equal(report.headers['x-foreman-job-outcome'], 'succeeded');
      const log = assertDelivered('outage-1', shape);
      assert.ok(before < log.lines.length, `${before} lines before the outage, ${log.lines.length} in all`);
      t.diagnostic(`${before} lines before the outage; the report came ${report.at - downAt - 30_000} ms after the logs server was back`);
    } finally {
      await running?.close();
    }
  });

  test('the agent killed with -9 twice mid-stream: after each restart it reads on from where it stopped', async (t) => {
    const env = testEnv(control.url, { FOREMAN_CORE_PORT: String(await freePort()) });
    const entry: { env: TestEnv; agentId?: string } = { env };
    envs.push(entry);
    const shape = { lines: 8000, longEvery: 500 };
    control.reply([job('kill-1', callbacks.url(), { action: 'log', ...shape, perTick: 100, tickMs: 100 }, { logsUrl: logs.url('logs/kill-1') })]);
    let agent = spawnAgent(env);
    try {
      for (let round = 1; round <= 2; round++) {
        const seen = receivedLog(logs.requests, 'kill-1').lines.length;
        await waitFor(`log lines after start ${round}`, () => receivedLog(logs.requests, 'kill-1').lines.length > seen, 30_000);
        entry.agentId ??= String(logs.requests.find((r) => r.method === 'POST')?.headers['x-foreman-agent-id']);
        agent.child.kill('SIGKILL');
        await agent.exited;
        agent = spawnAgent(env);
      }
      const report = await callbacks.waitForCompletion('kill-1', 60_000);
      assert.equal(report.headers['x-foreman-job-outcome'], 'succeeded');
      const log = assertDelivered('kill-1', shape);
      assert.ok(log.lines.length > 8000, `${log.lines.length} lines`);
      t.diagnostic(`${log.lines.length} lines in ${log.batches} batches; ${log.duplicates} lines sent again after the restarts`);
    } finally {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
  });
});
