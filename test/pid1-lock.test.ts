/**
 * An agent that runs as PID 1 (as in a container) and is killed leaves a lock naming pid 1; the next
 * agent there is PID 1 as well and must take the lock over, not refuse to start. The agent runs as
 * PID 1 of a PID namespace of its own (`unshare --pid`), which needs root and util-linux, as in CI.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeControlServer, cleanup, readLog, repoRoot, testEnv, waitFor, type TestEnv } from './support/harness.ts';

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for unshare --pid';
  const probe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']);
  return probe.status === 0 ? undefined : `unshare --pid does not work here: ${probe.stderr.toString().trim() || String(probe.error)}`;
}

const envs: TestEnv[] = [];
let control: FakeControlServer | undefined;

after(async () => {
  await control?.close();
  for (const env of envs) await cleanup(env);
});

/** `foreman run` as PID 1 of a new PID namespace; killing the group ends the namespace. */
function spawnAsPid1(env: TestEnv): { logFile: string; kill: () => Promise<void> } {
  const logFile = join(env.dir, `agent-pid1-${Date.now()}.log`);
  const configFile = join(env.dir, 'foreman.toml');
  writeFileSync(configFile, '# settings come from FOREMAN_* variables\n');
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, join(repoRoot, 'bin/foreman.js'), 'run', '--config', configFile], {
    env: { PATH: process.env.PATH ?? '', HOME: env.dir, ...env.env },
    stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    logFile,
    kill: async () => {
      process.kill(-(child.pid ?? 0), 'SIGKILL');
      await exited;
    },
  };
}

test('an agent killed while PID 1 leaves a lock with pid 1; the next PID 1 agent takes it over and starts', { skip: unavailable() ?? false }, async () => {
  control = await new FakeControlServer().start();
  const env = testEnv(control.url);
  envs.push(env);
  const first = spawnAsPid1(env);
  try {
    await waitFor('the first agent to poll', () => readLog(first.logFile).includes('polling for jobs'), 30_000);
  } finally {
    await first.kill();
  }
  // {"pid": …} now; a bare pid in older versions.
  const lock = readFileSync(join(env.env.FOREMAN_CORE_DATA_DIR ?? '', 'agent.lock'), 'utf8');
  assert.equal(/^(?:\{"pid":)?(\d+)/.exec(lock)?.[1], '1', 'the agent ran as PID 1 and left its lock behind');
  const second = spawnAsPid1(env);
  try {
    await waitFor('the second agent to poll', () => readLog(second.logFile).includes('polling for jobs') || readLog(second.logFile).includes('another foreman agent'), 30_000);
    assert.doesNotMatch(readLog(second.logFile), /another foreman agent/);
  } finally {
    await second.kill();
  }
});
