/**
 * An agent that runs as PID 1 (as in a container) and is killed leaves a lock naming pid 1; the next
 * agent there is PID 1 as well and must take the lock over, not refuse to start. The agent runs as
 * PID 1 of a PID namespace of its own (`unshare --pid`), which needs root and util-linux, as in CI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLog, spawnStack, type SpawnedAgent, type TestEnv } from './support/agents.ts';
import { repoRoot } from './support/paths.ts';
import { waitFor } from './support/wait.ts';

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for unshare --pid';
  const probe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']);
  return probe.status === 0 ? undefined : `unshare --pid does not work here: ${probe.stderr.toString().trim() || String(probe.error)}`;
}

/** `foreman run` as PID 1 of a new PID namespace; a signal goes to the whole group, and SIGKILL ends the namespace. */
function spawnAsPid1(env: TestEnv): SpawnedAgent {
  const logFile = join(env.dir, `agent-pid1-${Date.now()}.log`);
  const configFile = join(env.dir, 'foreman.toml');
  writeFileSync(configFile, '# settings come from FOREMAN_* variables\n');
  const fd = openSync(logFile, 'a');
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, join(repoRoot, 'bin/foreman.js'), 'run', '--config', configFile], {
    env: { PATH: process.env.PATH ?? '', HOME: env.dir, ...env.env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, logFile, exited, kill: (signal) => process.kill(-(child.pid ?? 0), signal) };
}

test('an agent killed while PID 1 leaves a lock with pid 1; the next PID 1 agent takes it over and starts', { skip: unavailable() ?? false }, async () => {
  const s = await spawnStack({}, { spawn: spawnAsPid1 });
  try {
    const first = s.agent;
    await waitFor('the first agent to poll', () => readLog(first.logFile).includes('polling for jobs'), 30_000);
    await s.stop({ signal: 'SIGKILL' });
    // {"pid": …} now; a bare pid in older versions.
    const lock = readFileSync(join(s.env.env.FOREMAN_CORE_DATA_DIR ?? '', 'agent.lock'), 'utf8');
    assert.equal(/^(?:\{"pid":)?(\d+)/.exec(lock)?.[1], '1', 'the agent ran as PID 1 and left its lock behind');
    const second = await s.restart();
    await waitFor(
      'the second agent to poll',
      () => readLog(second.logFile).includes('polling for jobs') || readLog(second.logFile).includes('another foreman agent'),
      30_000,
    );
    assert.doesNotMatch(readLog(second.logFile), /another foreman agent/);
  } finally {
    await s.close({ signal: 'SIGKILL' });
  }
});
