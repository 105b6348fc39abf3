import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogMessage, LogStreamName } from '../shared/log-line.ts';
import { LineCutter, MAX_LINE_BYTES, nsToTs, ResumeFilter, tsToNs, type LogCursor } from './lines.ts';
import { Redactor } from './redactor.ts';

const TS = '2026-11-28T07:42:30.437418862Z';

function msg(stream: LogStreamName, text: string, ts = TS): LogMessage {
  return { stream, ts, text: Buffer.from(text, 'utf8') };
}

const plainCutter = (): LineCutter => new LineCutter(new Redactor([]));
const secretCutter = (...values: string[]): LineCutter => new LineCutter(new Redactor(values));

test('the trailing newline is dropped; a message without one (part of a longer line) is still a line', () => {
  for (const cutter of [plainCutter(), secretCutter('unrelated')]) {
    assert.deepEqual(cutter.cut(msg('stdout', 'hello\n')), [{ stream: 'stdout', ts: TS, text: 'hello' }]);
    assert.deepEqual(cutter.cut(msg('stderr', 'partial')), [{ stream: 'stderr', ts: TS, text: 'partial' }]);
    assert.deepEqual(cutter.cut(msg('stdout', '\n')), [{ stream: 'stdout', ts: TS, text: '' }]);
    assert.deepEqual(cutter.cut(msg('stdout', 'two\n\n')), [{ stream: 'stdout', ts: TS, text: 'two\n' }], 'only the last newline');
  }
});

test('a line of exactly 16384 bytes is one line; one byte more is two', () => {
  const cutter = plainCutter();
  assert.deepEqual(
    cutter.cut(msg('stdout', `${'x'.repeat(MAX_LINE_BYTES)}\n`)).map((l) => l.text.length),
    [MAX_LINE_BYTES],
  );
  assert.deepEqual(
    cutter.cut(msg('stdout', `${'x'.repeat(MAX_LINE_BYTES + 1)}\n`)).map((l) => l.text.length),
    [MAX_LINE_BYTES, 1],
  );
});

test('text over 16384 bytes is split at character boundaries: no U+FFFD, parts concatenate to the original', () => {
  const cases: string[] = [];
  for (const char of ['é', '€', '😀']) {
    // Every alignment of the multi-byte characters against the 16 KiB boundary.
    for (let lead = 0; lead < 4; lead++) cases.push('a'.repeat(lead) + char.repeat(Math.ceil(40_000 / Buffer.byteLength(char))));
  }
  cases.push('mixed: ' + 'aé€😀'.repeat(5000));
  for (const cutter of [plainCutter(), secretCutter('not-in-the-text')]) {
    for (const text of cases) {
      const lines = cutter.cut(msg('stderr', `${text}\n`));
      const label = `${text.slice(0, 8)}… (${Buffer.byteLength(text)} bytes)`;
      assert.ok(lines.length >= 2, label);
      for (const [n, line] of lines.entries()) {
        const size = Buffer.byteLength(line.text);
        assert.ok(size <= MAX_LINE_BYTES, `${label}: part ${n} has ${size} bytes`);
        if (n < lines.length - 1) assert.ok(size > MAX_LINE_BYTES - 4, `${label}: part ${n} is cut no earlier than needed (${size})`);
        assert.ok(!line.text.includes('\uFFFD'), `${label}: part ${n} has a replacement character`);
        assert.equal(line.stream, 'stderr');
        assert.equal(line.ts, TS);
      }
      assert.equal(lines.map((l) => l.text).join(''), text, label);
    }
  }
});

test('a long line is redacted before it is split', () => {
  const cutter = secretCutter('s3cr3t-value');
  const text = `${'é'.repeat(8191)}s3cr3t-value${'€'.repeat(6000)}`;
  const lines = cutter.cut(msg('stdout', `${text}\n`));
  const joined = lines.map((l) => l.text).join('');
  assert.equal(joined, text.replace('s3cr3t-value', '[redacted]'));
  assert.ok(
    lines.every((l) => Buffer.byteLength(l.text) <= MAX_LINE_BYTES && !l.text.includes('s3cr3t')),
    'every line is within MAX_LINE_BYTES and redacted',
  );
});

test('secrets are redacted, also a secret cut between a partial message and the next one of the same stream', () => {
  const cutter = secretCutter('supersecret');
  assert.deepEqual(
    cutter.cut(msg('stdout', 'a supersecret here\n')).map((l) => l.text),
    ['a [redacted] here'],
  );
  assert.deepEqual(
    cutter.cut(msg('stdout', 'token=supers')).map((l) => l.text),
    ['token=[redacted]'],
  );
  assert.deepEqual(
    cutter.cut(msg('stdout', 'ecret rest\n')).map((l) => l.text),
    ['[redacted] rest'],
  );
  // The piece after a complete line is no continuation.
  assert.deepEqual(
    cutter.cut(msg('stdout', 'cret alone\n')).map((l) => l.text),
    ['cret alone'],
  );
});

test("a partial message on one stream does not make the other stream's next message a continuation", () => {
  const cutter = secretCutter('supersecret');
  assert.deepEqual(
    cutter.cut(msg('stdout', 'token=supers')).map((l) => l.text),
    ['token=[redacted]'],
  );
  assert.deepEqual(
    cutter.cut(msg('stderr', 'ecret on stderr\n')).map((l) => l.text),
    ['ecret on stderr'],
  );
  assert.deepEqual(
    cutter.cut(msg('stdout', 'ecret on stdout\n')).map((l) => l.text),
    ['[redacted] on stdout'],
  );
  // And a partial on stderr does not carry over to stdout.
  assert.deepEqual(
    cutter.cut(msg('stderr', 'x supe')).map((l) => l.text),
    ['x [redacted]'],
  );
  assert.deepEqual(
    cutter.cut(msg('stdout', 'cret on stdout\n')).map((l) => l.text),
    ['cret on stdout'],
  );
  assert.deepEqual(
    cutter.cut(msg('stderr', 'rsecret on stderr\n')).map((l) => l.text),
    ['[redacted] on stderr'],
  );
});

// ---- ResumeFilter --------------------------------------------------------------------------

const T0 = tsToNs('2026-11-28T07:00:00.000000000Z') ?? assert.fail('T0 parses');

function at(ns: bigint, stream: LogStreamName = 'stdout', text = 'x\n'): LogMessage {
  return { stream, ts: nsToTs(ns), text: Buffer.from(text) };
}

const MS = 1_000_000n;

test('from the start it takes everything and counts it', () => {
  const filter = new ResumeFilter({ since: null, count: 0 });
  const messages = [at(T0 + 5n, 'stderr'), at(T0), at(T0 + 3n, 'stderr'), at(T0 - 10n * MS)];
  assert.deepEqual(
    messages.map((m) => filter.take(m)),
    [true, true, true, true],
  );
  assert.deepEqual(filter.cursor, { since: null, count: 4 });
});

test('from a stored cursor it drops what is stamped before since, skips count messages, then takes the rest out of order too', () => {
  const since = nsToTs(T0);
  const filter = new ResumeFilter({ since, count: 2 });
  const taken = [
    at(T0 - 1n), // before the window: asked for a little early
    at(T0), // skipped 1
    at(T0 + 10n * MS, 'stderr'), // skipped 2
    at(T0 + 20n * MS), // taken
    at(T0 + 15n * MS, 'stderr'), // stamped before the previous one: taken all the same
    at(T0 + 15n * MS), // same stamp: taken
    at(T0 + 16n * MS),
  ].map((m) => filter.take(m));
  assert.deepEqual(taken, [false, false, false, true, true, true, true]);
  assert.deepEqual(filter.cursor, { since, count: 6 });
});

test('since moves only once the newest stamp is 4 s past it, to the newest minus 2 s, counting what is at or after it', () => {
  const since = nsToTs(T0);
  const slow = new ResumeFilter({ since, count: 0 });
  // 4096 messages (a check) spread over just under 4 s: since stays.
  const step = (4_000_000_000n - 1n) / 4095n;
  for (let k = 0n; k < 4096n; k++) assert.ok(slow.take(at(T0 + k * step)), 'slow timestamps: every message is new');
  assert.deepEqual(slow.cursor, { since, count: 4096 });

  const fast = new ResumeFilter({ since, count: 0 });
  // 4096 messages 1 ms apart, the last at T0 + 4.095 s: since becomes T0 + 2.095 s.
  for (let k = 0n; k < 4096n; k++) assert.ok(fast.take(at(T0 + k * MS)), 'millisecond timestamps: every message is new');
  assert.deepEqual(fast.cursor, { since: nsToTs(T0 + 2095n * MS), count: 2001 });

  const fresh = new ResumeFilter({ since: null, count: 0 });
  // From the start since is set at the first check, however little time passed.
  for (let k = 0n; k < 4096n; k++) assert.ok(fresh.take(at(T0 + k * 1000n)), 'second timestamps: every message is new');
  assert.equal(fresh.cursor.since, nsToTs(T0 + 4095n * 1000n - 2_000_000_000n));
  assert.equal(fresh.cursor.count, 4096);
});

/** Deterministic pseudo-random numbers in [0, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 20000 messages over 10 s in the engine's order, stdout and stderr mixed, some stamped a few µs before the previous. */
function engineOutput(seed: number): { messages: LogMessage[]; inversions: number } {
  const rnd = random(seed);
  const messages: LogMessage[] = [];
  let inversions = 0;
  let previous: LogMessage | undefined;
  for (let k = 0; k < 20_000; k++) {
    const stream: LogStreamName = rnd() < 0.5 ? 'stdout' : 'stderr';
    let ns = T0 + BigInt(k) * 500_000n;
    if (previous && previous.stream !== stream && rnd() < 0.1) {
      ns = (tsToNs(previous.ts) ?? 0n) - BigInt(1 + Math.floor(rnd() * 5)) * 1000n;
      inversions++;
    }
    previous = { stream, ts: nsToTs(ns), text: Buffer.from(`m${k}\n`) };
    messages.push(previous);
  }
  return { messages, inversions };
}

/** What the engine gives for a `since` (all messages stamped at or after it, in order), of those it has so far. */
function engineAnswer(messages: readonly LogMessage[], upTo: number, cursor: LogCursor): LogMessage[] {
  const produced = messages.slice(0, upTo);
  return cursor.since === null ? produced : produced.filter((m) => m.ts >= (cursor.since ?? ''));
}

test("after since moved, a new filter fed the engine's answer for the reported cursor takes exactly what was not taken", () => {
  const { messages, inversions } = engineOutput(7);
  assert.ok(inversions > 500, `stamps out of order: ${inversions}`);
  for (const stop of [1, 4095, 4096, 4097, 5000, 8192, 10_000, 12_289, 16_384, 19_999, 20_000]) {
    const first = new ResumeFilter({ since: null, count: 0 });
    const taken = messages.slice(0, stop).filter((m) => first.take(m));
    assert.equal(taken.length, stop);
    const cursor = first.cursor;
    if (stop >= 4096) {
      assert.notEqual(cursor.since, null, `since moved by message ${stop}`);
      const lag = (tsToNs(messages[stop - 1]?.ts ?? '') ?? 0n) - (tsToNs(cursor.since ?? '') ?? 0n);
      assert.ok(lag >= 2_000_000_000n - 10_000n && lag < 6_000_000_000n, `since lags the newest by ${lag} ns`);
    }
    const second = new ResumeFilter(cursor);
    const replay = engineAnswer(messages, messages.length, cursor);
    assert.ok(replay.length < messages.length || cursor.since === null || stop < 4096, 'the replay resumed from the cursor');
    const rest = replay.filter((m) => second.take(m));
    assert.deepEqual(
      [...taken, ...rest].map((m) => m.text.toString()),
      messages.map((m) => m.text.toString()),
      `stopped after ${stop}`,
    );
  }
});

test('many restarts in a row, each reading from the last stored cursor, take every message exactly once in order', () => {
  const { messages } = engineOutput(42);
  const stops = [700, 4096, 4200, 9000, 9001, 13_000, 17_777, 20_000];
  let cursor: LogCursor = { since: null, count: 0 };
  const taken: LogMessage[] = [];
  for (const stop of stops) {
    const filter = new ResumeFilter(cursor);
    for (const m of engineAnswer(messages, stop, cursor)) if (filter.take(m)) taken.push(m);
    cursor = filter.cursor;
  }
  assert.notEqual(cursor.since, null);
  assert.deepEqual(
    taken.map((m) => m.text.toString()),
    messages.map((m) => m.text.toString()),
  );
});

test("tsToNs and nsToTs round-trip the engine's fixed-width stamps, and the text sorts in time order", () => {
  for (const ts of ['2026-11-28T07:42:30.437418862Z', '1970-01-01T00:00:01.000000000Z', '2000-02-29T23:59:59.999999999Z', '2026-01-01T00:00:00.000000001Z']) {
    const ns = tsToNs(ts);
    assert.notEqual(ns, undefined, ts);
    assert.equal(nsToTs(ns ?? 0n), ts);
  }
  assert.equal(tsToNs('2026-11-28T07:42:30Z'), BigInt(Date.UTC(2026, 10, 28, 7, 42, 30)) * MS);
  assert.equal(tsToNs('2026-11-28T07:42:30.5Z'), BigInt(Date.UTC(2026, 10, 28, 7, 42, 30)) * MS + 500_000_000n);
  for (const bad of ['', 'x', '2026-11-28T07:42:30.1234567890Z', '2026-11-28T07:42:30+01:00', '2026-13-40T00:00:00Z'])
    assert.equal(tsToNs(bad), undefined, bad);
  const stamps = [T0 + 1n, T0 + 999_999_999n, T0 + 1_000_000_000n, T0 + 86_400_000_000_000n].map(nsToTs);
  assert.deepEqual([...stamps].sort(), stamps);
});
