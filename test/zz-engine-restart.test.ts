/**
 * The Docker engine restarts under a running job. Runs last (zz-) because it takes the engine away.
 * Needs root and a local dockerd, as in CI; elsewhere it says why it skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { canRestartEngine, restartEngine } from './support/engine.ts';
import { CallbackReceiver, FakeControlServer, job, readLog, spawnAgent, teardown, testEnv, waitFor } from './support/harness.ts';

test('the agent survives an engine restart: says so, reconnects, reports the killed job, runs the next', { skip: canRestartEngine() ? false : 'needs root and a local dockerd' }, async () => {
  await testJobImage();
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, { FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
  const agent = spawnAgent(env);
  let agentId: string | undefined;
  try {
    control.reply([job('engine-1', callbacks.url(), { action: 'progress', steps: 60, delayMs: 500 })]);
    const first = await waitFor('the first update', () => callbacks.for('engine-1')[0], 60_000);
    agentId = String(first.headers['x-foreman-agent-id']);
    await restartEngine();
    // Without live-restore the engine stops its containers: the job is reported with the exit code.
    const ended = await callbacks.waitForCompletion('engine-1', 60_000);
    assert.equal(ended.headers['x-foreman-job-outcome'], 'failed');
    const { exitCode } = JSON.parse(ended.body.toString()) as { exitCode: number };
    assert.ok(exitCode === 143 || exitCode === 137, `exit code ${exitCode}`);
    control.reply([job('engine-2', callbacks.url(), { values: [2, 3] })]);
    const next = await callbacks.waitForCompletion('engine-2', 60_000);
    assert.deepEqual(JSON.parse(next.body.toString()), { result: 5 });
    const log = readLog(agent.logFile);
    assert.match(log, /lost the Docker engine; reconnecting/);
    assert.match(log, /Docker engine answers again/);
    assert.equal(agent.child.exitCode, null, 'the agent kept running');
  } finally {
    await teardown({ agent, control, callbacks, env, agentId });
  }
});
