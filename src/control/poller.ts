import { request, type Dispatcher } from '../shared/http-client.ts';
import type { Logger } from 'pino';
import { backoffDelay, describeHttpError, type BackoffPolicy } from '../shared/backoff.ts';
import type { Clock } from '../shared/clock.ts';
import { redactUrl } from '../shared/redact.ts';
import { HEADER, parseCancelHeader, pollHeaders } from '../protocol/wire.ts';

export interface PollerOptions {
  readonly url: string;
  readonly token: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly agentId: string;
  readonly userAgent: string;
  readonly pollFrequencyMs: number;
  readonly pollTimeoutMs: number;
  readonly backoff: BackoffPolicy;
  readonly clock: Clock;
  readonly log: Logger;
  readonly dispatcher?: Dispatcher;
  /** Defaults to MAX_POLL_REPLY_BYTES. */
  readonly maxReplyBytes?: number;
  /** Free slots right now; sent as x-foreman-capacity (0 while full or draining: the poll is a heartbeat). */
  readonly freeSlots: () => number;
  /** Receives every entry of a reply, unvalidated; returns how many were new jobs. */
  readonly onJobs: (entries: unknown[]) => number;
  /** Receives the job ids of a reply's `x-foreman-cancel` header, whatever the reply's status. */
  readonly onCancel: (ids: string[]) => void;
  /** Told how each poll ended (the agent's `foreman_polls_total`). */
  readonly onPolled?: ((result: 'jobs' | 'empty' | 'unauthorized' | 'error') => void) | undefined;
  /** More headers for every poll, read as each poll is sent (`x-foreman-attributes`, `x-foreman-images`); empty values are left out. */
  readonly extraHeaders?: (() => Readonly<Record<string, string>>) | undefined;
}

/** A reply larger than this is refused rather than buffered: a job list never needs it. */
export const MAX_POLL_REPLY_BYTES = 64 * 1024 * 1024;

function nonEmpty(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([, value]) => value !== ''));
}

export class PollError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'PollError';
  }
}

/**
 * Where and why JSON.parse failed, never the text itself: a reply holds jobs' env values, and V8 quotes
 * an excerpt in some messages (`Unexpected token 'x', "…" is not valid JSON`), so only what is known to
 * hold none is kept.
 */
function jsonProblem(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  const at = /^([^"]*) in JSON at position (\d+)/.exec(message);
  if (at) return `${at[1]} at position ${at[2]}`;
  if (message.startsWith('Unexpected token')) return 'unexpected token';
  return message === 'Unexpected end of JSON input' ? message : 'not valid JSON';
}

/** Turns a reply into job entries: an array, one object, `[]` and 204 are all valid. */
export function parsePollReply(status: number, text: string): unknown[] {
  if (status === 204) return [];
  if (status === 401 || status === 403) throw new PollError(`the control server rejected the token (${status})`, status);
  if (status < 200 || status >= 300) throw new PollError(`the control server answered ${status}`, status);
  if (text.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new PollError(`the control server sent invalid JSON (${jsonProblem(err)}; ${Buffer.byteLength(text)} bytes)`, status);
  }
  if (Array.isArray(parsed)) return parsed;
  if (parsed === null) return [];
  if (typeof parsed === 'object') return [parsed];
  throw new PollError(`the control server sent ${typeof parsed} instead of a job or a list of jobs`, status);
}

/**
 * A reply's `traceparent` (and `tracestate`) header, for control servers that send the trace context as a header:
 * it goes to each job of the reply that carries no `traceparent` of its own (which wins). Entries are copied, not changed.
 */
export function withReplyTraceContext(entries: unknown[], headers: Readonly<Record<string, string | string[] | undefined>>): unknown[] {
  const traceparent = headers.traceparent;
  if (typeof traceparent !== 'string') return entries;
  const tracestate = typeof headers.tracestate === 'string' ? { tracestate: headers.tracestate } : {};
  return entries.map((entry) =>
    typeof entry === 'object' && entry !== null && !Array.isArray(entry) && !Object.hasOwn(entry, 'traceparent')
      ? { ...entry, traceparent, ...tracestate }
      : entry,
  );
}

/**
 * Polls the control server. One request at a time; the next one is scheduled only after
 * the last ends: at once while new jobs keep coming and slots are free, else after poll_frequency,
 * or after a backoff when the poll failed. Polls go on while every slot is taken (capacity 0):
 * then a poll is a heartbeat, and its reply may still carry cancels.
 */
export class Poller {
  private readonly options: PollerOptions;
  private failures = 0;
  private lastProblem: string | undefined = 'no poll has been answered yet';

  constructor(options: PollerOptions) {
    this.options = options;
  }

  /** Why the last poll failed, or undefined when it succeeded. */
  get problem(): string | undefined {
    return this.lastProblem;
  }

  async pollUntilStopped(signal: AbortSignal): Promise<void> {
    const { clock, log } = this.options;
    while (!signal.aborted) {
      let delay: number;
      try {
        const entries = await this.pollOnce(signal);
        this.options.onPolled?.(entries.length > 0 ? 'jobs' : 'empty');
        if (this.failures > 0) log.info({ url: redactUrl(this.options.url) }, 'control server reachable again');
        this.failures = 0;
        this.lastProblem = undefined;
        const fresh = entries.length > 0 ? this.options.onJobs(entries) : 0;
        delay = fresh > 0 && this.options.freeSlots() > 0 ? 0 : this.options.pollFrequencyMs;
      } catch (err) {
        if (signal.aborted) return;
        const status = err instanceof PollError ? err.status : undefined;
        this.options.onPolled?.(status === 401 || status === 403 ? 'unauthorized' : 'error');
        this.failures++;
        const problem = describeHttpError(err);
        if (problem !== this.lastProblem)
          log.warn({ url: redactUrl(this.options.url), reason: problem }, 'polling the control server failed; retrying with backoff');
        this.lastProblem = problem;
        delay = backoffDelay(this.options.backoff, this.failures);
      }
      if (delay > 0) {
        try {
          await clock.sleep(delay, signal);
        } catch {
          return;
        }
      }
    }
  }

  /** One GET; throws PollError or a network error. */
  async pollOnce(signal: AbortSignal): Promise<unknown[]> {
    const { pollTimeoutMs, clock } = this.options;
    // The injected clock's timer, cancelled when the poll ends, rather than AbortSignal.timeout,
    // whose timer outlives every poll and which a test clock cannot move.
    const timeout = new AbortController();
    const timer = clock.after(pollTimeoutMs, () => timeout.abort(new PollError(`no reply within poll_timeout (${pollTimeoutMs} ms)`)), { unref: true });
    const timedOut = (err: unknown): never => {
      if (timeout.signal.aborted && !signal.aborted) throw timeout.signal.reason as PollError;
      throw err;
    };
    try {
      const res = await request(this.options.url, {
        method: 'GET',
        headers: { ...nonEmpty(this.options.extraHeaders?.() ?? {}), ...pollHeaders({ ...this.options, capacity: this.options.freeSlots() }) },
        signal: AbortSignal.any([signal, timeout.signal]),
        ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
      }).catch(timedOut);
      const cancels = parseCancelHeader(res.headers[HEADER.cancel]);
      if (cancels.length > 0) this.options.onCancel(cancels);
      const text = await readLimited(res.body, this.options.maxReplyBytes ?? MAX_POLL_REPLY_BYTES).catch(timedOut);
      return withReplyTraceContext(parsePollReply(res.statusCode, text), res.headers);
    } finally {
      timer.cancel();
    }
  }
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw new PollError(`the control server's reply exceeds ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
