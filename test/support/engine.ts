/** Stops and restarts the local dockerd, for tests of engine outages. Needs root and a local dockerd. */
import { execFileSync, spawn } from 'node:child_process';
import { openSync, rmSync } from 'node:fs';
import { waitFor } from './harness.ts';

function succeeds(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export const engineAnswers = (): boolean => succeeds('docker', ['info']);
const dockerdRunning = (): boolean => succeeds('pgrep', ['-x', 'dockerd']);

/** True when this process may restart the engine: root, and dockerd runs on this machine. */
export function canRestartEngine(): boolean {
  return process.getuid?.() === 0 && dockerdRunning();
}

/** SIGTERMs dockerd, waits for it to exit, starts it again as .ci/run does, and waits until it answers. */
export async function restartEngine(): Promise<{ downMs: number }> {
  const stoppedAt = Date.now();
  execFileSync('pkill', ['-TERM', '-x', 'dockerd']);
  await waitFor('dockerd to exit', () => !dockerdRunning(), 60_000, 200);
  // A dockerd that is gone may leave its pid file, and a new one refuses to start then.
  rmSync('/var/run/docker.pid', { force: true });
  const log = openSync('/tmp/dockerd.log', 'a');
  spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
  await waitFor('dockerd to answer', engineAnswers, 60_000, 200);
  return { downMs: Date.now() - stoppedAt };
}
