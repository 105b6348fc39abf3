/**
 * Restarts the Docker engine under a running agent and reports what the agent did.
 * Needs root and a dockerd this script may stop (it restarts it with the same command line as
 * .ci/run). Not part of `npm test`: every other test needs the engine.
 *
 *   node --import tsx scripts/engine-restart.ts
 */
import { execFileSync, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { testJobImage } from '../test/support/image.ts';
import { CallbackReceiver, FakeControlServer, cleanup, job, readLog, spawnAgent, testEnv, waitFor } from '../test/support/harness.ts';

function engineAnswers(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

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
  say('job running; stopping dockerd');
  const stoppedAt = Date.now();
  execFileSync('pkill', ['-TERM', '-x', 'dockerd']);
  await waitFor('dockerd to stop', () => !engineAnswers(), 60_000, 200);
  say(`dockerd stopped after ${Date.now() - stoppedAt} ms; starting it again`);
  const log = openSync('/tmp/dockerd.log', 'a');
  spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
  await waitFor('dockerd to answer', engineAnswers, 60_000, 200);
  say(`dockerd answers again ${Date.now() - stoppedAt} ms after the stop`);

  const ended = await callbacks.waitForCompletion('during-restart', 120_000);
  say(`the interrupted job ended with outcome ${String(ended.headers['x-foreman-job-outcome'])}: ${ended.body.toString()}`);
  control.reply([job('after-restart', callbacks.url(), { values: [41, 1] })]);
  const after = await callbacks.waitForCompletion('after-restart', 120_000);
  say(`a new job after the restart: outcome ${String(after.headers['x-foreman-job-outcome'])}, body ${after.body.toString()}`);
  const lines = readLog(agent.logFile)
    .split('\n')
    .filter((l) => /engine|reconcil|re-adopted/i.test(l))
    .map((l) => {
      try {
        return (JSON.parse(l) as { msg: string }).msg;
      } catch {
        return l;
      }
    });
  say(`agent log lines about the engine:\n  ${lines.join('\n  ')}`);
} finally {
  agent.child.kill('SIGTERM');
  await agent.exited;
  await control.close();
  await callbacks.stop();
  await cleanup(env, agentId);
}
