import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, lockDataDir } from './data-dir-lock.ts';

function withDir(work: (dir: string, file: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'foreman-lock-'));
    try {
      await work(dir, join(dir, 'agent.lock'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'a lock naming this very process, not held by it, is stale: an agent that crashed as PID 1 and a new one that is PID 1 again',
  withDir((dir, file) => {
    writeFileSync(file, JSON.stringify({ pid: process.pid, start: '1', boot: null }));
    const unlock = lockDataDir(dir);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid, process.pid);
    // Held by this process now: a second claim in the same process is refused.
    assert.throws(() => lockDataDir(dir), DataDirInUseError);
    unlock();
    // The pid-only format of older versions, naming this process: stale too.
    writeFileSync(file, String(process.pid));
    lockDataDir(dir)();
  }),
);

test(
  'a live pid is the owner only with the start time it had: a reused pid, or another boot, is stale',
  withDir(async (dir, file) => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid ?? 0;
      await new Promise((resolve) => child.once('spawn', resolve));
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      writeFileSync(file, JSON.stringify({ pid, start, boot }));
      assert.throws(
        () => lockDataDir(dir),
        (err: unknown) => err instanceof DataDirInUseError && err.message.includes(`pid ${pid}`),
      );
      writeFileSync(file, JSON.stringify({ pid, start: `${start}0`, boot }));
      lockDataDir(dir)();
      writeFileSync(file, JSON.stringify({ pid, start, boot: 'another-boot' }));
      lockDataDir(dir)();
    } finally {
      child.kill('SIGKILL');
    }
  }),
);
