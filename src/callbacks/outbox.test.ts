import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Agent, type Dispatcher } from 'undici';
import type { Clock } from '../shared/clock.ts';
import type { Delivery } from '../shared/delivery.ts';
import { CallbackOutbox, type DeliveryResult, type OutboxOptions, type OutboxStore } from './outbox.ts';

/** A callback receiver answering from a script of statuses per path, recording arrivals. */
async function receiver(script: Record<string, number[]>) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    req.resume();
    const path = req.url ?? '';
    seen.push(`${path}#${String(req.headers['x-foreman-delivery-seq'])}`);
    const status = script[path]?.shift() ?? 200;
    if (status === 0) req.socket.destroy();
    else res.writeHead(status).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Time jumps forward by each requested sleep, so backoff costs nothing. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 1_000_000;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    sleep: (ms) => ((now += ms), slept.push(ms), Promise.resolve()),
    after: () => assert.fail('the outbox sets no timers'),
  };
}

function delivery(jobId: string, seq: number, url: string, createdAt: number, status?: 'running' | 'completed'): Delivery {
  const headers: Record<string, string> = status === undefined ? {} : { 'x-foreman-job-status': status };
  return { id: `${jobId}-${seq}`, jobId, seq, url, headers, body: Buffer.from('{}'), createdAt, attempts: 0 };
}

function run(deliveries: Delivery[], clock: Clock, maxAgeMs = 60_000, extra: Partial<OutboxOptions> = {}) {
  const completed: string[] = [];
  const attempts: Array<[string, number]> = [];
  const settled: Array<[string, DeliveryResult]> = [];
  const store: OutboxStore = {
    pendingDeliveries: () => deliveries,
    durable: () => Promise.resolve(),
    completeDelivery: (id) => (completed.push(id), Promise.resolve()),
    recordAttempt: (id, n) => void attempts.push([id, n]),
  };
  const outbox = new CallbackOutbox({
    store,
    log: pino({ level: 'silent' }),
    clock,
    userAgent: 'foreman/test',
    maxAgeMs,
    requestTimeoutMs: 2000,
    backoff: { baseMs: 100, maxMs: 1000 },
    onSettled: (d, result) => settled.push([d.id, result]),
    ...extra,
  });
  outbox.resume();
  return { outbox, completed, attempts, settled };
}

test('5xx, 429, 408 and dropped connections are retried with backoff; order per job is kept', async () => {
  const server = await receiver({ '/a': [503, 429, 408, 0, 200] });
  const clock = fakeClock();
  const { outbox, settled, attempts } = run([delivery('j', 1, `${server.base}/a`, clock.now()), delivery('j', 2, `${server.base}/b`, clock.now())], clock);
  await outbox.drain(AbortSignal.timeout(10_000));
  await outbox.close();
  await server.close();
  assert.deepEqual(server.seen, ['/a#1', '/a#1', '/a#1', '/a#1', '/a#1', '/b#2']);
  assert.deepEqual(settled, [
    ['j-1', 'delivered'],
    ['j-2', 'delivered'],
  ]);
  assert.deepEqual(
    attempts.map(([, n]) => n),
    [1, 2, 3, 4],
  );
  assert.ok(
    clock.slept.every((ms, i) => ms >= 50 * 2 ** i && ms <= Math.min(1000, 100 * 2 ** i)),
    JSON.stringify(clock.slept),
  );
});

test('any other 4xx is final: the delivery is dropped and the next one goes out', async () => {
  const server = await receiver({ '/a': [400] });
  const clock = fakeClock();
  const { outbox, settled, completed } = run([delivery('j', 1, `${server.base}/a`, clock.now()), delivery('j', 2, `${server.base}/b`, clock.now())], clock);
  await outbox.drain(AbortSignal.timeout(10_000));
  await outbox.close();
  await server.close();
  assert.deepEqual(settled, [
    ['j-1', 'rejected'],
    ['j-2', 'delivered'],
  ]);
  assert.deepEqual(completed, ['j-1', 'j-2']);
});

test('a delivery older than callback_max_age is given up on', async () => {
  const server = await receiver({ '/a': Array.from({ length: 50 }, () => 503) });
  const clock = fakeClock();
  const { outbox, settled } = run([delivery('j', 1, `${server.base}/a`, clock.now())], clock, 5000);
  await outbox.drain(AbortSignal.timeout(10_000));
  await outbox.close();
  await server.close();
  assert.deepEqual(settled, [['j-1', 'expired']]);
  assert.ok(clock.slept.reduce((a, b) => a + b, 0) >= 5000, 'the retries waited at least 5 s in all');
});

/** Polls `cond` until it holds, failing after `ms` of real time. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** An HTTP client that notes each request as the outbox issues it, with what `note()` says then. */
class SpyAgent extends Agent {
  readonly issued: Array<[string, boolean]> = [];
  note: () => boolean = () => false;

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.issued.push([String(options.path), this.note()]);
    return super.dispatch(options, handler);
  }
}

test('beforeFinal holds a completed update until it resolves; running updates and other jobs go out meanwhile', async () => {
  const server = await receiver({});
  const clock = fakeClock();
  const spy = new SpyAgent();
  let released = false;
  spy.note = () => released;
  let release = (): void => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const asked: string[] = [];
  const beforeFinal = (jobId: string): Promise<void> => (asked.push(jobId), jobId === 'a' ? gate : Promise.resolve());
  const now = clock.now();
  const { outbox, settled } = run(
    [
      delivery('a', 1, `${server.base}/a`, now, 'running'),
      delivery('a', 2, `${server.base}/a`, now, 'running'),
      delivery('a', 3, `${server.base}/a`, now, 'completed'),
      delivery('b', 1, `${server.base}/b`, now, 'completed'),
      delivery('c', 1, `${server.base}/c`, now),
    ],
    clock,
    60_000,
    { beforeFinal, dispatcher: spy },
  );
  await until('job a held, the others delivered', () => asked.includes('a') && settled.length >= 4);
  assert.deepEqual(new Set(settled.map(([id]) => id)), new Set(['a-1', 'a-2', 'b-1', 'c-1']));
  assert.deepEqual(asked.sort(), ['a', 'b'], 'asked only before a completed update');
  released = true;
  release();
  await outbox.drain(AbortSignal.timeout(10_000));
  await outbox.close();
  await spy.close();
  await server.close();
  assert.deepEqual(settled.at(-1), ['a-3', 'delivered']);
  assert.deepEqual(
    spy.issued.filter(([path]) => path === '/a'),
    [
      ['/a', false],
      ['/a', false],
      ['/a', true],
    ],
    'the completed update is sent only once beforeFinal resolved',
  );
  assert.deepEqual(
    spy.issued.find(([path]) => path === '/b'),
    ['/b', false],
    "another job's completed update is not held",
  );
});

test('closing the outbox while a completed update is held leaves it stored', async () => {
  const server = await receiver({});
  const clock = fakeClock();
  const signals: AbortSignal[] = [];
  // Like the log shipper's `settled`: resolves when the signal aborts.
  const beforeFinal = (_jobId: string, signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => (signals.push(signal), signal.addEventListener('abort', () => resolve(), { once: true })));
  const { outbox, settled, completed } = run([delivery('a', 1, `${server.base}/a`, clock.now(), 'completed')], clock, 60_000, { beforeFinal });
  await until('the update to be held', () => signals.length === 1);
  await outbox.close();
  await outbox.close();
  await server.close();
  assert.equal(signals[0]?.aborted, true, 'beforeFinal is told the outbox closed');
  assert.deepEqual(server.seen, []);
  assert.deepEqual(settled, []);
  assert.deepEqual(completed, [], 'the delivery stays in the store for the next start');
  assert.equal(outbox.backlog, 1);
});

test('the backlog and when its oldest delivery was stored, over every job; none once delivered', async () => {
  const server = await receiver({ '/a': [503, 503, 503], '/b': [503] });
  let now = 5_000;
  // Time stands still while deliveries wait, so the backlog can be read mid-way.
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const clock: Clock = { now: () => now, sleep: () => held, after: () => assert.fail('the outbox sets no timers') };
  const { outbox } = run(
    [delivery('j', 1, `${server.base}/a`, 3_000), delivery('j', 2, `${server.base}/a`, 4_000), delivery('k', 1, `${server.base}/b`, 2_500)],
    clock,
  );
  try {
    const deadline = Date.now() + 5000;
    while (server.seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(outbox.backlog, 3, 'three deliveries wait');
    assert.equal(outbox.oldestCreatedAt, 2_500, 'the oldest of them, whichever job it is of');
    now = 10_000;
    release();
    await outbox.drain(AbortSignal.timeout(10_000));
    assert.equal(outbox.backlog, 0, 'none left');
    assert.equal(outbox.oldestCreatedAt, undefined, 'so no oldest');
  } finally {
    await outbox.close();
    await server.close();
  }
});

test('with tracing, each attempt gets its span: its traceparent on the request, ended with the status or the error', async () => {
  const headers: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    req.resume();
    headers.push(req.headers.traceparent as string | undefined);
    res.writeHead(headers.length === 1 ? 503 : 200).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`;
  const clock = fakeClock();
  const ended: Array<[number, { status?: number; error?: string }]> = [];
  const stored = delivery('j', 1, url, clock.now());
  const { outbox, settled } = run([{ ...stored, headers: { ...stored.headers, traceparent: 'from-the-container' } }], clock, 60_000, {
    traceAttempt: (_d, attempt) => ({
      headers: { traceparent: `00-${'a'.repeat(32)}-${String(attempt).padStart(16, '0')}-01` },
      end: (result) => void ended.push([attempt, result]),
    }),
  });
  await outbox.drain(AbortSignal.timeout(10_000));
  await outbox.close();
  await new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r())));
  assert.deepEqual(
    headers,
    [`00-${'a'.repeat(32)}-0000000000000001-01`, `00-${'a'.repeat(32)}-0000000000000002-01`],
    "each attempt carries its own span's traceparent, over one the container sent",
  );
  assert.deepEqual(
    ended,
    [
      [1, { status: 503 }],
      [2, { status: 200 }],
    ],
    'each span ends with its answer',
  );
  assert.deepEqual(settled, [['j-1', 'delivered']]);
});
