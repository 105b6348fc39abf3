/** A job's live log against the fake engine: following into the store, resuming, truncating, redacting, ending. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LABEL_JOB } from '../../executor/executor.ts';
import { FakeExecutor } from '../../executor/fake/fake-executor.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { LogStore } from '../../logs/log-store.ts';
import type { LogShipper } from '../../logs/shipper.ts';
import { ManualClock, settle } from '../../testing/clock-kit.ts';
import { LiveLogs, type LiveLogsOptions } from './live-log.ts';
import { IMAGE } from '../../testing/agent-kit.ts';

const JOB_SECRET = 'job-secret-0123456789';

/** Polls `cond` until it holds, failing after `ms` of real time. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** The parts a restart keeps: the engine and the clock (and the log store's file, when given). */
function world() {
  const clock = new ManualClock();
  const executor = new FakeExecutor({ images: [IMAGE], now: () => clock.now() });
  return { clock, executor };
}

type World = ReturnType<typeof world>;

/** An agent's live logs with a shipper that only records what it is told. */
function agent(t: TestContext, w: World, options: Partial<LiveLogsOptions> = {}, path = ':memory:') {
  const store = new LogStore(path, () => w.clock.now());
  const notified: Array<[string, number]> = [];
  const shipper = {
    notify: (jobId: string, bytes = 0) => void notified.push([jobId, bytes]),
    resume: () => undefined,
    settled: () => Promise.resolve(),
    close: () => Promise.resolve(),
  } as unknown as LogShipper;
  const live = new LiveLogs(
    { store, shipper, executor: w.executor, log: pino({ level: 'silent' }), clock: w.clock },
    { maxBytes: 1_000_000, secrets: [], backoff: { baseMs: 100, maxMs: 1000 }, followWaitMs: 5000, flushMs: 0, ...options },
  );
  t.after(() => live.close());
  return { store, notified, live };
}

async function startContainer(w: World, jobId: string): Promise<string> {
  const id = await w.executor.create({ name: `c-${jobId}`, image: IMAGE, command: undefined, env: {}, labels: { [LABEL_JOB]: jobId } });
  await w.executor.start(id);
  return id;
}

/** A started job's record; `logsUrl` null: the job has none. */
function job(id: string, containerId: string | null, logsUrl: string | null = 'http://127.0.0.1:9/logs'): JobRecord {
  return {
    id,
    spec: { id, image: IMAGE, body: {}, callbackUrl: 'http://127.0.0.1:9/cb', ...(logsUrl === null ? {} : { logsUrl }) },
    secret: JOB_SECRET,
    state: 'started',
    containerName: `c-${id}`,
    containerId,
    outcome: null,
    receivedAt: 0,
    startedAt: 0,
    stoppedAt: null,
    cancelRequestedAt: null,
    lastUpdateAt: null,
    trace: null,
    updatedAt: 0,
    exitCode: null,
    postHookDue: false,
    postHookStartedAt: null,
    postHookEndedAt: null,
    postHookResult: null,
    redacting: false,
  };
}

const texts = (store: LogStore, jobId: string): string[] => store.read(jobId, 0, 10_000).map((l) => `${l.stream}:${l.text}`);

test("a started container's output is followed into the store, the shipper is told, and the stream is followed once it exited", async (t) => {
  const w = world();
  const { store, notified, live } = agent(t, w);
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'before the follow');
  const log = live.forJob('j1');
  log.open(job('j1', null));
  assert.equal(store.get('j1')?.nextLine, 0, 'opened before the container starts');
  log.follow(job('j1', cid));
  await until('the first line', () => store.get('j1')?.nextLine === 1);
  w.executor.print(cid, 'stderr', 'an error');
  w.executor.print(cid, 'stdout', 'a long line in ', { partial: true });
  w.executor.print(cid, 'stdout', 'two pieces');
  await until('four lines', () => store.get('j1')?.nextLine === 4);
  assert.deepEqual(texts(store, 'j1'), ['stdout:before the follow', 'stderr:an error', 'stdout:a long line in ', 'stdout:two pieces']);
  assert.ok(notified.length > 0 && notified.every(([id, bytes]) => id === 'j1' && bytes > 0), JSON.stringify(notified));
  assert.equal(store.get('j1')?.followed, false, 'not followed while it runs');
  assert.deepEqual(store.get('j1')?.cursor, { since: null, count: 4 });

  const told = notified.length;
  w.executor.print(cid, 'stdout', 'last words');
  w.executor.exit(cid, 0);
  await until('followed to the end', () => store.get('j1')?.followed === true);
  assert.deepEqual(texts(store, 'j1').at(-1), 'stdout:last words');
  assert.equal(store.get('j1')?.nextLine, 5);
  assert.deepEqual(notified.at(-1), ['j1', 0], 'the shipper is told the output ended');
  assert.ok(notified.length > told, 'the shipper was told of the new lines');
  await until('the follower to finish', () => live.followers.size === 0);
});

test('a job without a logsUrl has no stream and nothing is followed', async (t) => {
  const w = world();
  const { store, live } = agent(t, w);
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'unheard');
  live.forJob('j1').follow(job('j1', cid, null));
  await settle();
  assert.equal(store.get('j1'), undefined);
  assert.equal(live.followers.size, 0);
});

test('after a restart the log goes on from the stored cursor, without a line twice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-live-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs.db');
  const w = world();
  const cid = await startContainer(w, 'j1');
  const first = agent(t, w, {}, path);
  for (let n = 0; n < 3; n++) w.executor.print(cid, n === 1 ? 'stderr' : 'stdout', `line ${n}`);
  first.live.forJob('j1').follow(job('j1', cid));
  await until('three lines', () => first.store.get('j1')?.nextLine === 3);
  await first.live.close();
  // Printed while the agent is down.
  w.executor.print(cid, 'stdout', 'line 3');
  w.executor.print(cid, 'stderr', 'line 4');

  const second = agent(t, w, {}, path);
  second.live.forJob('j1').follow(job('j1', cid));
  await until('five lines', () => second.store.get('j1')?.nextLine === 5);
  w.executor.print(cid, 'stdout', 'line 5');
  w.executor.exit(cid, 0);
  await until('followed to the end', () => second.store.get('j1')?.followed === true);
  assert.deepEqual(texts(second.store, 'j1'), ['stdout:line 0', 'stderr:line 1', 'stdout:line 2', 'stdout:line 3', 'stderr:line 4', 'stdout:line 5']);
  assert.deepEqual(second.store.get('j1')?.cursor, { since: null, count: 6 });
});

test('lines read are stored together every flushMs, with their cursor; ones not yet stored are read again after a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-live-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs.db');
  const w = world();
  const cid = await startContainer(w, 'j1');
  const first = agent(t, w, { flushMs: 100 }, path);
  first.live.forJob('j1').follow(job('j1', cid));
  for (let n = 0; n < 3; n++) w.executor.print(cid, 'stdout', `line ${n}`);
  await until('the lines to be read and held', () => w.clock.timers === 1);
  assert.equal(first.store.get('j1')?.nextLine, 0, 'held for flushMs, not stored one read at a time');
  await w.clock.advance(100);
  assert.equal(first.store.get('j1')?.nextLine, 3, 'stored together once flushMs passed');
  assert.deepEqual(first.store.get('j1')?.cursor, { since: null, count: 3 }, 'with the cursor after them');
  assert.equal(first.notified.length, 1, 'the shipper is told once for the three');
  // Read but not yet stored when the agent goes away: the store neither has them nor counts them.
  w.executor.print(cid, 'stderr', 'line 3');
  await until('the fourth line to be held', () => w.clock.timers === 1);
  first.store.close();
  await first.live.close().catch(() => undefined);

  const second = agent(t, w, { flushMs: 100 }, path);
  second.live.forJob('j1').follow(job('j1', cid));
  await until('the held line to be read again', () => w.clock.timers === 1);
  await w.clock.advance(100);
  w.executor.exit(cid, 0);
  await until('followed to the end', () => second.store.get('j1')?.followed === true);
  assert.deepEqual(texts(second.store, 'j1'), ['stdout:line 0', 'stdout:line 1', 'stdout:line 2', 'stderr:line 3'], 'each line once, in order');
});

test('an engine that goes away while following is read again after a backoff, without a line twice', async (t) => {
  const w = world();
  const { store, live } = agent(t, w);
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'one');
  live.forJob('j1').follow(job('j1', cid));
  await until('the first line', () => store.get('j1')?.nextLine === 1);
  w.executor.loseEngine();
  await until('the retry to wait', () => w.clock.timers === 1);
  w.executor.print(cid, 'stdout', 'two');
  w.executor.up = true;
  await w.clock.advance(1000);
  await until('the second line', () => store.get('j1')?.nextLine === 2);
  w.executor.exit(cid, 0);
  await until('followed to the end', () => store.get('j1')?.followed === true);
  assert.deepEqual(texts(store, 'j1'), ['stdout:one', 'stdout:two']);
});

test('max_log_bytes: exactly one truncation line is added, the rest is dropped, and the cursor still moves on', async (t) => {
  const w = world();
  const { store, live } = agent(t, w, { maxBytes: 20 });
  const cid = await startContainer(w, 'j1');
  for (const text of ['aaaaaaaaaa', 'bbbbbbbbbb', 'cccc', 'dddd']) w.executor.print(cid, 'stdout', text);
  live.forJob('j1').follow(job('j1', cid));
  await until('the cursor past every message', () => store.get('j1')?.cursor.count === 4);
  w.executor.print(cid, 'stderr', 'eeee');
  w.executor.exit(cid, 0);
  await until('followed to the end', () => store.get('j1')?.followed === true);
  assert.deepEqual(texts(store, 'j1'), ['stdout:aaaaaaaaaa', 'stdout:bbbbbbbbbb', 'stdout:[foreman] log truncated after 20 bytes']);
  const stream = store.get('j1');
  assert.equal(stream?.truncated, true);
  assert.equal(stream.bytes, 20);
  assert.deepEqual(stream.cursor, { since: null, count: 5 });
});

test('max_log_bytes counts across a restart: the truncation line is never added twice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-live-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs.db');
  const w = world();
  const cid = await startContainer(w, 'j1');
  const first = agent(t, w, { maxBytes: 12 }, path);
  w.executor.print(cid, 'stdout', '12345678');
  first.live.forJob('j1').follow(job('j1', cid));
  await until('the first line', () => first.store.get('j1')?.nextLine === 1);
  await first.live.close();
  w.executor.print(cid, 'stdout', 'abcdefgh');
  w.executor.print(cid, 'stdout', 'more');
  const second = agent(t, w, { maxBytes: 12 }, path);
  second.live.forJob('j1').follow(job('j1', cid));
  await until('the cursor past every message', () => second.store.get('j1')?.cursor.count === 3);
  w.executor.exit(cid, 0);
  await until('followed to the end', () => second.store.get('j1')?.followed === true);
  assert.deepEqual(texts(second.store, 'j1'), ['stdout:12345678', 'stdout:[foreman] log truncated after 8 bytes']);
});

test("[core.env] values and the job's secret are hidden in the stored lines, also across a split message", async (t) => {
  const w = world();
  const { store, live } = agent(t, w, { secrets: ['core-env-value-42', ''] });
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'env core-env-value-42 and secret job-secret-0123456789 end');
  w.executor.print(cid, 'stderr', 'token=job-secret-01', { partial: true });
  w.executor.print(cid, 'stderr', '23456789 rest');
  live.forJob('j1').follow(job('j1', cid));
  await until('three lines', () => store.get('j1')?.nextLine === 3);
  assert.deepEqual(texts(store, 'j1'), ['stdout:env [redacted] and secret [redacted] end', 'stderr:token=[redacted]', 'stderr:[redacted] rest']);
});

test("hide redacts a report's log tail with [core.env] values and the given secret", (t) => {
  const w = world();
  const { live } = agent(t, w, { secrets: ['core-env-value-42'] });
  const log = live.forJob('j1');
  assert.deepEqual(log.hide(['core-env-value-42 x', 'the s3cret-of-job', 'plain'], 's3cret-of-job'), ['[redacted] x', 'the [redacted]', 'plain']);
});

test('lost: the log ends with what was read, once', (t) => {
  const w = world();
  const { store, notified, live } = agent(t, w);
  const log = live.forJob('j1');
  log.lost();
  assert.equal(notified.length, 0, 'no stream: nothing to end');
  log.open(job('j1', null));
  log.lost();
  assert.equal(store.get('j1')?.followed, true);
  assert.deepEqual(notified, [['j1', 0]]);
  log.lost();
  assert.equal(notified.length, 1, 'ended once');
});

test("followed: waits for the follower to read a stopped container's output to its end", async (t) => {
  const w = world();
  const { store, live } = agent(t, w);
  const cid = await startContainer(w, 'j1');
  const log = live.forJob('j1');
  log.follow(job('j1', cid));
  w.executor.print(cid, 'stdout', 'final');
  w.executor.exit(cid, 0);
  await log.followed();
  assert.equal(store.get('j1')?.followed, true);
  assert.deepEqual(texts(store, 'j1'), ['stdout:final']);
  assert.equal(w.clock.timers, 0, 'its timer is cancelled');
});

test('followed: gives up after followWaitMs and ends the log with what was read', async (t) => {
  const w = world();
  const { store, notified, live } = agent(t, w, { followWaitMs: 3000 });
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'still running');
  const log = live.forJob('j1');
  log.follow(job('j1', cid));
  await until('the first line', () => store.get('j1')?.nextLine === 1);
  let done = false;
  const waiting = log.followed().then(() => (done = true));
  await w.clock.advance(2999);
  assert.equal(done, false, 'waits while the output may go on');
  assert.equal(store.get('j1')?.followed, false);
  await w.clock.advance(1);
  await until('followed() to give up', () => done);
  await waiting;
  assert.equal(store.get('j1')?.followed, true);
  assert.deepEqual(notified.at(-1), ['j1', 0]);
  // The log says so itself, so a logs server can tell this end from a whole log.
  assert.deepEqual(
    store.read('j1', 0, 10).map((l) => [l.stream, l.text]),
    [
      ['stdout', 'still running'],
      ['stderr', '[foreman] log cut short: the container was removed before its output was read to the end'],
    ],
  );
});

test('at the exit, the output is read again only when the last stored message is not the last one taken', async (t) => {
  const w = world();
  const { store, live } = agent(t, w);
  const cid = await startContainer(w, 'j1');
  w.executor.print(cid, 'stdout', 'one');
  const log = live.forJob('j1');
  log.follow(job('j1', cid));
  await until('the first line', () => store.get('j1')?.nextLine === 1);
  w.executor.exit(cid, 0);
  await until('the log to be followed to its end', () => store.get('j1')?.followed === true);
  const reads = w.executor.calls.filter((c) => c.startsWith('readLogs'));
  // The follow, then one look at the last message; no second full read.
  assert.equal(reads.length, 2, reads.join(', '));
  assert.deepEqual(
    store.read('j1', 0, 10).map((l) => l.text),
    ['one'],
  );
});
