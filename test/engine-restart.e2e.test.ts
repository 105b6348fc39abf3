/**
 * The Docker engine restarts under a running job. The engine is a private dockerd of the test's own
 * (test/support/private-engine.ts), restarted by its pid: the host's dockerd and its containers are left alone.
 * Needs root, dockerd and ip, as in CI; elsewhere it says why it skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { privateEngineUnavailable, startPrivateEngine } from './support/private-engine.ts';
import { readLog, type SpawnedStack, spawnStack } from './support/agents.ts';
import { job } from './support/reports.ts';
import { CallbackReceiver } from './support/servers.ts';
import { waitFor } from './support/wait.ts';
import { assertWhole, engineMessages, receivedLog } from './support/logs.ts';

test(
  'the agent survives an engine restart: says so, reconnects, reports the killed job, runs the next',
  { skip: privateEngineUnavailable() ?? false },
  async (t) => {
    const image = await testJobImage();
    const engine = await startPrivateEngine({ loadImages: [image] });
    try {
      t.diagnostic(
        `private engine ${engine.url} (bridge ${engine.bridge}, ${engine.range}): started in ${engine.timings.startMs} ms, image loaded in ${engine.timings.loadImagesMs} ms`,
      );
      const logs = await new CallbackReceiver().start();
      let s: SpawnedStack | undefined;
      try {
        // Stopped containers are kept a while, to compare the log with what the engine holds.
        s = await spawnStack(
          { FOREMAN_DOCKER_URL: engine.url, FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000', FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '60000' },
          // The job network, with a subnet of the private engine's own range (the agent uses a network it finds).
          { prepare: (env) => engine.createNetwork(env.networkName, { 'foreman.managed': 'true' }) },
        );
        const { control, callbacks, agent } = s;
        control.reply([
          job('engine-1', callbacks.url(), { action: 'progress', steps: 60, delayMs: 500 }),
          // Prints 200 lines a second until the engine stops it.
          job('engine-log', callbacks.url(), { action: 'log', lines: 1_000_000, perTick: 20, tickMs: 100 }, { logsUrl: logs.url('logs') }),
        ]);
        await waitFor('the first update', () => callbacks.for('engine-1')[0], 60_000);
        await waitFor('some log lines', () => receivedLog(logs.requests, 'engine-log').lines.length >= 400, 60_000);
        const linesBefore = receivedLog(logs.requests, 'engine-log').lines.length;
        const { downMs } = await engine.restart();
        t.diagnostic(`private engine answered again ${downMs} ms after the SIGTERM`);
        // Without live-restore the engine stops its containers: the job is reported with the exit code.
        const ended = await callbacks.waitForCompletion('engine-1', 60_000);
        assert.equal(ended.headers['x-foreman-job-outcome'], 'failed');
        const { exitCode } = JSON.parse(ended.body.toString()) as { exitCode: number };
        assert.ok(exitCode === 143 || exitCode === 137, `exit code ${exitCode}`);
        // Every line the engine stored before it stopped the container arrived, once each, in order, before the report.
        const logReport = await callbacks.waitForCompletion('engine-log', 60_000);
        const streamed = receivedLog(logs.requests, 'engine-log');
        assertWhole(streamed);
        assert.ok(streamed.end && streamed.end.at <= logReport.at, 'the log end arrived before the report');
        const [container] = await engine.docker.listContainers({ all: true, filters: { label: ['foreman.job-id=engine-log'] } });
        assert.ok(container, "the private engine still holds the log job's container");
        const held = await engineMessages(container.Id, engine.docker);
        assert.deepEqual(
          streamed.lines.map((l) => `${l.stream} ${l.text}`),
          held.map((m) => `${m.stream} ${m.text}`),
        );
        t.diagnostic(`${streamed.lines.length} log lines (${linesBefore} had arrived when the engine was stopped), ${streamed.duplicates} sent twice`);
        control.reply([job('engine-2', callbacks.url(), { values: [2, 3] })]);
        const next = await callbacks.waitForCompletion('engine-2', 60_000);
        assert.deepEqual(JSON.parse(next.body.toString()), { result: 5 });
        const log = readLog(agent.logFile);
        assert.match(log, /lost the Docker engine; reconnecting/);
        assert.match(log, /Docker engine answers again/);
        assert.equal(agent.child.exitCode, null, 'the agent kept running');
      } finally {
        // close() cleans up through the host engine, where this test made nothing; the private
        // engine's containers and network go with engine.stop().
        await s?.close();
        await logs.stop();
      }
    } finally {
      await engine.stop();
    }
  },
);
