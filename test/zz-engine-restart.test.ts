/**
 * The Docker engine restarts under a running job. The engine is a private dockerd of the test's own
 * (test/support/engine.ts), restarted by its pid: the host's dockerd and its containers are left alone.
 * Needs root, dockerd and ip, as in CI; elsewhere it says why it skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { privateEngineUnavailable, startPrivateEngine } from './support/engine.ts';
import { CallbackReceiver, FakeControlServer, job, readLog, spawnAgent, teardown, testEnv, waitFor } from './support/harness.ts';

test('the agent survives an engine restart: says so, reconnects, reports the killed job, runs the next', { skip: privateEngineUnavailable() ?? false }, async (t) => {
  const image = await testJobImage();
  const engine = await startPrivateEngine({ loadImages: [image] });
  try {
    t.diagnostic(`private engine ${engine.url} (bridge ${engine.bridge}, ${engine.range}): started in ${engine.timings.startMs} ms, image loaded in ${engine.timings.loadImagesMs} ms`);
    const control = await new FakeControlServer().start();
    const callbacks = await new CallbackReceiver().start();
    const env = testEnv(control.url, { FOREMAN_DOCKER_URL: engine.url, FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    // The job network, with a subnet of the private engine's own range (the agent uses a network it finds).
    await engine.createNetwork(env.networkName, { 'foreman.managed': 'true' });
    const agent = spawnAgent(env);
    let agentId: string | undefined;
    try {
      control.reply([job('engine-1', callbacks.url(), { action: 'progress', steps: 60, delayMs: 500 })]);
      const first = await waitFor('the first update', () => callbacks.for('engine-1')[0], 60_000);
      agentId = String(first.headers['x-foreman-agent-id']);
      const { downMs } = await engine.restart();
      t.diagnostic(`private engine answered again ${downMs} ms after the SIGTERM`);
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
      // The harness cleans up through the host engine, where this test made nothing; the private
      // engine's containers and network go with engine.stop().
      await teardown({ agent, control, callbacks, env, agentId });
    }
  } finally {
    await engine.stop();
  }
});
