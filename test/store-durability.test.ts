/**
 * The store's group commit on a real disk, in processes of their own (test/support/store-child.ts): a kill -9
 * while batches wait for their sync loses nothing acknowledged, and the event loop never waits for a disk sync.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { repoRoot } from './support/paths.ts';

const child = join(repoRoot, 'test/support/store-child.ts');

/** Runs the store child; resolves with its output lines once it printed `until` (or exited). */
function start(
  args: string[],
  command: string[] = [],
): { proc: ChildProcess; lines: string[]; waitFor(line: string, ms: number): Promise<void>; exited: Promise<void> } {
  const [file = process.execPath, ...pre] = command.length > 0 ? command : [process.execPath];
  const proc = spawn(file, [...pre, ...(command.length > 0 ? [process.execPath] : []), '--import', 'tsx', child, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: repoRoot,
  });
  const lines: string[] = [];
  let buffered = '';
  const waiters: Array<() => void> = [];
  proc.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
    for (const wake of waiters.splice(0)) wake();
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    proc,
    lines,
    exited,
    async waitFor(line: string, ms: number): Promise<void> {
      const deadline = Date.now() + ms;
      while (!lines.includes(line)) {
        if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`the store child did not print "${line}" within ${ms} ms`);
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), new Promise((resolve) => setTimeout(resolve, 50))]);
      }
    },
  };
}

test('kill -9 while batches wait for their sync, eight times: every acknowledged update is stored, in order, and both databases are intact', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-durable-'));
  const acked = new Set<number>();
  try {
    for (let round = 1; round <= 8; round++) {
      const run = start([dir, 'slow']);
      try {
        await run.waitFor('ready', 20_000);
        // 40 ms syncs: a kill lands while a batch is committed and waits for its sync, or mid-commit.
        await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 350));
        run.proc.kill('SIGKILL');
        await run.exited;
      } finally {
        run.proc.kill('SIGKILL');
      }
      for (const line of run.lines) if (line.startsWith('acked ')) acked.add(Number(line.slice(6)));
    }
    const db = new Database(join(dir, 'foreman.db'), { readonly: true });
    const logs = new Database(join(dir, 'logs.db'), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'foreman.db is intact');
      assert.equal(logs.pragma('integrity_check', { simple: true }), 'ok', 'logs.db is intact');
      const stored = (db.prepare("SELECT seq FROM deliveries WHERE job_id = 'durable-1' ORDER BY seq").all() as Array<{ seq: number }>).map((r) => r.seq);
      const lost = [...acked].filter((seq) => !stored.includes(seq));
      assert.deepEqual(lost, [], 'no acknowledged update is missing');
      assert.deepEqual(
        stored,
        stored.map((_, i) => i + 1),
        'updates are numbered without a gap',
      );
      t.diagnostic(`${acked.size} updates acknowledged over 8 kills; ${stored.length} stored (the rest were committed, not yet acknowledged)`);
      assert.ok(acked.size > 20, `the child got work done between kills (${acked.size} acknowledged)`);
    } finally {
      db.close();
      logs.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const noStrace = spawnSync('sh', ['-c', 'command -v strace']).status === 0 ? false : 'strace is not installed (Debian: apt-get install strace)';

test('the event loop never waits for a disk sync: after the store opened, every fsync runs on another thread', { skip: noStrace }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-nosync-'));
  const trace = join(dir, 'strace.txt');
  try {
    // 600 updates and 200 log appends, with a checkpoint of each database on the way (about 4 MB of WAL each).
    const run = start([dir, 'fast', '6000'], ['strace', '-f', '-qq', '-e', 'trace=fsync,fdatasync,kill', '-o', trace]);
    try {
      await run.waitFor('done', 120_000);
      await run.exited;
    } finally {
      run.proc.kill('SIGKILL');
    }
    const calls = readFileSync(trace, 'utf8')
      .split('\n')
      .map((line) => /^(\d+)\s+(\w+)\(/.exec(line))
      .filter((m) => m !== null)
      .map((m) => ({ tid: Number(m[1]), call: m[2] ?? '' }));
    const markers = calls.flatMap((c, i) => (c.call === 'kill' ? [i] : []));
    const [from, to] = [markers[0], markers.at(-1)];
    assert.ok(from !== undefined && to !== undefined && to > from, 'both markers were traced');
    const main = calls[from]?.tid;
    const syncs = calls.slice(from, to).filter((c) => c.call !== 'kill');
    const onMain = syncs.filter((c) => c.tid === main);
    t.diagnostic(`${syncs.length} syncs while the store worked, ${onMain.length} on the main thread`);
    assert.ok(syncs.length > 10, `the store synced while it worked (${syncs.length} syncs)`);
    assert.equal(onMain.length, 0, 'no sync on the main thread (the event loop)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
