import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { ManualClock, settle } from '../testing/clock-kit.ts';
import { SqliteStore } from './sqlite-store.ts';
import { IllegalTransitionError } from './state.ts';
import { DataDirInUseError } from './data-dir-lock.ts';
import { writeFileSync } from 'node:fs';

const spec = { id: 'job-1', image: 'img', body: { values: [1, 2] }, callbackUrl: 'http://127.0.0.1:1/cb' };
const delivery = (n: number) => ({ url: spec.callbackUrl, headers: { 'x-n': String(n) }, body: Buffer.from(`b${n}`) });

async function withStore(fn: (open: () => SqliteStore) => void | Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-store-'));
  const opened: SqliteStore[] = [];
  try {
    await fn(() => {
      const store = SqliteStore.open({ dataDir: dir, log: pino({ level: 'silent' }) });
      opened.push(store);
      return store;
    });
  } finally {
    for (const s of opened) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('agent id, jobs and deliveries survive reopening', async () => {
  await withStore((open) => {
    const first = open();
    assert.equal(first.admit(spec, 'secret', 'name'), true);
    first.transition('job-1', 'creating');
    first.transition('job-1', 'started', { containerId: 'c1', startedAt: 1234 });
    first.recordUpdate('job-1', delivery(1), 'running');
    first.recordUpdate('job-1', delivery(2));
    const agentId = first.agentId;
    first.close();
    first.close(); // safe twice

    const second = open();
    assert.equal(second.agentId, agentId);
    const job = second.get('job-1');
    assert.equal(job?.state, 'running');
    assert.equal(job?.containerId, 'c1');
    assert.equal(job?.startedAt, 1234);
    assert.equal(job?.secret, 'secret');
    const pending = second.pendingDeliveries();
    assert.deepEqual(
      pending.map((d) => d.seq),
      [1, 2],
    );
    // Headers are kept as given: the outbox adds the delivery id and seq when it sends.
    assert.deepEqual(pending[0]?.headers, { 'x-n': '1' });
    assert.equal(pending[1]?.body.toString(), 'b2');
  });
});

test('a known id is not admitted twice, even after removal', async () => {
  await withStore((open) => {
    const store = open();
    assert.equal(store.admit(spec, 's', 'n'), true);
    assert.equal(store.admit(spec, 's', 'n'), false);
    store.transition('job-1', 'removed');
    assert.equal(store.admit(spec, 's', 'n'), false);
    assert.equal(store.rememberRejected('job-1', undefined), undefined);
    assert.equal(store.rememberRejected('bad-1', delivery(1))?.delivery?.seq, 1);
    assert.equal(store.admit({ ...spec, id: 'bad-1' }, 's', 'n'), false);
  });
});

test('illegal transitions throw and change nothing; a failed update queues nothing', async () => {
  await withStore((open) => {
    const store = open();
    store.admit(spec, 's', 'n');
    assert.throws(() => store.transition('job-1', 'completed'), IllegalTransitionError);
    assert.throws(() => store.recordUpdate('job-1', delivery(1), 'completed'), IllegalTransitionError);
    assert.equal(store.get('job-1')?.state, 'pending');
    assert.equal(store.pendingDeliveries().length, 0);
  });
});

test('purge forgets old removed jobs only once their deliveries are done', async () => {
  await withStore(async (open) => {
    const store = open();
    store.admit(spec, 's', 'n');
    store.transition('job-1', 'creating');
    store.transition('job-1', 'stopped', { outcome: 'pull-failed' });
    const { delivery: queued } = store.recordUpdate('job-1', delivery(1), 'removed');
    assert.equal(store.purgeRemoved(Date.now() + 1000), 0);
    await store.completeDelivery(queued.id);
    assert.equal(store.purgeRemoved(Date.now() + 1000), 1);
    assert.equal(store.get('job-1'), undefined);
  });
});

test('batched writes of one turn commit together; a failing one rolls back alone', async () => {
  await withStore(async (open) => {
    const store = open();
    store.admit(spec, 's', 'n');
    store.transition('job-1', 'creating');
    store.transition('job-1', 'started', { containerId: 'c', startedAt: 1 });
    const results = await Promise.allSettled([
      store.batch(() => store.recordUpdate('job-1', delivery(1), 'running')),
      store.batch(() => store.recordUpdate('job-1', delivery(2), 'pending')), // illegal
      store.batch(() => store.recordUpdate('job-1', delivery(3), 'completed', { outcome: 'succeeded' })),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(store.get('job-1')?.state, 'completed');
    assert.deepEqual(
      store.pendingDeliveries().map((d) => d.body.toString()),
      ['b1', 'b3'],
    );
    store.close();
    await assert.rejects(
      store.batch(() => 1),
      /closed/,
    );
  });
});

test('delivered marks ride along with the next batch, or commit alone after 100 ms; commits never sync on this thread', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-store-'));
  // A manual clock: a mark commits with a batch, or once its 100 ms have been let pass, never on its own timer.
  const clock = new ManualClock();
  const store = SqliteStore.open({ dataDir: dir, log: pino({ level: 'silent' }), clock });
  // A second connection sees only what was committed.
  const reader = new Database(join(dir, 'foreman.db'), { readonly: true });
  const stored = (): string[] =>
    reader
      .prepare('SELECT body FROM deliveries ORDER BY seq')
      .all()
      .map((r) => String((r as { body: Buffer }).body));
  const synchronous = (): unknown => (store as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true });
  try {
    store.admit(spec, 's', 'n');
    store.transition('job-1', 'creating');
    store.transition('job-1', 'started', { containerId: 'c', startedAt: 1 });
    const first = store.recordUpdate('job-1', delivery(1), 'running').delivery;
    const second = store.recordUpdate('job-1', delivery(2)).delivery;

    // Marked, then a batch: both commit in that batch's transaction.
    let marked = false;
    const mark = store.completeDelivery(first.id).then(() => (marked = true));
    await settle();
    assert.deepEqual(stored(), ['b1', 'b2'], 'a mark waits for a batch');
    await store.batch(() => store.recordUpdate('job-1', delivery(3)));
    assert.equal(marked, true, 'the mark resolved with the batch');
    assert.deepEqual(stored(), ['b2', 'b3']);
    await mark;

    // Marked with no batch to ride along with: it commits on its own after 100 ms.
    const alone = store.completeDelivery(second.id);
    await clock.advance(99);
    assert.deepEqual(stored(), ['b2', 'b3']);
    await clock.advance(1);
    await alone;
    assert.deepEqual(stored(), ['b3']);
    assert.equal(synchronous(), 0, 'commits never sync on this thread (synchronous = OFF): WalSync syncs in the thread pool');

    // A mark still waiting at close is committed by close.
    const third = store.pendingDeliveries()[0];
    assert.ok(third, 'the third delivery is stored');
    void store.completeDelivery(third.id);
    store.close();
    assert.deepEqual(stored(), []);
    await assert.rejects(store.completeDelivery(third.id), /closed/);
  } finally {
    reader.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one data_dir serves one agent; a lock left by a dead process is taken over', () => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-lock-'));
  try {
    const open = () => SqliteStore.open({ dataDir: dir, log: pino({ level: 'silent' }) });
    const first = open();
    assert.throws(open, (err: unknown) => err instanceof DataDirInUseError && /another foreman agent \(pid \d+\) is using data_dir/.test(err.message));
    first.close();
    // A pid that cannot be alive: what a kill -9 leaves behind, as far as the lock can tell.
    writeFileSync(join(dir, 'agent.lock'), '2147483646');
    const second = open();
    second.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a cancel is stored once, survives reopening, and is refused for unknown or ended jobs', async () => {
  await withStore((open) => {
    const first = open();
    first.admit(spec, 's', 'n');
    first.transition('job-1', 'creating');
    first.transition('job-1', 'started', { containerId: 'c', startedAt: 1 });
    const canceled = first.requestCancel('job-1');
    assert.equal(typeof canceled?.cancelRequestedAt, 'number');
    assert.equal(first.requestCancel('job-1'), undefined, 'already under way');
    assert.equal(first.requestCancel('no-such-job'), undefined);
    first.close();
    const second = open();
    assert.equal(second.get('job-1')?.cancelRequestedAt, canceled?.cancelRequestedAt);
    second.transition('job-1', 'stopped', { outcome: 'canceled' });
    second.admit({ ...spec, id: 'ended' }, 's', 'n');
    second.transition('ended', 'removed');
    assert.equal(second.requestCancel('ended'), undefined);
  });
});

test('the time of the last container update is kept with an update that does not change the state', async () => {
  await withStore((open) => {
    const first = open();
    first.admit(spec, 's', 'n');
    first.transition('job-1', 'creating');
    first.transition('job-1', 'started', { containerId: 'c', startedAt: 1 });
    assert.equal(first.recordUpdate('job-1', delivery(1), 'running', { lastUpdateAt: 100 }).job.lastUpdateAt, 100);
    assert.equal(first.recordUpdate('job-1', delivery(2), undefined, { lastUpdateAt: 250 }).job.lastUpdateAt, 250);
    first.close();
    assert.equal(open().get('job-1')?.lastUpdateAt, 250);
  });
});

test('a store written by the first schema is migrated in place: its jobs and deliveries are kept', () => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-migrate-'));
  try {
    const v1 = new Database(join(dir, 'foreman.db'));
    v1.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE jobs (id TEXT PRIMARY KEY, spec TEXT NOT NULL, secret TEXT NOT NULL, state TEXT NOT NULL,
        container_name TEXT NOT NULL, container_id TEXT, outcome TEXT, received_at INTEGER NOT NULL,
        started_at INTEGER, stopped_at INTEGER, updated_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0);
      CREATE INDEX jobs_state ON jobs (state, updated_at);
      CREATE TABLE deliveries (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, seq INTEGER NOT NULL, url TEXT NOT NULL,
        headers TEXT NOT NULL, body BLOB NOT NULL, created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT, UNIQUE (job_id, seq));
      INSERT INTO meta VALUES ('agent_id', 'old-agent');
      INSERT INTO jobs VALUES ('old-job', '${JSON.stringify(spec)}', 's', 'running', 'n', 'c', NULL, 1, 2, NULL, 3, 1);
      INSERT INTO deliveries VALUES ('d1', 'old-job', 1, 'http://x/', '{"x-foreman-delivery-seq":"1"}', X'7B7D', 4, 0, NULL);
      PRAGMA user_version = 1;
    `);
    v1.close();
    const store = SqliteStore.open({ dataDir: dir, log: pino({ level: 'silent' }) });
    try {
      assert.equal(store.agentId, 'old-agent');
      const job = store.get('old-job');
      assert.equal(job?.state, 'running');
      assert.equal(job.cancelRequestedAt, null);
      assert.equal(job.lastUpdateAt, null);
      assert.equal(job.trace, null, 'a job stored before tracing has no trace');
      assert.equal(store.pendingDeliveries()[0]?.id, 'd1');
      assert.ok(store.requestCancel('old-job'), 'the cancel of a live job is stored');
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a job's trace ids are kept with it across reopening (migration 4 adds them to an older store)", async () => {
  await withStore((open) => {
    const first = open();
    first.admit(spec, 's', 'n');
    assert.equal(first.get('job-1')?.trace, null, 'no trace until tracing begins one');
    const ids = { job: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, run: 'c'.repeat(16), parent: `00-${'a'.repeat(32)}-${'d'.repeat(16)}-01`, state: 'v=1' };
    first.recordTrace('job-1', ids);
    first.transition('job-1', 'creating');
    first.close();
    assert.deepEqual(open().get('job-1')?.trace, ids, 'the same ids after reopening');
  });
});
