import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fstatSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { fsync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { WalSync, type FileSync } from './wal-sync.ts';

/** A sync the test finishes by hand, recording which file (by size) each call flushed. */
class HeldSync {
  readonly calls: Array<{ ino: number; release: () => void }> = [];
  readonly fsync: FileSync = (fd) =>
    new Promise<void>((resolve, reject) => {
      const ino = fstatSync(fd).ino;
      this.calls.push({ ino, release: () => fsync(fd, (err) => (err ? reject(err) : resolve())) });
    });
  releaseAll(): void {
    for (const call of this.calls.splice(0)) call.release();
  }
}

function open(t: TestContext, sync: FileSync, checkpointBytes?: number): { db: Database.Database; wal: WalSync; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-wal-'));
  const path = join(dir, 'test.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (v TEXT)');
  const wal = new WalSync(db, { path, fsync: sync, checkpointBytes });
  t.after(() => {
    wal.closeNow();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { db, wal, path };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Waits (a real fsync takes its time in the thread pool) until `held` has a call waiting. */
async function nextCall(held: HeldSync): Promise<void> {
  const deadline = Date.now() + 5000;
  while (held.calls.length === 0) {
    assert.ok(Date.now() < deadline, 'a sync was asked for within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test('group commit: callers during one sync share the next; nothing new to sync resolves at once', async (t) => {
  const held = new HeldSync();
  const { db, wal } = open(t, held.fsync);
  assert.equal(db.pragma('synchronous', { simple: true }), 0, 'commits do not sync on this thread');
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 0, 'no checkpoint on this thread');
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  insert.run('a');
  let firstDone = false;
  const first = wal.durable().then(() => (firstDone = true));
  await tick();
  assert.equal(held.calls.length, 1, 'one sync started');
  // Three more commits while it runs: they wait for one more sync, not three.
  const later: Array<Promise<void>> = [];
  for (const v of ['b', 'c', 'd']) {
    insert.run(v);
    later.push(wal.durable());
  }
  let laterDone = false;
  const allLater = Promise.all(later).then(() => (laterDone = true));
  await tick();
  assert.equal(held.calls.length, 1, 'no second sync while the first runs');
  held.releaseAll();
  await first;
  assert.equal(firstDone, true, 'the first caller is told once its sync is done');
  await tick();
  assert.equal(laterDone, false, 'commits after the first sync began wait for the next');
  assert.equal(held.calls.length, 1, 'the next sync started for them');
  held.releaseAll();
  await allLater;
  // No commit since: resolves without a sync.
  await wal.durable();
  assert.equal(held.calls.length, 0, 'nothing new, no sync');
});

test('a commit made after a sync began is not reported durable by that sync', async (t) => {
  const held = new HeldSync();
  const { db, wal } = open(t, held.fsync);
  db.prepare('INSERT INTO t (v) VALUES (?)').run('x');
  const a = wal.durable();
  await tick();
  db.prepare('INSERT INTO t (v) VALUES (?)').run('y');
  let bDone = false;
  const b = wal.durable().then(() => (bDone = true));
  held.releaseAll();
  await a;
  await tick();
  assert.equal(bDone, false, 'y waits for a sync that started after it committed');
  held.releaseAll();
  await b;
  assert.equal(bDone, true, 'y is durable after its own sync');
});

test('a checkpoint syncs the WAL, copies it, syncs the database file, and only then lets the WAL be rewound', async (t) => {
  const held = new HeldSync();
  const { db, wal, path } = open(t, held.fsync, 64 * 1024);
  const walIno = (): number => statSync(`${path}-wal`).ino;
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < 200; i++) insert.run('x'.repeat(1000));
  const done = wal.durable();
  await tick();
  held.releaseAll();
  await done;
  // The WAL is past 64 KiB: a checkpoint began with a sync of the WAL.
  await nextCall(held);
  assert.equal(held.calls[0]?.ino, walIno(), 'the checkpoint first syncs the WAL');
  held.releaseAll();
  await nextCall(held);
  assert.equal(held.calls[0]?.ino, statSync(path).ino, 'then the database file, after copying');
  // While the database file's sync runs, a writer must not rewind the WAL: it only grows.
  const before = statSync(`${path}-wal`).size;
  insert.run('after');
  assert.ok(statSync(`${path}-wal`).size > before, 'the WAL was appended to, not rewound, while the copy is unsynced');
  held.releaseAll();
  await wal.whenIdle();
  // Checkpointed and released: the next writer may rewind the WAL.
  const [{ log, checkpointed } = { log: 0, checkpointed: 0 }] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number; checkpointed: number }>;
  assert.ok(checkpointed >= log - 1, `the WAL was moved into the database file (${checkpointed} of ${log} frames)`);
  assert.equal(db.prepare('SELECT count(*) AS n FROM t').get() !== undefined, true, 'the database still reads');
});

test("closeNow syncs everything with SQLite's own checkpoint and tells waiting callers", async (t) => {
  const held = new HeldSync();
  const { db, wal } = open(t, held.fsync);
  db.prepare('INSERT INTO t (v) VALUES (?)').run('a');
  const a = wal.durable();
  await tick();
  db.prepare('INSERT INTO t (v) VALUES (?)').run('b');
  const b = wal.durable();
  wal.closeNow();
  await b;
  held.releaseAll();
  await a;
  await assert.rejects(wal.durable(), /closed/, 'no sync after close');
  wal.closeNow();
});
