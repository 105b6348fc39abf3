import type { Logger } from 'pino';
import type { Executor } from '../../executor/executor.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { LineCutter, ResumeFilter } from '../../logs/lines.ts';
import type { LogStore } from '../../logs/log-store.ts';
import { Redactor } from '../../logs/redactor.ts';
import type { LogShipper } from '../../logs/shipper.ts';
import { backoffDelay, describeHttpError, type BackoffPolicy } from '../../shared/backoff.ts';
import type { Clock, Timer } from '../../shared/clock.ts';
import type { LogLine, LogMessage } from '../../shared/log-line.ts';

export interface LiveLogsOptions {
  /** `core.max_log_bytes`: what one job streams at most. */
  readonly maxBytes: number;
  /** `[core.env]`'s values, hidden in every log. */
  readonly secrets: readonly string[];
  /** Retries of reading a container's output while the engine does not answer. */
  readonly backoff: BackoffPolicy;
  /** How long a removal waits for the reading of a stopped container's output to end. */
  readonly followWaitMs: number;
  /** How long lines read from the engine wait to be stored together (one transaction); 0 stores each read at once. */
  readonly flushMs: number;
}

export interface LiveLogsParts {
  readonly store: LogStore;
  readonly shipper: LogShipper;
  readonly executor: Executor;
  readonly log: Logger;
  readonly clock: Clock;
  /** A job's own values to hide (its `secrets`, in every encoded form), while the agent holds them. */
  readonly hidden?: ((jobId: string) => readonly string[]) | undefined;
}

/** Per-line overhead in a batch, for the shipper's estimate of what is waiting. */
const LINE_OVERHEAD = 64;
/** Lines read from the engine and not yet stored are stored at once when they reach this size. */
const FLUSH_BYTES = 256 * 1024;

/**
 * Live job logs: the store and shipper the agent shares, and a `JobLog` per job (held by its
 * runner) that reads the container's output into the store.
 */
export class LiveLogs {
  readonly parts: LiveLogsParts;
  readonly options: LiveLogsOptions;
  /** Aborted at close: every follower stops where it is, to go on at the next start. */
  readonly closing = new AbortController();
  readonly followers = new Set<Promise<void>>();
  private closed: Promise<void> | undefined;

  constructor(parts: LiveLogsParts, options: LiveLogsOptions) {
    this.parts = parts;
    this.options = options;
  }

  forJob(jobId: string): JobLog {
    return new JobLog(jobId, this);
  }

  /** Sends what a previous run left unsent; followers restart as runners re-adopt their containers. */
  resume(): void {
    this.parts.shipper.resume();
  }

  /** Resolves once the job's log is settled (sent in full, refused or given up), or when `signal` aborts. */
  settled(jobId: string, signal: AbortSignal): Promise<void> {
    return this.parts.shipper.settled(jobId, signal);
  }

  purge(before: number): number {
    return this.parts.store.purge(before);
  }

  /** Lines stored and not yet accepted by their logs servers, over every job whose log is still being sent. */
  backlogLines(): number {
    let lines = 0;
    for (const stream of this.parts.store.unsettled()) lines += Math.max(0, stream.nextLine - stream.acked);
    return lines;
  }

  /** Stops reading and sending; what is left goes on at the next start. Safe to call twice. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing.abort(new Error('agent stopping'));
      await Promise.allSettled([...this.followers]);
      await this.parts.shipper.close();
      this.parts.store.close();
    })();
    return this.closed;
  }
}

/**
 * One job's log: opened before its container starts (so that its final update waits for the
 * log), then its container's output followed into the store from where the last reading stopped
 * (after a restart too), until the output ends.
 */
export class JobLog {
  private readonly jobId: string;
  private readonly live: LiveLogs;
  private following: Promise<void> | undefined;
  private cutter: LineCutter | undefined;
  /** The live log's redactor, which the job's redactions extend. */
  private liveRedactor: Redactor | undefined;
  /** The last message read into the store by this process. */
  private lastTaken: LogMessage | undefined;

  constructor(jobId: string, live: LiveLogs) {
    this.jobId = jobId;
    this.live = live;
  }

  /** Starts the job's log stream when it has a `logsUrl`; a stream already stored is kept. */
  open(job: JobRecord): void {
    const url = job.spec.logsUrl;
    if (url === undefined) return;
    try {
      this.live.parts.store.open(this.jobId, url);
    } catch (err) {
      this.live.parts.log.error({ jobId: this.jobId, reason: describeHttpError(err) }, 'could not store the job log stream; its log is not sent');
    }
  }

  /** Follows the started container's output into the store, unless that is under way or done. Never throws. */
  follow(job: JobRecord): void {
    if (this.following || job.containerId === null || this.live.closing.signal.aborted) return;
    this.open(job);
    let stream: ReturnType<LogStore['get']>;
    try {
      stream = this.live.parts.store.get(this.jobId);
    } catch (err) {
      this.live.parts.log.error({ jobId: this.jobId, reason: describeHttpError(err) }, 'could not read the job log stream; its output is not followed');
      return;
    }
    if (!stream || stream.followed) return;
    this.cutter ??= new LineCutter((this.liveRedactor = this.redactor(job.secret)));
    const containerId = job.containerId;
    const run = this.run(containerId)
      .catch((err: unknown) => this.live.parts.log.error({ jobId: this.jobId, reason: describeHttpError(err) }, 'following the job log failed'))
      .finally(() => {
        this.following = undefined;
        this.live.followers.delete(run);
      });
    this.following = run;
    this.live.followers.add(run);
  }

  /** `lines` (a report's log tail) with `[core.env]`'s values and the job's secret hidden. */
  hide(lines: readonly string[], secret: string): string[] {
    const redactor = this.redactor(secret);
    return lines.map((line) => redactor.redact(line));
  }

  /** Values the job asked to hide from now on (the job API's redactions); the report's tail reads them anew. */
  redactMore(values: readonly string[]): void {
    this.liveRedactor?.add(values);
  }

  /** `[core.env]`'s values, the job's job-API secret, its own `secrets` and its redactions. */
  private redactor(secret: string): Redactor {
    return new Redactor([...this.live.options.secrets, secret, ...(this.live.parts.hidden?.(this.jobId) ?? [])]);
  }

  /** The container is gone: its output can no longer be read, and the log ends with what was read. */
  lost(): void {
    try {
      const stream = this.live.parts.store.get(this.jobId);
      if (!stream || stream.followed) return;
      this.live.parts.log.warn({ jobId: this.jobId, lines: stream.nextLine }, 'the job container is gone; its log ends with the lines read so far');
      this.end();
    } catch (err) {
      this.live.parts.log.error({ jobId: this.jobId, reason: describeHttpError(err) }, 'could not end the job log');
    }
  }

  /** Before the container is removed: waits (a bounded time) for its output to be read to the end. */
  async followed(): Promise<void> {
    const { store, clock, log } = this.live.parts;
    if (this.following) {
      const waited = new AbortController();
      const timer = clock.after(this.live.options.followWaitMs, () => waited.abort());
      await Promise.race([this.following, new Promise<void>((resolve) => waited.signal.addEventListener('abort', () => resolve(), { once: true }))]);
      timer.cancel();
    }
    try {
      const stream = store.get(this.jobId);
      if (!stream || stream.followed || this.live.closing.signal.aborted) return;
      log.warn({ jobId: this.jobId, lines: stream.nextLine }, 'removing the job container before its output was read to the end; the log ends here');
      // Said in the log itself, so a logs server can tell this end from a whole log.
      const note = {
        stream: 'stderr' as const,
        ts: new Date(clock.now()).toISOString().replace('Z', '000000Z'),
        text: '[foreman] log cut short: the container was removed before its output was read to the end',
      };
      store.append(this.jobId, [note], stream.cursor, { bytes: 0, truncated: stream.truncated });
      this.end();
    } catch (err) {
      // The removal goes ahead: a log store that fails must not keep a container forever.
      log.error({ jobId: this.jobId, reason: describeHttpError(err) }, 'could not end the job log');
    }
  }

  private end(): void {
    this.live.parts.store.markFollowed(this.jobId);
    this.live.parts.shipper.notify(this.jobId);
  }

  private async run(containerId: string): Promise<void> {
    const { executor, clock, log } = this.live.parts;
    const signal = this.live.closing.signal;
    let lastProblem: string | undefined;
    for (let attempt = 0; !signal.aborted;) {
      try {
        if ((await this.read(containerId, true)) > 0) attempt = 0;
        // The output ended: the container stopped, or the engine closed the stream (a restart).
        const status = await executor.inspect(containerId);
        if (!status?.running) {
          // What the engine stored after the follow ended, if anything: read again (streamed; a follow
          // of a stopped container ends with what is stored) unless its last message is the last taken.
          if (!(await this.caughtUp(containerId))) await this.read(containerId, true);
          return this.end();
        }
        lastProblem = 'the engine ended the log stream of a running container';
      } catch (err) {
        if (signal.aborted || this.settled()) return;
        lastProblem = describeHttpError(err);
        // The engine answers but cannot give this container's output (gone, or a driver without reading).
        const status = await executor.inspect(containerId).catch(() => 'unknown' as const);
        if (status !== 'unknown' && !status?.running) {
          log.warn({ jobId: this.jobId, containerId, reason: lastProblem }, 'could not read the job container output; its log ends here');
          return this.end();
        }
        if (attempt === 0) log.warn({ jobId: this.jobId, containerId, reason: lastProblem }, 'reading the job container output failed; retrying');
      }
      if (this.settled()) return;
      try {
        await clock.sleep(backoffDelay(this.live.options.backoff, ++attempt), signal);
      } catch {
        return;
      }
    }
  }

  /** True when the container's last stored message is the last one taken: nothing is left to read. */
  private async caughtUp(containerId: string): Promise<boolean> {
    const last = this.lastTaken;
    if (!last) return false;
    for await (const batch of this.live.parts.executor.readLogs(containerId, { since: undefined, follow: false, tail: 1 }, this.live.closing.signal)) {
      const final = batch.at(-1);
      return final !== undefined && final.ts === last.ts && final.stream === last.stream && final.text.equals(last.text);
    }
    return false;
  }

  private settled(): boolean {
    const stream = this.live.parts.store.get(this.jobId);
    return !stream || stream.settled !== null;
  }

  /**
   * Reads from the stored cursor into the store; the number of new messages. Stops once the stream is settled.
   * Lines are stored together with the cursor that follows them, up to `flushMs` or `FLUSH_BYTES` at a time (one
   * transaction, not one per engine message): a killed agent reads again from the stored cursor, so nothing is lost.
   */
  private async read(containerId: string, follow: boolean): Promise<number> {
    const { store, executor, shipper, clock } = this.live.parts;
    const cutter = this.cutter;
    const start = store.get(this.jobId);
    if (!start || start.settled || !cutter) return 0;
    const maxBytes = this.live.options.maxBytes;
    const filter = new ResumeFilter(start.cursor);
    let bytes = start.bytes;
    let truncated = start.truncated;
    let taken = 0;
    const pending: { lines: LogLine[]; bytes: number; dirty: boolean; timer: Timer | undefined; refused: boolean; failed: Error | undefined } = {
      lines: [],
      bytes: 0,
      dirty: false,
      timer: undefined,
      refused: false,
      failed: undefined,
    };
    const flush = (): void => {
      pending.timer?.cancel();
      pending.timer = undefined;
      if (!pending.dirty || pending.refused || pending.failed !== undefined) return;
      const { lines, bytes: added } = pending;
      pending.lines = [];
      pending.bytes = 0;
      pending.dirty = false;
      if (!store.append(this.jobId, lines, filter.cursor, { bytes: added, truncated })) {
        pending.refused = true;
        return;
      }
      bytes += added;
      if (lines.length > 0) shipper.notify(this.jobId, added + LINE_OVERHEAD * lines.length);
    };
    // From a timer: a store error is kept and thrown by the reading loop, which then reads again from the stored cursor.
    const flushLater = (): void => {
      try {
        flush();
      } catch (err) {
        pending.failed = err instanceof Error ? err : new Error(String(err));
      }
    };
    try {
      for await (const batch of executor.readLogs(containerId, { since: start.cursor.since ?? undefined, follow }, this.live.closing.signal)) {
        for (const message of batch) {
          if (!filter.take(message)) continue;
          taken++;
          pending.dirty = true;
          this.lastTaken = message;
          if (truncated) continue;
          for (const line of cutter.cut(message)) {
            const size = Buffer.byteLength(line.text);
            if (bytes + pending.bytes + size > maxBytes) {
              pending.lines.push({ stream: line.stream, ts: line.ts, text: `[foreman] log truncated after ${bytes + pending.bytes} bytes` });
              truncated = true;
              break;
            }
            pending.lines.push(line);
            pending.bytes += size;
          }
        }
        if (pending.failed !== undefined) throw pending.failed;
        const flushMs = this.live.options.flushMs;
        if (pending.bytes >= FLUSH_BYTES || flushMs <= 0) flush();
        else if (pending.dirty) pending.timer ??= clock.after(flushMs, flushLater);
        if (pending.refused) return taken;
      }
    } finally {
      pending.timer?.cancel();
    }
    if (pending.failed !== undefined) throw pending.failed;
    flush();
    return taken;
  }
}
