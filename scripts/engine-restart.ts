/**
 * Restarts a Docker engine under a running agent and reports what the agent did. The engine is a private
 * dockerd of this script's own (test/support/private-engine.ts), restarted by its pid: the host's dockerd is left alone.
 * Needs root, dockerd and ip. test/engine-restart.e2e.test.ts checks the same.
 *
 *   node --import tsx scripts/engine-restart.ts
 */
import { testJobImage } from '../test/support/image.ts';
import { privateEngineUnavailable, startPrivateEngine } from '../test/support/private-engine.ts';
import { readLog, spawnAgent, teardown, testEnv } from '../test/support/agents.ts';
import { job } from '../test/support/reports.ts';
import { CallbackReceiver, FakeControlServer } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';

function say(line: string): void {
  process.stdout.write(`engine-restart: ${line}\n`);
}

const unavailable = privateEngineUnavailable();
if (unavailable) {
  say(`cannot run: ${unavailable}`);
  process.exit(1);
}

const image = await testJobImage();
const engine = await startPrivateEngine({ loadImages: [image] });
try {
  say(`private engine ${engine.url} (pid ${engine.pid ?? '?'}, bridge ${engine.bridge}, ${engine.range}) started in ${engine.timings.startMs} ms`);
  say(`${image} loaded into it from the host engine in ${engine.timings.loadImagesMs} ms`);
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, { FOREMAN_DOCKER_URL: engine.url, FOREMAN_LOG_LEVEL: 'info', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
  const network = await engine.createNetwork(env.networkName, { 'foreman.managed': 'true' });
  say(`job network ${env.networkName}: ${network.subnet}, gateway ${network.gateway}`);
  const agent = spawnAgent(env);
  let agentId: string | undefined;
  try {
    control.reply([job('during-restart', callbacks.url(), { action: 'progress', steps: 60, delayMs: 500, values: [1] })]);
    const first = await waitFor('the first update', () => callbacks.for('during-restart')[0], 60_000);
    agentId = String(first.headers['x-foreman-agent-id']);
    say(`job running; restarting the private dockerd (pid ${engine.pid ?? '?'})`);
    const { downMs } = await engine.restart();
    say(`dockerd (pid ${engine.pid ?? '?'}) answers again ${downMs} ms after the SIGTERM`);
    const ended = await callbacks.waitForCompletion('during-restart', 120_000);
    say(`the interrupted job ended with outcome ${String(ended.headers['x-foreman-job-outcome'])}: ${ended.body.toString()}`);
    control.reply([job('after-restart', callbacks.url(), { values: [41, 1] })]);
    const after = await callbacks.waitForCompletion('after-restart', 120_000);
    say(`a new job after the restart: outcome ${String(after.headers['x-foreman-job-outcome'])}, body ${after.body.toString()}`);
    const lines = readLog(agent.logFile)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; listen?: string });
    const listening = lines.find((l) => l.msg === 'job API listening');
    say(`the agent's job API listened on ${listening?.listen ?? '?'} (the job network's gateway on the private engine)`);
    say(
      `agent log lines about the engine:\n  ${lines
        .filter((l) => /engine/i.test(l.msg))
        .map((l) => l.msg)
        .join('\n  ')}`,
    );
  } finally {
    await teardown({ agent, control, callbacks, env, agentId });
  }
} finally {
  await engine.stop();
  say('private engine stopped and removed');
}
