import { Agent, request, type Dispatcher } from '../shared/http-client.ts';
import type { Logger } from 'pino';
import { backoffDelay, describeHttpError, isRetryableStatus, type BackoffPolicy } from '../shared/backoff.ts';
import type { Clock } from '../shared/clock.ts';
import type { Delivery } from '../shared/delivery.ts';
import { redactUrl } from '../shared/redact.ts';
import { Waiters } from '../shared/waiters.ts';
import { FINAL_STATUS, HEADER, parseCancelHeader } from '../protocol/wire.ts';
import { wireHeaders } from './messages.ts';

/** The part of the store the outbox needs. */
export interface OutboxStore {
  pendingDeliveries(): Delivery[];
  /** Resolves once what was written is on disk: a delivery never leaves before it is. */
  durable(): Promise<void>;
  completeDelivery(id: string): Promise<void>;
  recordAttempt(id: string, attempts: number, error: string): void;
}

export type DeliveryResult = 'delivered' | 'rejected' | 'expired';

export interface OutboxOptions {
  readonly store: OutboxStore;
  readonly log: Logger;
  readonly clock: Clock;
  readonly userAgent: string;
  /** Give up on a delivery this long after it was queued. */
  readonly maxAgeMs: number;
  readonly requestTimeoutMs: number;
  readonly backoff: BackoffPolicy;
  readonly dispatcher?: Dispatcher;
  /** Called once per delivery when it leaves the outbox. */
  readonly onSettled?: (delivery: Delivery, result: DeliveryResult) => void;
  /** Receives the job ids of a callback reply's `x-foreman-cancel` header, whatever its status. */
  readonly onCancel?: (ids: string[]) => void;
  /** Holds a job's final update (`completed`) until it resolves: the job's live log goes out in full first. */
  readonly beforeFinal?: (jobId: string, signal: AbortSignal) => Promise<void>;
  /** With tracing on: the span of one attempt (`attempt` counts from 1), and the `traceparent` it sends. */
  readonly traceAttempt?: ((delivery: Delivery, attempt: number) => AttemptSpan | undefined) | undefined;
  /** A final update as it leaves, once `beforeFinal` resolved: what the agent learnt meanwhile (the post_job hook's result). */
  readonly finalize?: (delivery: Delivery) => Delivery;
}

/** One attempt's span: the trace context headers the request carries, ended with the answer's status or why there was none. */
export interface AttemptSpan {
  readonly headers: Readonly<Record<string, string>>;
  end(result: { readonly status?: number; readonly error?: string }): void;
}

interface Lane {
  readonly queue: Delivery[];
  running: Promise<void> | undefined;
}

/**
 * Delivers queued callbacks at least once, in order per job, with retries.
 * Deliveries are durable before they get here; the outbox only deletes them once settled.
 */
export class CallbackOutbox {
  private readonly options: OutboxOptions;
  private readonly lanes = new Map<string, Lane>();
  /** Ids queued and not yet settled, so a delivery is never queued twice. */
  private readonly queued = new Set<string>();
  private readonly abort = new AbortController();
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly idle = new Waiters();
  private closing: Promise<void> | undefined;

  constructor(options: OutboxOptions) {
    this.options = options;
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? new Agent({ connections: 64, keepAliveTimeout: 10_000 });
  }

  /** Picks up every delivery left in the store, e.g. from before a restart. */
  resume(): void {
    for (const delivery of this.options.store.pendingDeliveries()) this.enqueue(delivery);
  }

  enqueue(delivery: Delivery): void {
    if (this.abort.signal.aborted) return;
    let lane = this.lanes.get(delivery.jobId);
    if (!lane) {
      lane = { queue: [], running: undefined };
      this.lanes.set(delivery.jobId, lane);
    }
    if (this.queued.has(delivery.id)) return;
    this.queued.add(delivery.id);
    lane.queue.push(delivery);
    if (!lane.running) {
      const current = lane;
      current.running = this.runLane(delivery.jobId, current).finally(() => {
        current.running = undefined;
        if (current.queue.length === 0) this.lanes.delete(delivery.jobId);
        if (this.lanes.size === 0) this.idle.wakeAll();
      });
    }
  }

  /** Number of deliveries not yet settled. */
  get backlog(): number {
    return this.queued.size;
  }

  /** When the oldest delivery not yet settled was stored; undefined when none waits. */
  get oldestCreatedAt(): number | undefined {
    let oldest: number | undefined;
    for (const lane of this.lanes.values()) {
      // A lane's queue is in seq order, so its head is its oldest.
      const head = lane.queue[0];
      if (head && (oldest === undefined || head.createdAt < oldest)) oldest = head.createdAt;
    }
    return oldest;
  }

  /** Resolves once nothing is queued, or when `signal` aborts. */
  async drain(signal: AbortSignal): Promise<void> {
    if (this.lanes.size > 0) await this.idle.wait(signal);
  }

  /** Stops delivering; what is left stays in the store for the next start. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(new Error('outbox closed'));
      await Promise.allSettled([...this.lanes.values()].flatMap((l) => (l.running ? [l.running] : [])));
      if (this.ownsDispatcher) await this.dispatcher.close();
      this.idle.wakeAll();
    })();
    return this.closing;
  }

  private async runLane(jobId: string, lane: Lane): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const delivery = lane.queue[0];
      if (!delivery) return;
      const final = delivery.headers[HEADER.jobStatus] === FINAL_STATUS;
      if (this.options.beforeFinal && final) {
        await this.options.beforeFinal(jobId, signal);
        if (signal.aborted) return;
      }
      // Stored, and on disk before it leaves the host: a power loss cannot take back what the server heard.
      try {
        await this.options.store.durable();
      } catch (err) {
        if (!signal.aborted)
          this.options.log.error(
            { jobId, deliveryId: delivery.id, reason: describeHttpError(err) },
            'the store could not sync; the delivery waits for the next start',
          );
        return;
      }
      if (signal.aborted) return;
      const result = await this.deliver(final && this.options.finalize ? this.options.finalize(delivery) : delivery, signal);
      if (result === undefined) return; // closed mid-delivery; the store keeps it
      this.options.store.completeDelivery(delivery.id).catch((err: unknown) => {
        this.options.log.error({ jobId, deliveryId: delivery.id, reason: describeHttpError(err) }, 'could not mark delivery done; it may be sent again');
      });
      lane.queue.shift();
      this.queued.delete(delivery.id);
      this.options.onSettled?.(delivery, result);
    }
  }

  /** Retries until the delivery settles; undefined when the outbox closed first. */
  private async deliver(delivery: Delivery, signal: AbortSignal): Promise<DeliveryResult | undefined> {
    const { log, clock } = this.options;
    const context = { jobId: delivery.jobId, deliveryId: delivery.id, seq: delivery.seq };
    let attempts = delivery.attempts;
    let lastReason: string | undefined;
    for (;;) {
      if (signal.aborted) return undefined;
      attempts++;
      let reason: string;
      const span = this.options.traceAttempt?.(delivery, attempts);
      try {
        const res = await request(delivery.url, {
          method: 'PUT',
          headers: span ? { ...wireHeaders(delivery, this.options.userAgent), ...span.headers } : wireHeaders(delivery, this.options.userAgent),
          body: delivery.body,
          dispatcher: this.dispatcher,
          headersTimeout: this.options.requestTimeoutMs,
          bodyTimeout: this.options.requestTimeoutMs,
          signal,
        });
        await res.body.dump();
        span?.end({ status: res.statusCode });
        const cancels = parseCancelHeader(res.headers[HEADER.cancel]);
        if (cancels.length > 0) this.options.onCancel?.(cancels);
        if (res.statusCode >= 200 && res.statusCode < 300) {
          if (lastReason) log.info({ ...context, attempts }, 'callback delivered after retries');
          return 'delivered';
        }
        reason = `callback answered ${res.statusCode}`;
        if (!isRetryableStatus(res.statusCode)) {
          log.warn({ ...context, url: redactUrl(delivery.url), reason }, 'callback rejected the update; not retrying');
          return 'rejected';
        }
      } catch (err) {
        span?.end({ error: signal.aborted ? 'the agent stopped' : describeHttpError(err) });
        if (signal.aborted) return undefined;
        reason = describeHttpError(err);
      }
      if (clock.now() - delivery.createdAt >= this.options.maxAgeMs) {
        log.error(
          { ...context, url: redactUrl(delivery.url), attempts, reason, status: delivery.headers[HEADER.jobStatus] },
          'GIVING UP on a callback delivery: it could not be delivered within callback_max_age',
        );
        return 'expired';
      }
      if (reason !== lastReason) log.warn({ ...context, url: redactUrl(delivery.url), reason }, 'callback delivery failed; retrying');
      lastReason = reason;
      try {
        this.options.store.recordAttempt(delivery.id, attempts, reason);
      } catch {
        // Only bookkeeping: the delivery itself is still stored.
      }
      try {
        await clock.sleep(backoffDelay(this.options.backoff, attempts), signal);
      } catch {
        return undefined;
      }
    }
  }
}
