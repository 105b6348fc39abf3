import type { LogMessage, LogStreamName } from '../../shared/log-line.ts';

const HEADER_BYTES = 8;
const EMPTY = Buffer.alloc(0);

/**
 * Reads the engine's multiplexed log stream (a container without a TTY), asked for with
 * `timestamps=true`: frames of an 8-byte header (stream, 3 zero bytes, payload size big-endian)
 * and a payload `<RFC 3339 timestamp> <message>`. The engine writes one frame per stored message,
 * so a line it split (past 16 KiB) arrives as several messages, all but the last without a newline.
 * Chunks may cut frames anywhere; the rest waits for the next chunk.
 */
export class LogFrameParser {
  private pending: Buffer = EMPTY;

  push(chunk: Buffer): LogMessage[] {
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const messages: LogMessage[] = [];
    let at = 0;
    while (data.length - at >= HEADER_BYTES) {
      const size = data.readUInt32BE(at + 4);
      if (data.length - at - HEADER_BYTES < size) break;
      const kind = data[at];
      const payload = data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + size);
      at += HEADER_BYTES + size;
      // 0 is stdin, which a job's log never carries.
      if (kind !== 1 && kind !== 2) continue;
      messages.push(parsePayload(kind === 2 ? 'stderr' : 'stdout', payload));
    }
    // Copied, so the caller's chunk is not held on to.
    this.pending = at === data.length ? EMPTY : Buffer.from(data.subarray(at));
    return messages;
  }

  /** Bytes of a frame not yet complete. */
  get buffered(): number {
    return this.pending.length;
  }
}

function parsePayload(stream: LogStreamName, payload: Buffer): LogMessage {
  const space = payload.indexOf(0x20);
  // Every frame starts with its timestamp when asked for; one without is kept whole.
  if (space < 20 || space > 40 || payload[4] !== 0x2d) return { stream, ts: '', text: payload };
  return { stream, ts: payload.toString('latin1', 0, space), text: payload.subarray(space + 1) };
}

/**
 * The engine's `since` for a stored timestamp: Unix seconds with a fraction, a millisecond early.
 * The engine reads the fraction as a float, which may round it past the message itself; the
 * caller skips what it already has by timestamp.
 */
export function sinceParam(ts: string): string {
  const match = /^(.{19})(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!match) return '0';
  const ms = Date.parse(`${match[1] ?? ''}${match[3] ?? 'Z'}`);
  if (!Number.isFinite(ms)) return '0';
  const ns = BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0')) - 1_000_000n;
  if (ns <= 0n) return '0';
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

/**
 * The last `n` non-empty lines of a log asked for without a follow (a buffer of multiplexed frames),
 * the form an ending's report quotes. Lines are split after demuxing, so a line the engine cut into
 * several frames comes out whole.
 */
export function tailLines(raw: Buffer, n: number): string[] {
  const text = Buffer.concat(new LogFrameParser().push(raw).map((m) => m.text)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .slice(-n);
}
