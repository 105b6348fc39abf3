import type Docker from 'dockerode';
import { Readable } from 'node:stream';
import type { LogMessage } from '../../shared/log-line.ts';
import type { LogReadOptions } from '../executor.ts';
import { LogFrameParser, sinceParam } from './log-frames.ts';

/** A log request as dockerode takes it, for a container's log or a swarm service's. */
export type LogQuery = Docker.ContainerLogsOptions & { follow: boolean; abortSignal: AbortSignal };

/**
 * Makes the engine request: dockerode answers a stream when following and a buffer otherwise.
 * Undefined: there is no such log (the container or service is gone), so nothing to read.
 */
export type OpenLogs = (query: LogQuery) => Promise<NodeJS.ReadableStream | Buffer | undefined>;

/**
 * Ends a followed read early (swarm: a service's log waits for more tasks, so it never ends by itself):
 * ends `stream` by pushing null when the time has come. `signal` aborts once the read is over.
 */
export type EndFollow = (stream: Readable, signal: AbortSignal) => Promise<void>;

/**
 * Reads a container's or a service's log as batches of messages, from `options.since` (a stored
 * timestamp) on. The request gets its own abort, tied to `signal`, so it is torn down when the reader
 * stops early as well; the log of a DockerExecutor and of a SwarmExecutor are read alike.
 */
export async function* readLogBatches(open: OpenLogs, options: LogReadOptions, signal: AbortSignal, endFollow?: EndFollow): AsyncIterable<LogMessage[]> {
  const since = options.since === undefined ? '0' : sinceParam(options.since);
  const reading = new AbortController();
  const forward = (): void => reading.abort(signal.reason);
  // A signal that has aborted already fires no event: the request starts aborted.
  if (signal.aborted) forward();
  else signal.addEventListener('abort', forward, { once: true });
  const query = {
    stdout: true,
    stderr: true,
    timestamps: true,
    since,
    ...(options.tail === undefined ? {} : { tail: options.tail }),
    follow: options.follow,
    abortSignal: reading.signal,
  };
  let stream: Readable | undefined;
  let ending = Promise.resolve();
  try {
    const answer = await open(query);
    if (answer === undefined) return;
    stream = options.follow ? (answer as Readable) : Readable.from([answer]);
    if (options.follow && endFollow) ending = endFollow(stream, reading.signal);
    const parser = new LogFrameParser();
    for await (const chunk of stream) {
      const messages = parser.push(chunk as Buffer);
      if (messages.length > 0) yield messages;
    }
  } finally {
    signal.removeEventListener('abort', forward);
    reading.abort();
    stream?.destroy();
    await ending;
  }
}
