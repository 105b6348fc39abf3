import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { systemClock } from '../shared/clock.ts';
import { PollError, Poller, encodeLabels, parsePollReply, type PollerOptions } from './poller.ts';

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
  for (const [status, text, message] of bad) assert.throws(() => parsePollReply(status, text), (e: unknown) => e instanceof PollError && message.test(e.message));
});

test('labels are URL-encoded key=value pairs joined by commas', () => {
  assert.equal(encodeLabels({ queue: 'high', 'a,b': 'c=d' }), 'queue=high,a%2Cb=c%3Dd');
});

async function server(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const s = createServer(handler);
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/job`, close: () => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); }) };
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
    waitForSlot: () => Promise.resolve(),
    onJobs: () => undefined,
    ...overrides,
  };
}

test('a poll that gets no reply within poll_timeout fails with a clear reason', async () => {
  const hanging = await server(() => undefined);
  try {
    const poller = new Poller(options(hanging.url, {}));
    await assert.rejects(poller.pollOnce(new AbortController().signal), /no reply within poll_timeout \(200 ms\)/);
  } finally {
    await hanging.close();
  }
});

test('no poll while every slot is taken; one poll at a time once a slot frees', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let polls = 0;
  const control = await server((req, res) => {
    polls++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    assert.equal(req.headers.authorization, 'Bearer t0k');
    assert.equal(req.headers['x-foreman-capacity'], '1');
    setTimeout(() => {
      inFlight--;
      res.writeHead(200).end('[]');
    }, 5);
  });
  const abort = new AbortController();
  let release: () => void = () => undefined;
  const slotFree = new Promise<void>((r) => (release = r));
  const poller = new Poller(options(control.url, { waitForSlot: () => slotFree }));
  const running = poller.run(abort.signal);
  try {
    // Proving an absence needs a window: 100 ms is ten poll_frequency periods.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(polls, 0, 'polled while no slot was free');
    release();
    const deadline = Date.now() + 5000;
    while (polls < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(polls >= 5);
    assert.equal(maxInFlight, 1);
  } finally {
    abort.abort();
    await running;
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
