import { Agent, request, type Dispatcher } from '../shared/http-client.ts';
import type { Logger } from 'pino';
import { backoffDelay, describeHttpError, isRetryableStatus, type BackoffPolicy } from '../shared/backoff.ts';
import type { Clock } from '../shared/clock.ts';
import { redactUrl } from '../shared/redact.ts';
import { Waiters } from '../shared/waiters.ts';
import { logBatchHeaders } from '../protocol/wire.ts';
import type { LogSettlement, LogStore, LogStream } from './log-store.ts';

/** A batch goes out once this much is waiting, or `BATCH_INTERVAL_MS` after the previous one. */
export const BATCH_BYTES = 256 * 1024;
export const BATCH_INTERVAL_MS = 1000;
/** Wait before a lane that failed (not its logs server: the store) starts again. */
const LANE_RETRY_MS = 5000;

export interface LogShipperOptions {
  readonly store: LogStore;
  readonly log: Logger;
  readonly clock: Clock;
  readonly userAgent: string;
  readonly agentId: string;
  readonly requestTimeoutMs: number;
  readonly backoff: BackoffPolicy;
  /** Give up on a stream whose logs server has failed for this long in a row. */
  readonly maxAgeMs: number;
  readonly batchBytes?: number;
  readonly intervalMs?: number;
  readonly dispatcher?: Dispatcher;
  /** With tracing on: the span of one POST of a job's log (retries included), and the `traceparent` it sends. */
  readonly traceBatch?: ((jobId: string, url: string, details: { offset: number; lines: number; end: boolean }) => BatchSpan | undefined) | undefined;
}

/** One batch's span: the trace context headers its requests carry, ended with the last answer's status or why there was none. */
export interface BatchSpan {
  readonly headers: Readonly<Record<string, string>>;
  end(result: { readonly status?: number; readonly error?: string }): void;
}

type Sent = 'accepted' | Exclude<LogSettlement, 'ended'>;

interface Lane {
  readonly wake: Waiters;
  /** Approximate bytes stored and not yet sent. */
  waiting: number;
  /** Holding a small batch until the interval passes: only a batch's worth more, or the end, cuts that short. */
  holding: boolean;
}

/**
 * Sends each job's stored log lines to its `logsUrl`: NDJSON batches in order, one request at a
 * time per job, retried like callbacks, then the end marker once the container's output was read
 * to its end and every line was accepted. What is sent stays stored until accepted, so a restart
 * sends again from the first line not accepted.
 */
export class LogShipper {
  private readonly options: LogShipperOptions;
  private readonly lanes = new Map<string, Lane>();
  private readonly running = new Set<Promise<void>>();
  private readonly settledWaiters = new Waiters();
  private readonly abort = new AbortController();
  private readonly dispatcher: Dispatcher;
  private closing: Promise<void> | undefined;

  constructor(options: LogShipperOptions) {
    this.options = options;
    this.dispatcher = options.dispatcher ?? new Agent({ connections: 16, keepAliveTimeout: 10_000 });
  }

  /** Picks up every stream a previous run left unsettled. */
  resume(): void {
    for (const stream of this.options.store.unsettled()) this.notify(stream.jobId);
  }

  /** New lines (about `bytes` of them) were stored, or the output was read to its end. */
  notify(jobId: string, bytes = 0): void {
    if (this.abort.signal.aborted) return;
    const lane = this.lanes.get(jobId);
    if (lane) {
      lane.waiting += bytes;
      // A chatty job notifies for every few lines: while a small batch is held, only what changes the decision wakes the lane.
      if (!lane.holding || bytes === 0 || lane.waiting >= (this.options.batchBytes ?? BATCH_BYTES)) lane.wake.wakeAll();
      return;
    }
    const stream = this.options.store.get(jobId);
    if (!stream || stream.settled) return;
    const created: Lane = { wake: new Waiters(), waiting: this.options.store.waitingBytes(jobId, stream.acked), holding: false };
    this.lanes.set(jobId, created);
    const run = this.runLane(jobId, created)
      .catch((err: unknown) => {
        // A store error, say: try again in a while, since the job's final update waits for this log.
        this.options.log.error({ jobId, reason: describeHttpError(err) }, 'sending the job log failed; trying again in a few seconds');
        this.options.clock.after(LANE_RETRY_MS, () => this.notify(jobId), { unref: true });
      })
      .finally(() => {
        this.lanes.delete(jobId);
        this.running.delete(run);
        this.settledWaiters.wakeAll();
      });
    this.running.add(run);
  }

  /** Resolves once the job's log stream is settled (at once when it has none), or when `signal` aborts. */
  async settled(jobId: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      const stream = this.options.store.get(jobId);
      if (!stream || stream.settled || signal.aborted || this.abort.signal.aborted) return;
      await this.settledWaiters.wait(AbortSignal.any([signal, this.abort.signal]));
    }
  }

  /** Stops sending; what is not accepted stays stored for the next start. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(new Error('log shipper closed'));
      await Promise.allSettled([...this.running]);
      this.settledWaiters.wakeAll();
      await this.dispatcher.close();
    })();
    return this.closing;
  }

  private async runLane(jobId: string, lane: Lane): Promise<void> {
    const { store, clock } = this.options;
    const signal = this.abort.signal;
    const interval = this.options.intervalMs ?? BATCH_INTERVAL_MS;
    const batchBytes = this.options.batchBytes ?? BATCH_BYTES;
    let lastSentAt = Number.NEGATIVE_INFINITY;
    // The last batch was cut at its size or line limit: more is stored, and it waits for no timer.
    // (`lane.waiting` is an estimate that drifts over a long backlog; this does not.)
    let backlog = false;
    while (!signal.aborted) {
      const stream = store.get(jobId);
      if (!stream || stream.settled) return;
      if (stream.acked < stream.nextLine) {
        const wait = stream.followed || backlog || lane.waiting >= batchBytes ? 0 : lastSentAt + interval - clock.now();
        if (wait > 0) {
          await this.pause(lane, wait);
          continue;
        }
        lastSentAt = clock.now();
        const { body, count, bytes, full } = store.nextBatch(jobId, stream.acked, batchBytes);
        const sent = await this.post(stream, { offset: stream.acked }, body, count);
        if (sent === undefined) return;
        if (sent !== 'accepted') return store.settle(jobId, sent);
        store.ack(jobId, stream.acked + count);
        lane.waiting = Math.max(0, lane.waiting - bytes);
        backlog = full;
      } else if (stream.followed) {
        const sent = await this.post(stream, { offset: stream.nextLine, end: stream.nextLine }, Buffer.alloc(0));
        if (sent === undefined) return;
        store.settle(jobId, sent === 'accepted' ? 'ended' : sent);
        if (sent === 'accepted') this.options.log.info({ jobId, lines: stream.nextLine, truncated: stream.truncated }, 'job log sent in full');
        return;
      } else {
        await lane.wake.wait(signal);
      }
    }
  }

  /** Until new lines are stored or `ms` pass. */
  private async pause(lane: Lane, ms: number): Promise<void> {
    const elapsed = new AbortController();
    const timer = this.options.clock.after(ms, () => elapsed.abort());
    lane.holding = true;
    await lane.wake.wait(AbortSignal.any([this.abort.signal, elapsed.signal]));
    lane.holding = false;
    timer.cancel();
  }

  /** Retries until the logs server answers (the whole in one span, when traced); undefined when the shipper closed first. */
  private async post(stream: LogStream, at: { offset: number; end?: number }, body: Buffer, lines = 0): Promise<Sent | undefined> {
    const span = this.options.traceBatch?.(stream.jobId, stream.url, { offset: at.offset, lines, end: at.end !== undefined });
    if (!span) return this.send(stream, at, {}, body);
    let last: { status?: number; error?: string } = { error: 'the agent stopped' };
    const sent = await this.send(stream, at, span.headers, body, (answer) => (last = answer));
    span.end(last);
    return sent;
  }

  private async send(
    stream: LogStream,
    at: { offset: number; end?: number },
    extra: Readonly<Record<string, string>>,
    body: Buffer,
    answered?: (answer: { status?: number; error?: string }) => void,
  ): Promise<Sent | undefined> {
    const { log, clock } = this.options;
    const signal = this.abort.signal;
    const context = { jobId: stream.jobId, url: redactUrl(stream.url), offset: String(at.offset) };
    const headers = { ...logBatchHeaders({ jobId: stream.jobId, agentId: this.options.agentId, userAgent: this.options.userAgent, ...at }), ...extra };
    let failingSince: number | undefined;
    let lastReason: string | undefined;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return undefined;
      let reason: string;
      try {
        const res = await request(stream.url, {
          method: 'POST',
          headers,
          body,
          dispatcher: this.dispatcher,
          headersTimeout: this.options.requestTimeoutMs,
          bodyTimeout: this.options.requestTimeoutMs,
          signal,
        });
        await res.body.dump();
        answered?.({ status: res.statusCode });
        if (res.statusCode >= 200 && res.statusCode < 300) {
          if (lastReason) log.info({ ...context, attempts: attempt }, 'job log batch delivered after retries');
          return 'accepted';
        }
        reason = `logs server answered ${res.statusCode}`;
        if (!isRetryableStatus(res.statusCode)) {
          log.warn({ ...context, reason }, 'the logs server refused the job log; sending no more of it');
          return 'rejected';
        }
      } catch (err) {
        if (signal.aborted) return undefined;
        reason = describeHttpError(err);
        answered?.({ error: reason });
      }
      failingSince ??= clock.now();
      if (clock.now() - failingSince >= this.options.maxAgeMs) {
        log.error({ ...context, attempts: attempt, reason }, 'GIVING UP on a job log: the logs server failed for callback_max_age');
        return 'abandoned';
      }
      if (reason !== lastReason) log.warn({ ...context, reason }, 'sending the job log failed; retrying');
      lastReason = reason;
      try {
        await clock.sleep(backoffDelay(this.options.backoff, attempt), signal);
      } catch {
        return undefined;
      }
    }
  }
}
