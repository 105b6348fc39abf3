/**
 * A job's cancel signal reaches its image pull: a registry that accepts the engine's connection
 * and never answers must hold up neither a shutdown nor the completion timeout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { exitCode, readLog, spawnStack, startStack } from './support/agents.ts';
import { containersOf } from './support/containers.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { job } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

describe('a pull that never ends', () => {
  /** Takes the engine's connections and never answers. */
  let registry: FakeRegistry;

  before(async () => {
    await testJobImage();
    registry = await new FakeRegistry('hang').start();
  });

  after(() => registry?.close());

  test('SIGTERM during the pull: the agent exits within shutdown_timeout + 2 s, reports agent-shutdown, leaves no container', async (t) => {
    const shutdownTimeoutMs = 5000;
    const s = await spawnStack({ FOREMAN_CORE_SHUTDOWN_TIMEOUT: String(shutdownTimeoutMs), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    const { control, callbacks } = s;
    try {
      const seen = registry.connections;
      control.reply([job('hang-term-1', callbacks.url(), { values: [1] }, { image: registry.image('hang-term') })]);
      await waitFor('the engine to reach the registry', () => registry.connections > seen, 30_000);
      const agentId = String(control.polls[0]?.headers['x-foreman-agent-id']);
      const signalledAt = Date.now();
      s.agent.child.kill('SIGTERM');
      const code = await exitCode(s.agent, shutdownTimeoutMs + 30_000);
      const tookMs = Date.now() - signalledAt;
      t.diagnostic(`exited ${tookMs} ms after SIGTERM`);
      assert.equal(code, 0, readLog(s.agent.logFile).slice(-2000));
      assert.ok(tookMs < shutdownTimeoutMs + 2000, `the agent took ${tookMs} ms to exit`);
      const report = callbacks.completion('hang-term-1');
      assert.equal(report?.headers['x-foreman-job-outcome'], 'agent-shutdown', readLog(s.agent.logFile).slice(-2000));
      assert.match((JSON.parse(report.body.toString()) as { message: string }).message, /before the job container started/);
      assert.equal((await containersOf(agentId)).length, 0);
    } finally {
      await s.close({ signal: 'SIGKILL' });
    }
  });

  test('a cancel during the pull abandons it at once: reported canceled, no container', async (t) => {
    const stack = await startStack({ FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    const { control, callbacks, running } = stack;
    try {
      const seen = registry.connections;
      control.reply([job('hang-cancel-1', callbacks.url(), { values: [1] }, { image: registry.image('hang-cancel') })]);
      await waitFor('the engine to reach the registry', () => registry.connections > seen, 30_000);
      const sentAt = Date.now();
      control.replyHeaders = { 'x-foreman-cancel': 'hang-cancel-1' };
      const report = await callbacks.waitForCompletion('hang-cancel-1', 10_000);
      control.replyHeaders = {};
      t.diagnostic(`reported canceled ${report.at - sentAt} ms after the cancel was offered`);
      assert.ok(report.at - sentAt < 2000, `reported ${report.at - sentAt} ms after the cancel`);
      assert.equal(report.headers['x-foreman-job-outcome'], 'canceled');
      assert.match((JSON.parse(report.body.toString()) as { message: string }).message, /before its container started/);
      await waitFor('hang-cancel-1 removed', () => running.store.get('hang-cancel-1')?.state === 'removed');
      assert.equal((await containersOf(running.agent.agentId)).length, 0);
    } finally {
      await stack.close();
    }
  });

  test('a short job_completion_timeout ends the pull: reported timed-out within 2 s of the timeout, and the slot is freed', async (t) => {
    const timeoutMs = 2000;
    const stack = await startStack({ FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: String(timeoutMs), FOREMAN_CORE_MAX_CONCURRENT_JOBS: '1' });
    const { control, callbacks, running } = stack;
    try {
      control.reply([job('hang-timeout-1', callbacks.url(), { values: [1] }, { image: registry.image('hang-timeout') })]);
      const served = await waitFor('the poll that served the job', () => (control.queued === 0 ? control.polls.at(-1) : undefined));
      const report = await callbacks.waitForCompletion('hang-timeout-1', 30_000);
      const late = report.at - (served.at + timeoutMs);
      t.diagnostic(`reported ${late} ms after the timeout`);
      assert.equal(report.headers['x-foreman-job-outcome'], 'timed-out');
      assert.ok(late > -200, `reported ${-late} ms before the timeout`);
      assert.ok(late < 2000, `reported ${late} ms after the timeout`);
      const body = JSON.parse(report.body.toString()) as { reason: string; message: string };
      assert.equal(body.reason, 'timeout');
      assert.match(body.message, /image pull and container start did not finish within job_completion_timeout \(2000 ms\)/);
      // With one slot, the next job runs only once the timed-out one gave its slot back.
      control.reply([job('after-hang-1', callbacks.url(), { values: [2, 2] })]);
      const next = await callbacks.waitForCompletion('after-hang-1', 30_000);
      assert.deepEqual(JSON.parse(next.body.toString()), { result: 4 });
      await waitFor('hang-timeout-1 removed', () => running.store.get('hang-timeout-1')?.state === 'removed');
      const left = await containersOf(running.agent.agentId);
      assert.equal(left.filter((c) => c.Labels['foreman.job-id'] === 'hang-timeout-1').length, 0);
    } finally {
      await stack.close();
    }
  });
});
