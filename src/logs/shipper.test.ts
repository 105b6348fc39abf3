import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { LogLine } from '../shared/log-line.ts';
import { ManualClock, settle } from '../testing/clock-kit.ts';
import { LogStore } from './log-store.ts';
import { LogShipper, type LogShipperOptions } from './shipper.ts';

interface Received {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** A logs server on 127.0.0.1 answering each request with `answer(n)` (n from 0), a little later, recording what came. */
async function logsServer(t: TestContext, answer: (n: number, got: Received) => number = () => 200) {
  const received: Received[] = [];
  const state = { inFlight: 0, maxInFlight: 0 };
  const server = createServer((req, res) => {
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const got = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(got);
      const status = answer(received.length - 1, got);
      // Answered on a later turn, so that a second request of the same job would overlap this one.
      setImmediate(() => {
        state.inFlight--;
        res.writeHead(status).end();
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, received, state, of: (path: string) => received.filter((r) => r.path === path) };
}

/** Polls `cond` until it holds, failing after `ms` of real time. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function setup(t: TestContext, extra: Partial<LogShipperOptions> = {}) {
  const clock = new ManualClock();
  const store = new LogStore(':memory:', () => clock.now());
  const shipper = new LogShipper({
    store,
    log: pino({ level: 'silent' }),
    clock,
    userAgent: 'foreman/test',
    agentId: 'agent-7',
    requestTimeoutMs: 2000,
    backoff: { baseMs: 100, maxMs: 1000 },
    maxAgeMs: 60_000,
    intervalMs: 0,
    ...extra,
  });
  t.after(async () => {
    await shipper.close();
    store.close();
  });
  return { clock, store, shipper };
}

const TS = '2026-11-28T07:42:30.437418862Z';

/** Stores each text as a line read on its own (one chunk each), as a job printing slowly gives them. */
function stored(store: LogStore, jobId: string, texts: string[]): LogLine[] {
  const before = store.get(jobId)?.nextLine ?? 0;
  const lines: LogLine[] = texts.map((text, n) => ({ stream: (before + n) % 3 === 0 ? 'stderr' : 'stdout', ts: TS, text }));
  lines.forEach((line, n) =>
    assert.ok(store.append(jobId, [line], { since: null, count: before + n + 1 }, { bytes: 0, truncated: false }), 'the line was appended'),
  );
  return lines;
}

const ndjson = (body: string): unknown[] =>
  body
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

test("lines go out as NDJSON batches within the byte limit, in order, one request at a time, with the job's headers", async (t) => {
  const server = await logsServer(t);
  const { store, shipper } = setup(t, { batchBytes: 200 });
  const jobId = 'job/ä 1';
  store.open(jobId, `${server.base}/logs`);
  const texts = Array.from({ length: 25 }, (_, n) => `line ${n} ${'é'.repeat(n % 7)}`);
  const lines = stored(store, jobId, texts);
  shipper.notify(jobId);
  await until('every line accepted', () => store.get(jobId)?.acked === texts.length);

  assert.ok(server.received.length >= 4, `${server.received.length} batches`);
  assert.equal(server.state.maxInFlight, 1, 'one request at a time');
  const all = lines.map((l, i) => ({ i, ts: l.ts, stream: l.stream, text: l.text }));
  let next = 0;
  for (const req of server.received) {
    assert.equal(req.path, '/logs');
    assert.equal(req.headers['content-type'], 'application/x-ndjson');
    assert.equal(req.headers['x-foreman-job-id'], 'job%2F%C3%A4%201');
    assert.equal(req.headers['x-foreman-agent-id'], 'agent-7');
    assert.equal(req.headers['user-agent'], 'foreman/test');
    assert.equal(req.headers['x-foreman-log-end'], undefined);
    assert.equal(req.headers['x-foreman-log-offset'], String(next), 'the offset is the number of the first line');
    const batch = ndjson(req.body);
    assert.deepEqual(batch, all.slice(next, next + batch.length));
    const size = Buffer.byteLength(req.body);
    assert.ok(size <= 200, `a batch of ${size} bytes`);
    next += batch.length;
    const following = all[next];
    if (following) assert.ok(size + Buffer.byteLength(`${JSON.stringify(following)}\n`) > 200, 'a batch is cut only when the next line does not fit');
  }
  assert.equal(next, texts.length);
  assert.deepEqual(store.read(jobId, 0, 100), [], 'accepted lines are deleted');
  assert.equal(store.get(jobId)?.settled, null, 'not ended before the output was followed to its end');
});

test('a line bigger than the byte limit goes out alone', async (t) => {
  const server = await logsServer(t);
  const { store, shipper } = setup(t, { batchBytes: 100 });
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['short', 'x'.repeat(500), 'after']);
  shipper.notify('j');
  await until('every line accepted', () => store.get('j')?.acked === 3);
  assert.deepEqual(
    server.received.map((r) => ndjson(r.body).length),
    [1, 1, 1],
  );
});

test('after a 503 the same lines are sent again at the same offset, after a backoff', async (t) => {
  const server = await logsServer(t, (n) => (n === 0 ? 503 : 200));
  const { clock, store, shipper } = setup(t);
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['a', 'b', 'c']);
  shipper.notify('j');
  await until('the first attempt and its backoff', () => server.received.length === 1 && clock.timers === 1);
  assert.equal(store.get('j')?.acked, 0);
  // The first retry waits 50 to 100 ms (base 100, full jitter over its upper half).
  await clock.advance(49);
  assert.equal(server.received.length, 1, 'not before the backoff');
  await clock.advance(51);
  await until('the lines accepted', () => store.get('j')?.acked === 3);
  const [first, second] = server.received;
  assert.equal(server.received.length, 2);
  assert.equal(second?.headers['x-foreman-log-offset'], '0');
  assert.equal(second.body, first?.body);
});

test('a logs server failing for callback_max_age is given up on: the stream settles abandoned', async (t) => {
  const server = await logsServer(t, () => 500);
  const { clock, store, shipper } = setup(t, { maxAgeMs: 5000 });
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['a']);
  shipper.notify('j');
  const deadline = Date.now() + 5000;
  while (store.get('j')?.settled == null) {
    assert.ok(Date.now() < deadline, 'gave up in time');
    if (clock.timers > 0) await clock.advance(1000);
    else await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.equal(store.get('j')?.settled, 'abandoned');
  assert.ok(server.received.length >= 5, `${server.received.length} attempts`);
  assert.deepEqual(store.read('j', 0, 10), []);
});

test('a 404 settles the stream rejected; nothing more of it is stored or sent', async (t) => {
  const server = await logsServer(t, (_, got) => (got.path === '/gone' ? 404 : 200));
  const { store, shipper } = setup(t);
  store.open('j', `${server.base}/gone`);
  stored(store, 'j', ['a', 'b']);
  shipper.notify('j');
  await shipper.settled('j', AbortSignal.timeout(5000));
  assert.equal(store.get('j')?.settled, 'rejected');
  assert.deepEqual(store.read('j', 0, 10), []);
  assert.equal(store.append('j', [{ stream: 'stdout', ts: TS, text: 'c' }], { since: null, count: 3 }, { bytes: 1, truncated: false }), false);
  store.markFollowed('j');
  shipper.notify('j', 1000);
  // Another job's batch goes through: by then a request of the rejected one would have been sent too.
  store.open('k', `${server.base}/fine`);
  stored(store, 'k', ['other']);
  shipper.notify('k');
  await until("the other job's line", () => store.get('k')?.acked === 1);
  await settle();
  assert.equal(server.of('/gone').length, 1);
});

test('once the output was followed and every line accepted, an empty POST with x-foreman-log-end ends the stream', async (t) => {
  const server = await logsServer(t);
  const { store, shipper } = setup(t);
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['a', 'b', 'c']);
  shipper.notify('j');
  await until('the lines accepted', () => store.get('j')?.acked === 3);
  let settled = false;
  const waiting = shipper.settled('j', AbortSignal.timeout(5000)).then(() => (settled = true));
  await settle();
  assert.equal(settled, false, 'not settled while the output may go on');
  stored(store, 'j', ['d']);
  store.markFollowed('j');
  shipper.notify('j');
  await waiting;
  assert.equal(store.get('j')?.settled, 'ended');
  const last = server.received.at(-1);
  assert.equal(last?.headers['x-foreman-log-end'], '4');
  assert.equal(last.headers['x-foreman-log-offset'], '4');
  assert.equal(last.body, '');
  assert.deepEqual(ndjson(server.received.at(-2)?.body ?? ''), [{ i: 3, ts: TS, stream: 'stderr', text: 'd' }], 'the last line goes before the end');
  assert.equal(server.received.filter((r) => r.headers['x-foreman-log-end'] !== undefined).length, 1);
});

test('a stream followed with no lines at all ends with x-foreman-log-end 0', async (t) => {
  const server = await logsServer(t);
  const { store, shipper } = setup(t);
  store.open('quiet', `${server.base}/logs`);
  store.markFollowed('quiet');
  shipper.notify('quiet');
  await shipper.settled('quiet', AbortSignal.timeout(5000));
  assert.equal(store.get('quiet')?.settled, 'ended');
  assert.deepEqual(
    server.received.map((r) => [r.headers['x-foreman-log-offset'], r.headers['x-foreman-log-end'], r.body]),
    [['0', '0', '']],
  );
});

test('settled resolves at once for a job with no stream, and when its signal aborts', async (t) => {
  const { store, shipper } = setup(t);
  await shipper.settled('no-such-job', AbortSignal.timeout(5000));
  store.open('open', 'http://127.0.0.1:9/never');
  const stop = new AbortController();
  let done = false;
  const waiting = shipper.settled('open', stop.signal).then(() => (done = true));
  await settle();
  assert.equal(done, false);
  stop.abort();
  await waiting;
  assert.equal(store.get('open')?.settled, null);
});

test('a small batch waits for the batch interval unless the byte limit is reached', async (t) => {
  const server = await logsServer(t);
  const { clock, store, shipper } = setup(t, { intervalMs: 1000, batchBytes: 1000 });
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['first']);
  shipper.notify('j', 70);
  await until('the first batch, at once', () => store.get('j')?.acked === 1);
  stored(store, 'j', ['second']);
  shipper.notify('j', 70);
  await until('the interval timer', () => clock.timers === 1);
  await clock.advance(999);
  assert.equal(server.received.length, 1, 'held until the interval passed');
  await clock.advance(1);
  await until('the second batch', () => store.get('j')?.acked === 2);
  stored(store, 'j', ['third']);
  shipper.notify('j', 70);
  await until('the interval timer', () => clock.timers === 1);
  stored(store, 'j', ['fourth']);
  shipper.notify('j', 1000);
  await until('the third batch, without waiting', () => store.get('j')?.acked === 4);
  assert.deepEqual(
    server.received.map((r) => ndjson(r.body).length),
    [1, 1, 2],
  );
});

test('resume sends what a previous run left, from the first line not accepted; settled streams are left alone', async (t) => {
  const server = await logsServer(t);
  const { store, shipper } = setup(t);
  store.open('left', `${server.base}/left`);
  stored(store, 'left', ['a', 'b', 'c']);
  store.ack('left', 1);
  store.markFollowed('left');
  store.open('done', `${server.base}/done`);
  stored(store, 'done', ['x']);
  store.settle('done', 'ended');
  shipper.resume();
  await shipper.settled('left', AbortSignal.timeout(5000));
  assert.equal(store.get('left')?.settled, 'ended');
  assert.deepEqual(
    server.received.map((r) => [r.path, r.headers['x-foreman-log-offset'], ndjson(r.body).length]),
    [
      ['/left', '1', 2],
      ['/left', '3', 0],
    ],
  );
});

test('close is safe twice, stops sending, and leaves lines not accepted stored for the next start', async (t) => {
  const server = await logsServer(t, () => 503);
  const { clock, store, shipper } = setup(t);
  store.open('j', `${server.base}/logs`);
  stored(store, 'j', ['a', 'b']);
  shipper.notify('j');
  await until('a failed attempt and its backoff', () => server.received.length === 1 && clock.timers === 1);
  let settled = false;
  const waiting = shipper.settled('j', AbortSignal.timeout(5000)).then(() => (settled = true));
  await Promise.all([shipper.close(), shipper.close()]);
  await shipper.close();
  await waiting;
  assert.equal(settled, true, 'settled() returns once the shipper closed');
  assert.equal(clock.timers, 0, 'the backoff sleep was cancelled');
  const stream = store.get('j');
  assert.equal(stream?.settled, null);
  assert.equal(stream.acked, 0);
  assert.deepEqual(
    store.read('j', 0, 10).map((l) => l.text),
    ['a', 'b'],
  );
  shipper.notify('j');
  await clock.advance(60_000);
  assert.equal(server.received.length, 1, 'nothing sent after close');
});

test('a lane that fails on its store starts again a few seconds later, so the job log still ends', async (t) => {
  const server = await logsServer(t);
  const { clock, store, shipper } = setup(t);
  store.open('j', `${server.base}/logs/j`);
  stored(store, 'j', ['a']);
  store.markFollowed('j');
  const ack = store.ack.bind(store);
  let failures = 1;
  store.ack = (jobId, upTo) => {
    if (failures-- > 0) throw new Error('SQLITE_BUSY: database is locked');
    ack(jobId, upTo);
  };
  shipper.notify('j');
  await until('the failed lane', () => server.received.length === 1);
  await settle();
  assert.equal(store.get('j')?.settled, null, 'not settled after the failure');
  await clock.advance(5000);
  await until('the log end', () => store.get('j')?.settled === 'ended');
  // The batch was sent again (the store had not recorded it accepted), then the end.
  assert.deepEqual(
    server.received.map((r) => r.headers['x-foreman-log-end'] ?? r.body.trim().split('\n').length),
    [1, 1, '1'],
  );
});

test('with tracing, each batch (retries included) is one span whose traceparent its requests carry; the end marker too', async (t) => {
  const server = await logsServer(t, (n) => (n === 0 ? 503 : 200));
  const spans: Array<{ details: { offset: number; lines: number; end: boolean }; result?: { status?: number; error?: string } }> = [];
  const { store, shipper, clock } = setup(t, {
    traceBatch: (jobId, url, details) => {
      assert.equal(jobId, 'job-1');
      assert.equal(url, `${server.base}/logs`);
      const span: (typeof spans)[number] = { details };
      spans.push(span);
      return { headers: { traceparent: `span-${spans.length}` }, end: (result) => void (span.result = result) };
    },
  });
  store.open('job-1', `${server.base}/logs`);
  stored(store, 'job-1', ['one', 'two']);
  store.markFollowed('job-1');
  shipper.notify('job-1');
  await until('the first attempt and its backoff', () => server.received.length === 1 && clock.timers === 1);
  await clock.advance(100);
  await until('the end accepted', () => store.get('job-1')?.settled === 'ended');
  assert.deepEqual(
    server.received.map((r) => r.headers.traceparent),
    ['span-1', 'span-1', 'span-2'],
    "a retry carries its batch's traceparent; the end marker has its own",
  );
  assert.deepEqual(
    spans,
    [
      { details: { offset: 0, lines: 2, end: false }, result: { status: 200 } },
      { details: { offset: 2, lines: 0, end: true }, result: { status: 200 } },
    ],
    'each span names its offset and lines and ends with the last answer',
  );
});
