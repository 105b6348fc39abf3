/** Reading what a logs server received, and what the test job's `log` action prints. */
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { LogFrameParser } from '../../src/executor/docker/log-frames.ts';
import { docker } from './containers.ts';
import type { RecordedRequest } from './servers.ts';

export interface SentLine {
  readonly i: number;
  readonly ts: string;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

export interface ReceivedLog {
  /** The first copy of each line number, in number order. */
  readonly lines: SentLine[];
  /** Lines received more than once (resent after a failure or a restart). */
  readonly duplicates: number;
  readonly batches: number;
  /** The request that carried `x-foreman-log-end`, and its total. */
  readonly end: RecordedRequest | undefined;
  readonly total: number | undefined;
}

/**
 * What a logs server that keeps the first copy of each line holds for a job. Checks each batch
 * on the way: NDJSON, its offset header names its first line, and its lines are consecutive.
 */
export function receivedLog(requests: readonly RecordedRequest[], jobId: string): ReceivedLog {
  const byNumber = new Map<number, SentLine>();
  let duplicates = 0;
  let batches = 0;
  let end: RecordedRequest | undefined;
  for (const request of requests) {
    if (request.method !== 'POST' || request.headers['x-foreman-job-id'] !== encodeURIComponent(jobId)) continue;
    assert.equal(request.headers['content-type'], 'application/x-ndjson');
    const offset = Number(request.headers['x-foreman-log-offset']);
    if (request.headers['x-foreman-log-end'] !== undefined) {
      end ??= request;
      continue;
    }
    batches++;
    const lines = request.body
      .toString('utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as SentLine);
    assert.ok(lines.length > 0, 'a batch carries at least one line');
    assert.equal(lines[0]?.i, offset, 'x-foreman-log-offset is the number of the batch first line');
    lines.forEach((line, k) => {
      assert.equal(line.i, offset + k, 'a batch holds consecutive lines');
      assert.match(line.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      if (byNumber.has(line.i)) duplicates++;
      else byNumber.set(line.i, line);
    });
  }
  const lines = [...byNumber.values()].sort((a, b) => a.i - b.i);
  const total = end ? Number(end.headers['x-foreman-log-end']) : undefined;
  return { lines, duplicates, batches, end, total };
}

/** Every number from 0 to total - 1, once; each line at most 16 KiB. */
export function assertWhole(log: ReceivedLog): void {
  assert.ok(log.end, 'the log end was sent');
  assert.equal(log.lines.length, log.total, `lines received: ${log.lines.length}, log-end says ${String(log.total)}`);
  log.lines.forEach((line, k) => assert.equal(line.i, k, `line ${k} is missing`));
  for (const line of log.lines) assert.ok(Buffer.byteLength(line.text) <= 16 * 1024, `line ${line.i} is ${Buffer.byteLength(line.text)} bytes`);
}

/** What the test job's `log` action prints on each stream, long lines whole. */
export function printedLines(options: { lines: number; longEvery?: number; longBytes?: number }): Record<'stdout' | 'stderr', string[]> {
  const out: Record<'stdout' | 'stderr', string[]> = { stdout: [], stderr: [] };
  for (let n = 0; n < options.lines; n++) {
    const stream = n % 3 === 2 ? 'stderr' : 'stdout';
    let text = `log ${n} ${stream} `;
    const every = options.longEvery ?? 0;
    if (every > 0 && n % every === every - 1) text = text.padEnd(options.longBytes ?? 40_000, 'x');
    out[stream].push(text);
  }
  return out;
}

/** The `log` action's lines on one stream, split lines joined again (their later parts are all padding). */
export function joinedLines(lines: readonly SentLine[], stream: 'stdout' | 'stderr'): string[] {
  const joined: string[] = [];
  for (const line of lines) {
    if (line.stream !== stream) continue;
    if (line.text.startsWith('log ')) joined.push(line.text);
    else if (/^x+$/.test(line.text) && joined.length > 0) joined[joined.length - 1] += line.text;
  }
  return joined;
}

/** The container's output as the engine itself gives it (`docker logs`), one entry per stored message. */
export async function engineMessages(containerId: string, engine: Docker = docker): Promise<Array<{ stream: string; text: string }>> {
  const raw = await engine.getContainer(containerId).logs({ stdout: true, stderr: true, timestamps: true, follow: false });
  return new LogFrameParser().push(raw).map((m) => ({ stream: m.stream, text: m.text.toString('utf8').replace(/\n$/, '') }));
}
