import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogLine } from '../shared/log-line.ts';
import Database from 'better-sqlite3';
import { encodeLine, LogStore } from './log-store.ts';

const URL_A = 'http://127.0.0.1:9/logs/a';
const TS = '2026-11-28T07:42:30.437418862Z';

function lines(...texts: string[]): LogLine[] {
  return texts.map((text, n) => ({ stream: n % 2 === 0 ? 'stdout' : 'stderr', ts: TS, text }));
}

function memoryStore(start = 1_000_000): { store: LogStore; clock: { now: number } } {
  const clock = { now: start };
  return { store: new LogStore(':memory:', () => clock.now), clock };
}

test('open starts an empty stream, and opening it again keeps it as it is', () => {
  const { store } = memoryStore();
  assert.deepEqual(store.open('j1', URL_A), {
    jobId: 'j1',
    url: URL_A,
    nextLine: 0,
    acked: 0,
    bytes: 0,
    truncated: false,
    cursor: { since: null, count: 0 },
    followed: false,
    settled: null,
  });
  assert.equal(store.append('j1', lines('a', 'b'), { since: null, count: 2 }, { bytes: 2, truncated: false }), true);
  const again = store.open('j1', 'http://127.0.0.1:9/other');
  assert.equal(again.url, URL_A, 'the first URL is kept');
  assert.equal(again.nextLine, 2);
  assert.equal(store.get('nope'), undefined);
  store.close();
});

test('append numbers lines from 0 on, in order, and stores cursor, bytes and truncated with them', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  assert.equal(store.append('j1', lines('zero', 'one'), { since: null, count: 2 }, { bytes: 7, truncated: false }), true);
  assert.equal(store.append('j1', [], { since: null, count: 3 }, { bytes: 0, truncated: false }), true, 'a cursor may move without lines');
  assert.equal(store.append('j1', lines('two', 'thrëe'), { since: TS, count: 9 }, { bytes: 9, truncated: true }), true);
  assert.deepEqual(store.read('j1', 0, 100), [
    { i: 0, ts: TS, stream: 'stdout', text: 'zero' },
    { i: 1, ts: TS, stream: 'stderr', text: 'one' },
    { i: 2, ts: TS, stream: 'stdout', text: 'two' },
    { i: 3, ts: TS, stream: 'stderr', text: 'thrëe' },
  ]);
  const stream = store.get('j1');
  assert.equal(stream?.nextLine, 4);
  assert.equal(stream.bytes, 16);
  assert.equal(stream.truncated, true);
  assert.deepEqual(stream.cursor, { since: TS, count: 9 });
  store.append('j1', [], { since: TS, count: 10 }, { bytes: 0, truncated: false });
  assert.equal(store.get('j1')?.truncated, true, 'truncated stays set');
  store.close();
});

test('append to a stream that was never opened stores nothing and says so', () => {
  const { store } = memoryStore();
  assert.equal(store.append('ghost', lines('a'), { since: null, count: 1 }, { bytes: 1, truncated: false }), false);
  assert.deepEqual(store.read('ghost', 0, 10), []);
  store.close();
});

test('read takes lines from a number up to a limit; lines reads the same one at a time; streams are kept apart', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  store.open('j2', URL_A);
  store.append('j1', lines('a', 'b', 'c', 'd', 'e'), { since: null, count: 5 }, { bytes: 5, truncated: false });
  store.append('j2', lines('other'), { since: null, count: 1 }, { bytes: 5, truncated: false });
  assert.deepEqual(
    store.read('j1', 1, 3).map((l) => [l.i, l.text]),
    [
      [1, 'b'],
      [2, 'c'],
      [3, 'd'],
    ],
  );
  assert.deepEqual(
    store.read('j1', 4, 10).map((l) => l.i),
    [4],
  );
  assert.deepEqual(store.read('j1', 5, 10), []);
  assert.deepEqual(
    store.read('j1', 2, 2).map((l) => l.text),
    ['c', 'd'],
  );
  assert.deepEqual(
    store.read('j2', 0, 10).map((l) => l.text),
    ['other'],
  );
  store.close();
});

test('waitingBytes: the NDJSON bytes of the chunks holding lines from a number on', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  assert.equal(store.waitingBytes('j1', 0), 0);
  const [a, b, c] = lines('abc', 'é€', '');
  store.append('j1', [a, b] as LogLine[], { since: null, count: 2 }, { bytes: 8, truncated: false });
  store.append('j1', [c] as LogLine[], { since: null, count: 3 }, { bytes: 0, truncated: false });
  const size = (i: number, line: LogLine | undefined): number => Buffer.byteLength(encodeLine(i, line as LogLine));
  assert.equal(store.waitingBytes('j1', 0), size(0, a) + size(1, b) + size(2, c), 'both chunks');
  assert.equal(store.waitingBytes('j1', 2), size(2, c), 'the second chunk only');
  assert.equal(store.waitingBytes('j1', 3), 0, 'nothing from the end on');
  store.close();
});

test('nextBatch: whole chunks up to the byte limit (at least one), encoded once when stored; from inside a chunk, its rest', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  store.append('j1', lines('a', 'b', 'c'), { since: null, count: 3 }, { bytes: 3, truncated: false });
  store.append('j1', lines('d'), { since: null, count: 4 }, { bytes: 1, truncated: false });
  const all = store.nextBatch('j1', 0, 1_000_000);
  assert.deepEqual(
    all.body
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { i: number }).i),
    [0, 1, 2, 3],
    'both chunks, in order',
  );
  assert.deepEqual([all.count, all.bytes, all.full], [4, all.body.length, false], 'count, bytes, nothing left');
  const first = store.nextBatch('j1', 0, 10);
  assert.deepEqual([first.count, first.full], [3, true], 'a chunk bigger than the limit goes alone, and says more is stored');
  const tail = store.nextBatch('j1', 1, 1_000_000);
  assert.equal(
    tail.body.toString(),
    encodeLine(1, lines('a', 'b')[1] as LogLine) + encodeLine(2, lines('a', 'b', 'c')[2] as LogLine) + encodeLine(3, lines('d')[0] as LogLine),
  );
  assert.equal(tail.count, 3, 'from line 1: the rest of the first chunk and the second');
  store.close();
});

test('ack deletes the chunks below a number and records it; it never moves back', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  store.append('j1', lines('a', 'b', 'c'), { since: null, count: 3 }, { bytes: 3, truncated: false });
  store.append('j1', lines('d'), { since: null, count: 4 }, { bytes: 1, truncated: false });
  store.ack('j1', 3);
  assert.equal(store.get('j1')?.acked, 3);
  assert.deepEqual(
    store.read('j1', 0, 10).map((l) => l.i),
    [3],
  );
  store.ack('j1', 1);
  assert.equal(store.get('j1')?.acked, 3);
  store.append('j1', lines('e'), { since: null, count: 5 }, { bytes: 1, truncated: false });
  assert.deepEqual(
    store.read('j1', 0, 10).map((l) => [l.i, l.text]),
    [
      [3, 'd'],
      [4, 'e'],
    ],
    'numbering goes on after acks',
  );
  store.close();
});

test('markFollowed records that the output was read to its end', () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  store.markFollowed('j1');
  assert.equal(store.get('j1')?.followed, true);
  assert.equal(store.get('j1')?.settled, null);
  store.close();
});

test("settle deletes the stream's lines, marks it followed, and makes append refuse more", () => {
  const { store } = memoryStore();
  store.open('j1', URL_A);
  store.open('j2', URL_A);
  store.append('j1', lines('a', 'b'), { since: null, count: 2 }, { bytes: 2, truncated: false });
  store.append('j2', lines('kept'), { since: null, count: 1 }, { bytes: 4, truncated: false });
  store.settle('j1', 'rejected');
  const stream = store.get('j1');
  assert.equal(stream?.settled, 'rejected');
  assert.equal(stream.followed, true);
  assert.deepEqual(store.read('j1', 0, 10), []);
  assert.equal(store.append('j1', lines('c'), { since: null, count: 3 }, { bytes: 1, truncated: false }), false);
  assert.deepEqual(store.read('j1', 0, 10), []);
  assert.equal(store.get('j1')?.nextLine, 2, 'nothing counted after settling');
  assert.deepEqual(
    store.read('j2', 0, 10).map((l) => l.text),
    ['kept'],
  );
  store.close();
});

test('unsettled lists only the streams not settled, oldest first', () => {
  const { store } = memoryStore();
  for (const id of ['j1', 'j2', 'j3', 'j4']) store.open(id, URL_A);
  store.settle('j2', 'ended');
  store.markFollowed('j3');
  store.settle('j4', 'abandoned');
  assert.deepEqual(
    store.unsettled().map((s) => s.jobId),
    ['j1', 'j3'],
  );
  store.close();
});

test('purge forgets settled streams last touched before a time, and nothing else', () => {
  const { store, clock } = memoryStore(1000);
  store.open('old-settled', URL_A);
  store.open('old-open', URL_A);
  store.settle('old-settled', 'ended');
  clock.now = 5000;
  store.open('new-settled', URL_A);
  store.settle('new-settled', 'ended');
  assert.equal(store.purge(5000), 1);
  assert.equal(store.get('old-settled'), undefined);
  assert.notEqual(store.get('old-open'), undefined, 'unsettled streams are never purged');
  assert.notEqual(store.get('new-settled'), undefined);
  assert.equal(store.purge(5001), 1);
  assert.equal(store.get('new-settled'), undefined);
  assert.equal(store.purge(1_000_000), 0);
  store.close();
});

test('close is safe to call twice', () => {
  const { store } = memoryStore();
  store.close();
  store.close();
});

test('a store on disk keeps streams, lines and cursor across close and reopen', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-logstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs.db');
  const first = new LogStore(path);
  first.open('j1', URL_A);
  first.append('j1', lines('a', 'b', 'c'), { since: TS, count: 17 }, { bytes: 3, truncated: false });
  first.ack('j1', 1);
  first.markFollowed('j1');
  first.close();

  const second = new LogStore(path);
  const stream = second.get('j1');
  assert.deepEqual(stream, {
    jobId: 'j1',
    url: URL_A,
    nextLine: 3,
    acked: 1,
    bytes: 3,
    truncated: false,
    cursor: { since: TS, count: 17 },
    followed: true,
    settled: null,
  });
  assert.deepEqual(
    second.read('j1', stream?.acked ?? 0, 10).map((l) => [l.i, l.stream, l.text]),
    [
      [1, 'stderr', 'b'],
      [2, 'stdout', 'c'],
    ],
  );
  assert.deepEqual(
    second.unsettled().map((s) => s.jobId),
    ['j1'],
  );
  second.close();
});

test('lines an earlier version stored a row each are moved into chunks at open, in order, and still go out', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-logstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs.db');
  const old = new Database(path);
  old.exec(`
    CREATE TABLE log_streams (job_id TEXT PRIMARY KEY, url TEXT NOT NULL, next_line INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
      bytes INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0, cursor_since TEXT, cursor_count INTEGER NOT NULL DEFAULT 0,
      followed INTEGER NOT NULL DEFAULT 0, settled TEXT, updated_at INTEGER NOT NULL);
    CREATE TABLE log_lines (job_id TEXT NOT NULL, i INTEGER NOT NULL, ts TEXT NOT NULL, stream INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (job_id, i)) WITHOUT ROWID;
  `);
  old.prepare("INSERT INTO log_streams (job_id, url, next_line, acked, updated_at) VALUES ('j1', ?, 2503, 1, 0)").run(URL_A);
  const insert = old.prepare("INSERT INTO log_lines (job_id, i, ts, stream, text) VALUES ('j1', ?, ?, ?, ?)");
  for (let i = 1; i < 2503; i++) insert.run(i, TS, i % 2 === 0 ? 2 : 1, `line ${i}`);
  old.close();

  const store = new LogStore(path);
  try {
    const read = store.read('j1', 1, 10_000);
    assert.equal(read.length, 2502, 'every unsent line is kept');
    assert.deepEqual(read[0], { i: 1, ts: TS, stream: 'stdout', text: 'line 1' });
    assert.deepEqual(read.at(-1), { i: 2502, ts: TS, stream: 'stderr', text: 'line 2502' });
    const batch = store.nextBatch('j1', 1, 1_000_000);
    assert.equal(batch.count, 2502, 'the shipper sends them all');
    assert.equal(store.nextBatch('j1', 1, 1).count, 1000, 'in chunks of 1000 lines');
    store.append('j1', lines('new'), { since: null, count: 1 }, { bytes: 3, truncated: false });
    assert.deepEqual(
      store.read('j1', 2503, 10).map((l) => [l.i, l.text]),
      [[2503, 'new']],
      'numbering goes on',
    );
  } finally {
    store.close();
  }
  const reopened = new Database(path, { readonly: true });
  try {
    assert.equal(reopened.prepare("SELECT 1 FROM sqlite_master WHERE name = 'log_lines'").get(), undefined, 'the old table is gone');
    assert.equal(reopened.pragma('user_version', { simple: true }), 1, 'version 1');
  } finally {
    reopened.close();
  }
});
