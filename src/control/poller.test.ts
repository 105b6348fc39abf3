import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { systemClock } from '../shared/clock.ts';
import { ManualClock } from '../testing/clock-kit.ts';
import { PollError, Poller, parsePollReply, withReplyTraceContext, type PollerOptions } from './poller.ts';
import { encodeLabels } from '../protocol/wire.ts';

test('replies: an array, one object, [] , empty and 204 are jobs; anything else is a PollError', () => {
  const ok: Array<[number, string, number]> = [
    [200, '[{"id":"a"},{"id":"b"}]', 2],
    [200, '{"id":"a"}', 1],
    [200, '[]', 0],
    [200, '', 0],
    [200, 'null', 0],
    [204, '', 0],
  ];
  for (const [status, text, count] of ok) assert.equal(parsePollReply(status, text).length, count, text);
  const bad: Array<[number, string, RegExp]> = [
    [200, 'not json', /invalid JSON/],
    [200, '42', /number instead of a job/],
    [401, '', /rejected the token \(401\)/],
    [403, '', /rejected the token \(403\)/],
    [500, '', /answered 500/],
    [404, '', /answered 404/],
  ];
  for (const [status, text, message] of bad)
    assert.throws(
      () => parsePollReply(status, text),
      (e: unknown) => e instanceof PollError && message.test(e.message),
    );
});

test('an invalid reply is described by where it breaks, never by its text (it may hold env values)', () => {
  const replies = [
    '[{"id":"a","env":{"TOKEN":"s3cr3t-value"}} x',
    '{"env":{"TOKEN":"s3cr3t-value"',
    's3cr3t-value',
    '[{"env":{"TOKEN":"s3cr3t-value"}},]',
    '{"env":{"TOKEN":"s3cr3t-value"}}}',
  ];
  for (const text of replies) {
    assert.throws(
      () => parsePollReply(200, text),
      (e: unknown) => e instanceof PollError && /^the control server sent invalid JSON \(.+; \d+ bytes\)$/.test(e.message) && !e.message.includes('s3cr3t'),
      text,
    );
  }
  assert.throws(() => parsePollReply(200, '{"a":1 x'), /invalid JSON \(Expected ',' or '}' after property value at position 7; 8 bytes\)/);
});

test('labels are URL-encoded key=value pairs joined by commas', () => {
  assert.equal(encodeLabels({ queue: 'high', 'a,b': 'c=d' }), 'queue=high,a%2Cb=c%3Dd');
});

async function server(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const s = createServer(handler);
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/job`,
    close: () =>
      new Promise<void>((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  };
}

function options(url: string, overrides: Partial<PollerOptions>): PollerOptions {
  return {
    url,
    token: 't0k',
    labels: { queue: 'q' },
    agentId: 'agent-1',
    userAgent: 'foreman/test (linux, x64)',
    pollFrequencyMs: 10,
    pollTimeoutMs: 200,
    backoff: { baseMs: 10, maxMs: 20 },
    clock: systemClock,
    log: pino({ level: 'silent' }),
    freeSlots: () => 1,
    onJobs: () => 0,
    onCancel: () => undefined,
    ...overrides,
  };
}

test('a poll that gets no reply within poll_timeout fails with a clear reason, timed by the injected clock', { timeout: 10_000 }, async () => {
  let arrived!: () => void;
  const asked = new Promise<void>((resolve) => (arrived = resolve));
  const hanging = await server(() => arrived());
  const clock = new ManualClock();
  try {
    // A minute of poll_timeout, so only the manual clock can end this poll within the test's timeout.
    const poller = new Poller(options(hanging.url, { clock, pollTimeoutMs: 60_000 }));
    let settled = false;
    const polled = poller
      .pollOnce(new AbortController().signal)
      .then(
        () => undefined,
        (err: unknown) => err,
      )
      .finally(() => (settled = true));
    await asked;
    await clock.advance(59_999);
    assert.equal((() => settled)(), false, 'still waiting 1 ms before poll_timeout');
    await clock.advance(1);
    const failure = await polled;
    assert.ok(failure instanceof PollError && /^no reply within poll_timeout \(60000 ms\)$/.test(failure.message), String(failure));
  } finally {
    await hanging.close();
  }
});

test('an answered poll leaves no timer behind', async () => {
  const control = await server((_req, res) => res.writeHead(200).end('[{"id":"a"}]'));
  const clock = new ManualClock();
  try {
    const poller = new Poller(options(control.url, { clock }));
    assert.equal((await poller.pollOnce(new AbortController().signal)).length, 1);
    assert.equal(clock.timers, 0);
    await assert.rejects(poller.pollOnce(AbortSignal.abort(new Error('stopping'))), /stopping/);
    assert.equal(clock.timers, 0);
  } finally {
    await control.close();
  }
});

test('polls go on while every slot is taken, asking for 0 jobs: a heartbeat, one at a time, poll_frequency apart', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const seen: Array<{ capacity: string | undefined; at: number }> = [];
  const control = await server((req, res) => {
    seen.push({ capacity: req.headers['x-foreman-capacity'] as string | undefined, at: Date.now() });
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    assert.equal(req.headers.authorization, 'Bearer t0k');
    setTimeout(() => {
      inFlight--;
      res.writeHead(200).end('[]');
    }, 5);
  });
  const abort = new AbortController();
  const poller = new Poller(options(control.url, { freeSlots: () => 0, pollFrequencyMs: 20 }));
  const running = poller.pollUntilStopped(abort.signal);
  try {
    const deadline = Date.now() + 5000;
    while (seen.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(seen.length >= 5, `${seen.length} polls`);
    assert.deepEqual(new Set(seen.map((p) => p.capacity)), new Set(['0']));
    assert.equal(maxInFlight, 1);
    for (let i = 1; i < seen.length; i++) assert.ok((seen[i]?.at ?? 0) - (seen[i - 1]?.at ?? 0) >= 20, 'poll_frequency apart');
    assert.equal(poller.problem, undefined);
  } finally {
    abort.abort();
    await running;
    await control.close();
  }
});

test('a reply that brings no new job (the agent knew them all) does not trigger an immediate re-poll', async () => {
  const seen: number[] = [];
  const control = await server((_req, res) => {
    seen.push(Date.now());
    res.writeHead(200, { 'content-type': 'application/json' }).end('[{"id":"known"}]');
  });
  const abort = new AbortController();
  const poller = new Poller(options(control.url, { pollFrequencyMs: 50, onJobs: () => 0 }));
  const running = poller.pollUntilStopped(abort.signal);
  try {
    const deadline = Date.now() + 5000;
    while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (let i = 1; i < seen.length; i++) assert.ok((seen[i] ?? 0) - (seen[i - 1] ?? 0) >= 50, `polls ${JSON.stringify(seen)}`);
  } finally {
    abort.abort();
    await running;
    await control.close();
  }
});

test('x-foreman-cancel on any poll reply, a 204 or an error too, is handed over decoded', async () => {
  const replies: Array<[number, string]> = [
    [204, ''],
    [500, ''],
    [200, '[]'],
  ];
  const control = await server((_req, res) => {
    const [status, body] = replies.shift() ?? [200, '[]'];
    res.writeHead(status, { 'x-foreman-cancel': `${encodeURIComponent('a,b/ü')},plain` }).end(body);
  });
  const cancels: string[][] = [];
  const poller = new Poller(options(control.url, { onCancel: (ids) => cancels.push(ids) }));
  try {
    for (let i = 0; i < 3; i++) await poller.pollOnce(new AbortController().signal).catch(() => undefined);
    assert.deepEqual(cancels, [
      ['a,b/ü', 'plain'],
      ['a,b/ü', 'plain'],
      ['a,b/ü', 'plain'],
    ]);
  } finally {
    await control.close();
  }
});

test('a reply larger than the limit is refused, not buffered', async () => {
  const big = await server((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`[${'"x",'.repeat(10_000)}"x"]`);
  });
  try {
    const poller = new Poller(options(big.url, { maxReplyBytes: 1000 }));
    await assert.rejects(poller.pollOnce(new AbortController().signal), /reply exceeds 1000 bytes/);
  } finally {
    await big.close();
  }
});

test('each poll is counted by how it ended: jobs, empty, unauthorized or error', async () => {
  const replies: Array<[number, string]> = [
    [200, '[{"id":"a"}]'],
    [204, ''],
    [200, '[]'],
    [401, ''],
    [503, ''],
    [200, 'not json'],
  ];
  const control = await server((_req, res) => {
    const [status, body] = replies.shift() ?? [200, '[]'];
    res.writeHead(status).end(body);
  });
  const results: string[] = [];
  const abort = new AbortController();
  const poller = new Poller(options(control.url, { onPolled: (result) => results.push(result), backoff: { baseMs: 1, maxMs: 2 }, pollFrequencyMs: 1 }));
  const running = poller.pollUntilStopped(abort.signal);
  try {
    const deadline = Date.now() + 5000;
    while (results.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(results.slice(0, 6), ['jobs', 'empty', 'empty', 'unauthorized', 'error', 'error'], 'one result a poll, in order');
  } finally {
    abort.abort();
    await running;
    await control.close();
  }
});

test("a reply's traceparent header goes to each of its jobs that carries none of its own", () => {
  const header = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const own = { id: 'b', traceparent: '00-11111111111111111111111111111111-2222222222222222-01' };
  const entries = [{ id: 'a' }, own, 'not a job', null];
  assert.deepEqual(
    withReplyTraceContext(entries, { traceparent: header, tracestate: 'v=1' }),
    [{ id: 'a', traceparent: header, tracestate: 'v=1' }, own, 'not a job', null],
    "the header fills in; a job's own traceparent wins; what is not a job is left for validation",
  );
  assert.deepEqual(entries[0], { id: 'a' }, 'the entries themselves are not changed');
  assert.equal(withReplyTraceContext(entries, {}), entries, 'no header: the entries as they came');
});
