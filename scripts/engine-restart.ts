/**
 * Restarts the Docker engine under a running agent and reports what the agent did.
 * Needs root and a local dockerd this script may stop. test/zz-engine-restart.test.ts checks the same.
 *
 *   node --import tsx scripts/engine-restart.ts
 */
import { testJobImage } from '../test/support/image.ts';
import { restartEngine } from '../test/support/engine.ts';
import { CallbackReceiver, FakeControlServer, job, readLog, spawnAgent, teardown, testEnv, waitFor } from '../test/support/harness.ts';

function say(line: string): void {
  process.stdout.write(`engine-restart: ${line}\n`);
}

await testJobImage();
const control = await new FakeControlServer().start();
const callbacks = await new CallbackReceiver().start();
const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'info', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
const agent = spawnAgent(env);
let agentId: string | undefined;
try {
  control.reply([job('during-restart', callbacks.url(), { action: 'progress', steps: 60, delayMs: 500, values: [1] })]);
  const first = await waitFor('the first update', () => callbacks.for('during-restart')[0], 60_000);
  agentId = String(first.headers['x-foreman-agent-id']);
  say('job running; restarting dockerd');
  const { downMs } = await restartEngine();
  say(`dockerd answers again ${downMs} ms after the stop`);
  const ended = await callbacks.waitForCompletion('during-restart', 120_000);
  say(`the interrupted job ended with outcome ${String(ended.headers['x-foreman-job-outcome'])}: ${ended.body.toString()}`);
  control.reply([job('after-restart', callbacks.url(), { values: [41, 1] })]);
  const after = await callbacks.waitForCompletion('after-restart', 120_000);
  say(`a new job after the restart: outcome ${String(after.headers['x-foreman-job-outcome'])}, body ${after.body.toString()}`);
  const messages = readLog(agent.logFile)
    .split('\n')
    .filter((l) => /engine/i.test(l))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
  say(`agent log lines about the engine:\n  ${messages.join('\n  ')}`);
} finally {
  await teardown({ agent, control, callbacks, env, agentId });
}
