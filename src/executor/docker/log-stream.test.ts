import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { PassThrough } from 'node:stream';
import type { LogMessage } from '../../shared/log-line.ts';
import { readLogBatches, type LogQuery } from './log-stream.ts';
import { stdoutFrame as frame } from '../../testing/log-frame-kit.ts';

async function texts(batches: AsyncIterable<LogMessage[]>): Promise<string[][]> {
  const out: string[][] = [];
  for await (const batch of batches) out.push(batch.map((m) => m.text.toString()));
  return out;
}

test('a read without a follow asks from the cursor with the tail, demuxes the buffer, and lets go of the signal', async () => {
  const queries: LogQuery[] = [];
  const signal = new AbortController().signal;
  const read = readLogBatches(
    (query) => {
      queries.push(query);
      return Promise.resolve(Buffer.concat([frame('2026-11-28T10:00:01Z', 'a\n'), frame('2026-11-28T10:00:02Z', 'b\n')]));
    },
    { since: '2026-11-28T10:00:00.5Z', follow: false, tail: 5 },
    signal,
  );
  assert.deepEqual(await texts(read), [['a\n', 'b\n']]);
  const { abortSignal, ...rest } = queries[0] ?? ({} as LogQuery);
  assert.deepEqual(rest, { stdout: true, stderr: true, timestamps: true, since: '1795860000.499000000', tail: 5, follow: false });
  assert.ok(abortSignal.aborted, "the request's own abort fires once the read is over");
  assert.equal(getEventListeners(signal, 'abort').length, 0);
});

test('no such log: nothing to read, and the signal is let go', async () => {
  const signal = new AbortController().signal;
  assert.deepEqual(await texts(readLogBatches(() => Promise.resolve(undefined), { since: undefined, follow: true }, signal)), []);
  assert.equal(getEventListeners(signal, 'abort').length, 0);
});

test('a followed read ends when endFollow ends the stream; endFollow is told once the read is over', async () => {
  const stream = new PassThrough();
  let told: AbortSignal | undefined;
  const read = readLogBatches(
    () => Promise.resolve(stream),
    { since: undefined, follow: true },
    new AbortController().signal,
    async (_stream, signal) => {
      told = signal;
      stream.write(frame('2026-11-28T10:00:01Z', 'last\n'));
      stream.end();
      await Promise.resolve();
    },
  );
  assert.deepEqual(await texts(read), [['last\n']]);
  assert.ok(told?.aborted, "the reader's signal was aborted");
});

test("the caller's abort aborts the request", async () => {
  const stop = new AbortController();
  let query: LogQuery | undefined;
  const stream = new PassThrough();
  const read = texts(readLogBatches((q) => ((query = q), Promise.resolve(stream)), { since: undefined, follow: true }, stop.signal));
  await new Promise((resolve) => setImmediate(resolve));
  stop.abort();
  assert.ok(query?.abortSignal.aborted, 'the engine request was aborted');
  // dockerode destroys its stream on that abort; the stand-in ends instead.
  stream.end();
  assert.deepEqual(await read, []);
});
