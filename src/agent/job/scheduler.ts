import type { Logger } from 'pino';
import { endingReport } from '../../callbacks/messages.ts';
import type { ExecutorEvent } from '../../executor/executor.ts';
import type { JobStore, NewDelivery } from '../../jobs/store.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import type { Timer } from '../../shared/clock.ts';
import { validateJob, type JobSpec, type JobValidation } from '../../shared/job-spec.ts';
import { Waiters } from '../../shared/waiters.ts';
import { encodeJobId } from '../../protocol/wire.ts';
import type { JobPolicy } from './policy.ts';
import { withoutSecretValues } from './secrets.ts';
import type { RunnerContext, RunnerHooks } from './context.ts';
import { JobRunner } from './runner.ts';
import { containerNameFor, newJobSecret } from './naming.ts';

export interface SchedulerOptions {
  readonly maxConcurrentJobs: number;
  /** Wait before starting jobs again after the store refused a start. */
  readonly launchRetryMs: number;
  /** One-shot (`--max-jobs`): take at most this many jobs in this run. */
  readonly maxJobs?: number | undefined;
  /** Refuses valid jobs this agent may not run (image not allowed, resources above the maxima): they are `invalid`. */
  readonly policy?: JobPolicy | undefined;
}

/**
 * Receives jobs, keeps the local queue, and holds one `JobRunner` per job this agent still tracks.
 * Slots are counted from the runners (those holding one), never kept as a second counter.
 */
export class Scheduler {
  private readonly ctx: RunnerContext;
  private readonly options: SchedulerOptions;
  private readonly runners = new Map<string, JobRunner>();
  /** Jobs waiting for a slot, in arrival order. */
  private readonly queue: JobRunner[] = [];
  /** Woken whenever no job holds a slot any more: the end of a drain. */
  private readonly noneRunning = new Waiters();
  private engineUp = false;
  private stopping = false;
  private draining = false;
  /** Jobs taken in this run (stored, whether run or rejected), for `--max-jobs`. */
  private taken = 0;
  private retryTimer: Timer | undefined;
  /** Repeated offers already logged (see `firstTime`). */
  private readonly repeats = new Set<string>();

  constructor(ctx: RunnerContext, options: SchedulerOptions) {
    this.ctx = ctx;
    this.options = options;
  }

  /** What a runner may tell the scheduler about itself. */
  private hooksFor(runner: () => JobRunner): RunnerHooks {
    return {
      slotFreed: () => this.pump(),
      requeue: (where) => this.requeue(runner(), where),
      finished: () => {
        const run = runner();
        this.ctx.secrets?.release(run.id);
        if (this.runners.get(run.id) === run) this.runners.delete(run.id);
        const queued = this.queue.indexOf(run);
        if (queued >= 0) this.queue.splice(queued, 1);
      },
    };
  }

  private get log(): Logger {
    return this.ctx.log;
  }

  private get store(): JobStore {
    return this.ctx.store;
  }

  /** Jobs holding a slot: from creation until their container is stopped. */
  get running(): number {
    let n = 0;
    for (const run of this.runners.values()) if (run.holdsSlot) n++;
    return n;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Slots a poll may still fill: capacity less running and locally queued jobs; none while draining. */
  freeSlots(): number {
    if (this.draining || this.stopping) return 0;
    const free = Math.max(0, this.options.maxConcurrentJobs - this.running - this.queue.length);
    return this.options.maxJobs === undefined ? free : Math.min(free, Math.max(0, this.options.maxJobs - this.taken));
  }

  /** One-shot: every job this run may take has been taken. */
  get allTaken(): boolean {
    return this.options.maxJobs !== undefined && this.taken >= this.options.maxJobs;
  }

  /** Nothing running and nothing queued. */
  get idle(): boolean {
    return this.queue.length === 0 && this.running === 0;
  }

  /** The runner of a job, when this agent tracks one. */
  get(id: string): JobRunner | undefined {
    return this.runners.get(id);
  }

  /** The runner of a job, made when there is none yet (after a restart, before reconciling reaches it). */
  track(id: string): JobRunner {
    let run = this.runners.get(id);
    if (!run) {
      const made: JobRunner = new JobRunner(
        id,
        this.ctx,
        this.hooksFor(() => made),
      );
      this.runners.set(id, made);
      run = made;
    }
    return run;
  }

  /** Hands an engine event to the runner of its job; events of jobs this agent does not track are ignored. */
  onEngineEvent(event: ExecutorEvent): void {
    const run = this.runners.get(event.jobId);
    if (!run) return;
    if (event.type === 'oom') run.markOomKilled();
    else void run.exited(event.containerId, event.exitCode);
  }

  /** Jobs start only while the engine answers. */
  setEngineUp(up: boolean): void {
    this.engineUp = up;
  }

  /** Validates, stores and queues each entry of a poll reply; returns how many new jobs were queued. */
  receive(entries: unknown[]): number {
    let queued = 0;
    for (const entry of entries) {
      try {
        if (this.receiveOne(entry)) queued++;
      } catch (err) {
        this.log.error({ reason: describeHttpError(err) }, 'could not record a received job; it was not run');
      }
    }
    this.pump();
    return queued;
  }

  /**
   * False when `key` was seen before: a control server may offer the same job on every poll (hand-out
   * is at-least-once), and that must cost one log line, not one per poll. Bounded: it forgets at 10,000.
   */
  private firstTime(key: string): boolean {
    if (this.repeats.has(key)) return false;
    if (this.repeats.size >= 10_000) this.repeats.clear();
    this.repeats.add(key);
    return true;
  }

  /** True when the entry became a queued job. */
  private receiveOne(entry: unknown): boolean {
    if (this.allTaken) {
      this.log.warn({ maxJobs: this.options.maxJobs }, 'ignored a job sent beyond --max-jobs (not stored, not reported)');
      return false;
    }
    const checked = validateJob(entry);
    const result = checked.ok ? this.applyPolicy(checked.job) : checked;
    if (!result.ok) {
      // shownId: an id with a lone surrogate cannot be stored or echoed, but is logged escaped.
      if (this.firstTime(`invalid ${result.shownId ?? ''} ${result.reason}`))
        this.log.warn({ jobId: result.shownId, reason: result.reason }, 'rejected an invalid job from the control server');
      this.ctx.metrics?.jobsEnded.inc({ outcome: 'invalid' });
      const report = this.rejection(result);
      if (!report) return false;
      const remembered = this.store.rememberRejected(report.key, report.delivery);
      if (remembered) this.taken++;
      if (remembered?.delivery) this.ctx.deliver(remembered.delivery);
      return false;
    }
    const { job } = result;
    // The store never sees a secret's value: the runner's context holds it in memory (secrets.ts).
    if (!this.store.admit(withoutSecretValues(job), newJobSecret(), containerNameFor(this.ctx.agentId, job.id))) {
      if (this.firstTime(`known ${job.id}`)) this.log.info({ jobId: job.id }, 'job id already known to this agent; not running it again (logged once)');
      return false;
    }
    this.ctx.secrets?.hold(job);
    this.taken++;
    this.queue.push(this.track(job.id));
    return true;
  }

  /**
   * How an invalid job is remembered (so it is never run, and reported once) and the report its callback gets,
   * when it has a usable `callbackUrl`. An id that holds a lone surrogate cannot be stored or sent as it is: it
   * is remembered under its encoded form (`ill-formed:%ED%A0%80`; only a control server that also sends a job
   * whose id is spelled exactly so would see that one refused as known), and reported with that encoding in
   * `x-foreman-job-id` and the id itself in the body. Undefined when there is nothing to remember it by.
   */
  private rejection(result: Extract<JobValidation, { ok: false }>): { key: string; delivery: NewDelivery | undefined } | undefined {
    const id = result.id ?? result.illFormedId;
    if (id === undefined) return undefined;
    const illFormed = result.id === undefined;
    const delivery = result.callbackUrl
      ? endingReport(
          { jobId: id, agentId: this.ctx.agentId, callbackUrl: result.callbackUrl },
          { outcome: 'invalid', reason: 'validation', message: `the job failed validation: ${result.reason}`, echoId: illFormed },
        )
      : undefined;
    // Without a report there is nothing to keep for an id that cannot be stored: it is refused each time it comes.
    if (illFormed && !delivery) return undefined;
    return { key: illFormed ? `ill-formed:${encodeJobId(id)}` : id, delivery };
  }

  /** A valid job the policy refuses is rejected like an invalid one: reported, never stored to run, nothing pulled. */
  private applyPolicy(job: JobSpec): JobValidation {
    const refusal = this.options.policy?.(job) ?? this.ctx.secrets?.refuses(job);
    if (refusal === undefined) return { ok: true, job };
    return { ok: false, reason: refusal, id: job.id, callbackUrl: job.callbackUrl, shownId: job.id };
  }

  /**
   * The control server's cancels (`x-foreman-cancel`): each is stored before it is acted on, so an agent
   * killed mid-cancel finishes it after its restart. Ids of jobs that ended, or that this agent never had,
   * are ignored, and so is a cancel already under way.
   */
  cancel(ids: readonly string[]): void {
    for (const id of ids) {
      let job;
      try {
        job = this.store.requestCancel(id);
      } catch (err) {
        // Not stored, not acted on: the server repeats the cancel on its next reply.
        this.log.error({ jobId: id, reason: describeHttpError(err) }, 'could not record a cancel; waiting for it to be sent again');
        continue;
      }
      if (job) void this.track(id).cancel();
    }
  }

  /** The runner of a job the store still tracks (made after a restart before reconciling reaches it); undefined for others. */
  runnerFor(id: string): JobRunner | undefined {
    const known = this.runners.get(id);
    if (known) return known;
    const job = this.store.get(id);
    return job && job.state !== 'removed' ? this.track(id) : undefined;
  }

  /** A drain begins: no more launches, and polls ask for nothing; running jobs go on. */
  startDrain(): void {
    this.draining = true;
  }

  /** Resolves once no job holds a slot, or when `signal` aborts. */
  waitUntilNoneRunning(signal: AbortSignal): Promise<void> {
    return this.running === 0 ? Promise.resolve() : this.noneRunning.wait(signal);
  }

  private requeue(run: JobRunner, where: 'front' | 'back'): void {
    if (this.queue.includes(run)) return;
    if (where === 'back') {
      this.queue.push(run);
      return;
    }
    this.queue.unshift(run);
    // The store refused a write: try again in a moment rather than at once.
    this.retryTimer ??= this.ctx.clock.after(this.options.launchRetryMs, () => {
      this.retryTimer = undefined;
      this.pump();
    });
  }

  /** Starts queued jobs while slots are free and the engine answers. */
  pump(): void {
    let running = this.running;
    while (!this.stopping && !this.draining && this.engineUp && this.queue.length > 0 && running < this.options.maxConcurrentJobs && !this.retryTimer) {
      const run = this.queue.shift();
      if (!run) break;
      running++;
      void run.launch();
    }
    // Each launch took its slot at once, so `running` is the count now.
    if (running === 0) this.noneRunning.wakeAll();
  }

  /**
   * First stage of shutdown: no more launches; every job's in-flight engine call is cancelled and
   * the job ended (`agent-shutdown`) or, when it completed already, its container stopped.
   */
  async shutdown(): Promise<void> {
    this.stopLaunching();
    this.queue.length = 0;
    await Promise.allSettled([...this.runners.values()].map((run) => run.shutdown()));
  }

  /**
   * First stage of shutdown with `detach_on_terminate`: jobs are left as they are, stored, for the
   * next agent on this data_dir to re-adopt (queued ones stay queued); only launches in flight are
   * cancelled, completed containers finish stopping, and cancels under way are finished.
   */
  async detach(): Promise<void> {
    this.stopLaunching();
    await Promise.allSettled([...this.runners.values()].map((run) => run.detach()));
  }

  private stopLaunching(): void {
    this.stopping = true;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
  }

  /** Removes the containers of stopped jobs now, instead of after `job_removal_timeout`. */
  async removeStopped(): Promise<void> {
    await Promise.allSettled([...this.runners.values()].map((run) => run.removeNow()));
  }
}
