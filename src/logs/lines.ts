import type { LogLine, LogMessage, LogStreamName } from '../shared/log-line.ts';
import type { Redactor } from './redactor.ts';

/** Longest line sent, in bytes of UTF-8; longer ones are split, each part a line. */
export const MAX_LINE_BYTES = 16 * 1024;

const NEWLINE = 0x0a;

/**
 * Turns the engine's messages into log lines: drops the newline, hides secrets, and splits text
 * past `MAX_LINE_BYTES` at a character boundary. Remembers, per stream, whether the last message
 * was part of a longer line, so a secret cut by the split is hidden on both sides.
 */
export class LineCutter {
  private readonly redactor: Redactor;
  private readonly open: Record<LogStreamName, boolean> = { stdout: false, stderr: false };

  constructor(redactor: Redactor) {
    this.redactor = redactor;
  }

  cut(message: LogMessage): LogLine[] {
    const { stream, ts } = message;
    const ends = message.text.length > 0 && message.text[message.text.length - 1] === NEWLINE;
    const raw = ends ? message.text.subarray(0, message.text.length - 1) : message.text;
    const continued = this.open[stream];
    this.open[stream] = !ends;
    let bytes = raw;
    if (!this.redactor.empty) {
      const text = raw.toString('utf8');
      const hidden = this.redactor.redact(text, { continues: !ends, continued });
      // Nothing hidden and no split needed (a byte decodes to at most 3 bytes of UTF-8): the text as decoded.
      if (hidden === text && (raw.length * 3 <= MAX_LINE_BYTES || Buffer.byteLength(text) <= MAX_LINE_BYTES)) return [{ stream, ts, text }];
      bytes = Buffer.from(hidden, 'utf8');
    }
    if (bytes.length <= MAX_LINE_BYTES) return [{ stream, ts, text: bytes.toString('utf8') }];
    const lines: LogLine[] = [];
    for (let at = 0; at < bytes.length;) {
      let end = Math.min(at + MAX_LINE_BYTES, bytes.length);
      // Never cut inside a character: back up over continuation bytes (10xxxxxx).
      while (end < bytes.length && end > at + 1 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
      lines.push({ stream, ts, text: bytes.toString('utf8', at, end) });
      at = end;
    }
    return lines;
  }
}

/**
 * Where reading a container's output stopped, in a form that survives stdout and stderr lines
 * being stamped slightly out of order (the engine stamps each stream as it reads it, then writes
 * them one after the other): the messages stamped at or after `since` come back, in the engine's
 * order, when asked for with that `since`, and the first `count` of them were taken already.
 */
export interface LogCursor {
  /** Null: from the start. */
  readonly since: string | null;
  readonly count: number;
}

/** How far behind the newest message `since` stays: far more than stamps are ever out of order. */
const SINCE_MARGIN_NS = 2_000_000_000n;
/** `since` moves on once it is this far behind (so that a resume reads little again). */
const SINCE_LAG_NS = 4_000_000_000n;
const CHECK_EVERY = 4096;

/**
 * Skips what was taken before a restart, and keeps the cursor. Needs no ordering of timestamps
 * across streams: it counts messages, and moves `since` on only by a wide margin.
 */
export class ResumeFilter {
  private since: string | null;
  private count: number;
  private skip: number;
  /** Stamps of the messages at or after `since` seen in this reading, to count them when `since` moves. */
  private seen: string[] = [];

  constructor(cursor: LogCursor) {
    this.since = cursor.since;
    this.count = cursor.count;
    this.skip = cursor.count;
  }

  /** True when `message` is new; the cursor then counts it. */
  take(message: LogMessage): boolean {
    // Before the window: taken long ago (the engine's `since` is asked for a little early).
    if (this.since !== null && message.ts < this.since) return false;
    this.seen.push(message.ts);
    if (this.skip > 0) {
      this.skip--;
      return false;
    }
    this.count++;
    if (this.seen.length % CHECK_EVERY === 0) this.moveSince(message.ts);
    return true;
  }

  get cursor(): LogCursor {
    return { since: this.since, count: this.count };
  }

  private moveSince(latest: string): void {
    const now = tsToNs(latest);
    if (now === undefined) return;
    const since = this.since === null ? undefined : tsToNs(this.since);
    if (since !== undefined && now - since < SINCE_LAG_NS) return;
    const next = nsToTs(now - SINCE_MARGIN_NS);
    this.seen = this.seen.filter((ts) => ts >= next);
    this.since = next;
    this.count = this.seen.length;
  }
}

/** Nanoseconds since the epoch of an RFC 3339 UTC timestamp such as the engine's. */
export function tsToNs(ts: string): bigint | undefined {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1] ?? ''}Z`);
  if (!Number.isFinite(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

/** The engine's fixed-width form (9 fraction digits, UTC), which sorts as text in time order. */
export function nsToTs(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  return `${new Date(ms).toISOString().slice(0, 19)}.${String(ns % 1_000_000_000n).padStart(9, '0')}Z`;
}
