import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogMessage } from '../../shared/log-line.ts';
import { frame } from '../../testing/log-frame-kit.ts';
import { LogFrameParser, sinceParam, tailLines } from './log-frames.ts';

/** Messages in a form deepEqual compares by content. */
function plain(messages: readonly LogMessage[]): Array<{ stream: string; ts: string; text: string }> {
  return messages.map((m) => ({ stream: m.stream, ts: m.ts, text: m.text.toString('utf8') }));
}

const TS1 = '2026-11-28T07:42:30.437418862Z';
const TS2 = '2026-11-28T07:42:30.437419001Z';
const TS3 = '2026-11-28T07:42:31.000000000Z';

const STREAM = Buffer.concat([
  frame(1, `${TS1} hello world\n`),
  frame(0, `${TS1} typed on stdin\n`),
  frame(2, `${TS2} oops: ünïcødé € 😀\n`),
  frame(1, `${TS3} a piece without newline`),
  frame(1, ''),
]);

const EXPECTED = [
  { stream: 'stdout', ts: TS1, text: 'hello world\n' },
  { stream: 'stderr', ts: TS2, text: 'oops: ünïcødé € 😀\n' },
  { stream: 'stdout', ts: TS3, text: 'a piece without newline' },
  { stream: 'stdout', ts: '', text: '' },
];

test('several frames in one chunk come out in order; stdin frames are dropped', () => {
  const parser = new LogFrameParser();
  assert.deepEqual(plain(parser.push(STREAM)), EXPECTED);
  assert.equal(parser.buffered, 0);
});

test('a stream cut in two at every byte offset parses to the same messages', () => {
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const parser = new LogFrameParser();
    const first = parser.push(STREAM.subarray(0, cut));
    const second = parser.push(STREAM.subarray(cut));
    assert.deepEqual(plain([...first, ...second]), EXPECTED, `cut at byte ${cut}`);
    assert.equal(parser.buffered, 0, `nothing left over after cut at byte ${cut}`);
  }
});

test('a stream fed one byte at a time parses to the same messages', () => {
  const parser = new LogFrameParser();
  const out: LogMessage[] = [];
  for (let at = 0; at < STREAM.length; at++) out.push(...parser.push(STREAM.subarray(at, at + 1)));
  assert.deepEqual(plain(out), EXPECTED);
});

test('buffered counts the bytes of a frame not yet complete', () => {
  const parser = new LogFrameParser();
  const one = frame(1, `${TS1} hello\n`);
  assert.deepEqual(parser.push(one.subarray(0, 5)), []);
  assert.equal(parser.buffered, 5);
  assert.deepEqual(parser.push(one.subarray(5, 12)), []);
  assert.equal(parser.buffered, 12);
  assert.deepEqual(plain(parser.push(Buffer.concat([one.subarray(12), one.subarray(0, 3)]))), [{ stream: 'stdout', ts: TS1, text: 'hello\n' }]);
  assert.equal(parser.buffered, 3);
});

test("a partial frame is copied: reusing the caller's chunk afterwards does not change it", () => {
  const parser = new LogFrameParser();
  const one = frame(2, `${TS2} kept intact\n`);
  const chunk = Buffer.from(one.subarray(0, 20));
  parser.push(chunk);
  chunk.fill(0x58);
  assert.deepEqual(plain(parser.push(one.subarray(20))), [{ stream: 'stderr', ts: TS2, text: 'kept intact\n' }]);
});

test('a payload without a timestamp is kept whole, with ts empty', () => {
  const parser = new LogFrameParser();
  const payloads = ['no timestamp here\n', 'x'.repeat(30), '2026 has a dash too late\n', 'nospaceatallbutlongerthanfortycharacters-------'];
  const out = parser.push(Buffer.concat(payloads.map((p) => frame(1, p))));
  assert.deepEqual(
    plain(out),
    payloads.map((text) => ({ stream: 'stdout', ts: '', text })),
  );
});

test('a timestamp with an offset and a short fraction is split off like a UTC one', () => {
  const parser = new LogFrameParser();
  const out = parser.push(frame(1, '2026-11-28T09:42:30.5+02:00 text with  spaces\n'));
  assert.deepEqual(plain(out), [{ stream: 'stdout', ts: '2026-11-28T09:42:30.5+02:00', text: 'text with  spaces\n' }]);
});

test('a large frame arriving in many chunks is one message with every byte', () => {
  const text = 'ab€'.repeat(20_000);
  const whole = frame(1, `${TS1} ${text}`);
  const parser = new LogFrameParser();
  const out: LogMessage[] = [];
  for (let at = 0; at < whole.length; at += 1000) out.push(...parser.push(whole.subarray(at, at + 1000)));
  assert.equal(out.length, 1);
  assert.equal(out[0]?.text.toString('utf8'), text);
});

/** Unix seconds of a UTC date, computed apart from the code under test. */
function unixSeconds(year: number, month: number, day: number, h: number, m: number, s: number): number {
  return Date.UTC(year, month - 1, day, h, m, s) / 1000;
}

test('sinceParam: Unix seconds with a 9-digit fraction, one millisecond early', () => {
  const seconds = unixSeconds(2026, 11, 28, 7, 42, 30);
  assert.equal(seconds, 1_795_851_750);
  assert.equal(sinceParam('2026-11-28T07:42:30.437418862Z'), `${seconds}.436418862`);
});

test('sinceParam: a fraction under a millisecond borrows from the seconds', () => {
  const seconds = unixSeconds(2026, 11, 28, 7, 42, 30);
  assert.equal(sinceParam('2026-11-28T07:42:30.000500000Z'), `${seconds - 1}.999500000`);
  assert.equal(sinceParam('2026-11-28T07:42:30.001000000Z'), `${seconds}.000000000`);
});

test('sinceParam: short fractions and no fraction', () => {
  const seconds = unixSeconds(2026, 11, 28, 7, 42, 30);
  assert.equal(sinceParam('2026-11-28T07:42:30.5Z'), `${seconds}.499000000`);
  assert.equal(sinceParam('2026-11-28T07:42:30.12Z'), `${seconds}.119000000`);
  assert.equal(sinceParam('2026-11-28T07:42:30Z'), `${seconds - 1}.999000000`);
});

test('sinceParam: a UTC offset is honoured', () => {
  const seconds = unixSeconds(2026, 11, 28, 7, 42, 30);
  assert.equal(sinceParam('2026-11-28T09:42:30.437418862+02:00'), `${seconds}.436418862`);
});

test('sinceParam: garbage, and a time at or before the epoch, give 0', () => {
  for (const bad of [
    '',
    'garbage',
    '2026-11-28',
    '2026-11-28T07:42:30.1234567890Z',
    '2026-13-45T99:99:99Z',
    'xxxx-xx-xxTxx:xx:xx.123Z',
    '1970-01-01T00:00:00.000Z',
  ]) {
    assert.equal(sinceParam(bad), '0', JSON.stringify(bad));
  }
});

test('tailLines: the last n non-empty lines of both streams, a line split over frames joined, stdin dropped', () => {
  const raw = Buffer.concat([frame(1, 'one\n'), frame(2, 'two\n\n'), frame(0, 'typed on stdin\n'), frame(1, 'thr'), frame(1, 'ee ünï\nfour')]);
  assert.deepEqual(tailLines(raw, 3), ['two', 'three ünï', 'four']);
  assert.deepEqual(tailLines(raw, 10), ['one', 'two', 'three ünï', 'four']);
  assert.deepEqual(tailLines(Buffer.alloc(0), 5), []);
});
