import type { Logger } from 'pino';
import { endingReport } from '../callbacks/messages.ts';
import type { ExecutorEvent } from '../executor/executor.ts';
import type { JobStore } from '../jobs/store.ts';
import { describeHttpError } from '../shared/backoff.ts';
import type { Timer } from '../shared/clock.ts';
import { validateJob } from '../shared/job-spec.ts';
import { Waiters } from '../shared/waiters.ts';
import type { JobRunContext, JobRunHooks } from './job-run-context.ts';
import { JobRun } from './job-run.ts';
import { containerNameFor, newJobSecret } from './naming.ts';

export interface SchedulerOptions {
  readonly maxConcurrentJobs: number;
  /** Wait before starting jobs again after the store refused a start. */
  readonly launchRetryMs: number;
}

/**
 * Receives jobs, keeps the local queue, and holds one `JobRun` per job this agent still tracks.
 * Slots are counted from the runners (those holding one), never kept as a second counter.
 */
export class Scheduler {
  private readonly ctx: JobRunContext;
  private readonly options: SchedulerOptions;
  private readonly runners = new Map<string, JobRun>();
  /** Jobs waiting for a slot, in arrival order. */
  private readonly queue: JobRun[] = [];
  private readonly hooks: JobRunHooks;
  private readonly slotWaiters = new Waiters();
  private engineUp = false;
  private stopping = false;
  private retryTimer: Timer | undefined;

  constructor(ctx: JobRunContext, options: SchedulerOptions) {
    this.ctx = ctx;
    this.options = options;
    this.hooks = {
      slotFreed: () => this.pump(),
      requeue: (run, where) => this.requeue(run, where),
      finished: (run) => {
        if (this.runners.get(run.id) === run) this.runners.delete(run.id);
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

  /** Slots a poll may still fill: capacity less running and locally queued jobs. */
  freeSlots(): number {
    return Math.max(0, this.options.maxConcurrentJobs - this.running - this.queue.length);
  }

  /** Resolves once a slot is free, or when `signal` aborts. */
  waitForSlot(signal: AbortSignal): Promise<void> {
    return this.freeSlots() > 0 ? Promise.resolve() : this.slotWaiters.wait(signal);
  }

  /** The runner of a job, when this agent tracks one. */
  get(id: string): JobRun | undefined {
    return this.runners.get(id);
  }

  /** The runner of a job, made when there is none yet (after a restart, before reconciling reaches it). */
  track(id: string): JobRun {
    let run = this.runners.get(id);
    if (!run) {
      run = new JobRun(id, this.ctx, this.hooks);
      this.runners.set(id, run);
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

  /** Validates, stores and queues each entry of a poll reply. */
  receive(entries: unknown[]): void {
    for (const entry of entries) {
      try {
        this.receiveOne(entry);
      } catch (err) {
        this.log.error({ reason: describeHttpError(err) }, 'could not record a received job; it was not run');
      }
    }
    this.pump();
  }

  private receiveOne(entry: unknown): void {
    const result = validateJob(entry);
    if (!result.ok) {
      this.log.warn({ jobId: result.id, reason: result.reason }, 'rejected an invalid job from the control server');
      this.ctx.metrics?.jobsEnded.inc({ outcome: 'invalid' });
      if (result.id === undefined) return;
      const report = result.callbackUrl
        ? endingReport(
            { jobId: result.id, agentId: this.ctx.agentId, callbackUrl: result.callbackUrl },
            { outcome: 'invalid', reason: 'validation', message: `the job failed validation: ${result.reason}` },
          )
        : undefined;
      const remembered = this.store.rememberRejected(result.id, report);
      if (remembered?.delivery) this.ctx.deliver(remembered.delivery);
      return;
    }
    const { job } = result;
    if (!this.store.admit(job, newJobSecret(), containerNameFor(this.ctx.agentId, job.id))) {
      this.log.info({ jobId: job.id }, 'job id already known to this agent; not running it again');
      return;
    }
    this.queue.push(this.track(job.id));
  }

  private requeue(run: JobRun, where: 'front' | 'back'): void {
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
    while (!this.stopping && this.engineUp && this.queue.length > 0 && running < this.options.maxConcurrentJobs && !this.retryTimer) {
      const run = this.queue.shift();
      if (!run) break;
      running++;
      void run.launch();
    }
    this.ctx.metrics?.setJobs(this.running, this.queue.length);
    if (this.freeSlots() > 0) this.slotWaiters.wakeAll();
  }

  /**
   * First stage of shutdown: no more launches; every job's in-flight engine call is cancelled and
   * the job ended (`agent-shutdown`) or, when it completed already, its container stopped.
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.queue.length = 0;
    await Promise.allSettled([...this.runners.values()].map((run) => run.shutdown()));
  }

  /** Removes the containers of stopped jobs now, instead of after `job_removal_timeout`. */
  async removeStopped(): Promise<void> {
    await Promise.allSettled([...this.runners.values()].map((run) => run.removeNow()));
  }

  /** Resolves once every runner's queued steps have run. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.runners.values()].map((run) => run.idle()));
  }
}
