/**
 * `[hooks]`: the operator's commands on the agent's host around each job. `pre_job` runs before the image is
 * pulled and a failure ends the job `hook-failed`; `post_job` runs once for every job that was launched, after
 * its container stopped, whatever the ending, and its start and end are stored so that one the agent did not
 * see end (a crash, a kill -9) runs again at the next start. A job's final callback waits for it (`settled`)
 * and carries its result (`stamp`), so nothing follows the final update and the hook never changes an outcome.
 */
import type { Logger } from 'pino';
import { withPostJobHook } from '../../callbacks/messages.ts';
import type { Delivery, JobRecord, JobStore } from '../../jobs/store.ts';
import { encodeHookResult, parseHookResult } from '../../protocol/wire.ts';
import type { Clock } from '../../shared/clock.ts';
import { describeHookRun, hookSucceeded, runHook, type HookRun } from './hook-process.ts';

export interface HookOptions {
  readonly preJob: readonly string[];
  readonly postJob: readonly string[];
  readonly timeoutMs: number;
  readonly agentId: string;
  /** How long a final update waits for a job's post_job hook at most: its container's stop, then the hook's timeout. */
  readonly settleWaitMs: number;
}

export interface HookDeps {
  readonly store: JobStore;
  readonly log: Logger;
  readonly clock: Clock;
}

/** A pre_job hook that failed or timed out: the launch fails with it, and the job ends `hook-failed`. */
export class PreJobHookError extends Error {
  readonly tail: readonly string[];
  constructor(run: HookRun) {
    super(`the pre_job hook ${describeHookRun(run)}`);
    this.name = 'PreJobHookError';
    this.tail = run.tail;
  }
}

/** The variables every hook gets. */
function jobEnv(job: JobRecord, agentId: string): Record<string, string> {
  return { FOREMAN_JOB_ID: job.id, FOREMAN_JOB_IMAGE: job.spec.image, FOREMAN_AGENT_ID: agentId };
}

export class JobHooks {
  private readonly deps: HookDeps;
  private readonly options: HookOptions;
  /** Post hooks running in this process, by job id: one run per job at a time. */
  private readonly running = new Map<string, Promise<void>>();
  /** Waiters of `settled`, woken when a job's post hook ends. */
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly abort = new AbortController();

  constructor(deps: HookDeps, options: HookOptions) {
    this.deps = deps;
    this.options = options;
  }

  /** Whether a launched job owes a post_job hook (stored with its launch, so a restart knows). */
  get postJobConfigured(): boolean {
    return this.options.postJob.length > 0;
  }

  /** Runs pre_job for a job being launched; throws `PreJobHookError` when it fails. `signal`: the launch's abort. */
  async preJob(job: JobRecord, signal: AbortSignal): Promise<void> {
    if (this.options.preJob.length === 0) return;
    const { log, clock } = this.deps;
    const run = await runHook(this.options.preJob, jobEnv(job, this.options.agentId), this.options.timeoutMs, clock, signal);
    if (signal.aborted) return;
    const fields = { jobId: job.id, hook: 'pre_job', exitCode: run.exitCode, durationMs: run.durationMs, timedOut: run.timedOut };
    if (hookSucceeded(run)) {
      log.info(fields, 'pre_job hook done');
      return;
    }
    log.warn({ ...fields, reason: describeHookRun(run), tail: run.tail }, 'pre_job hook failed; the job ends hook-failed');
    throw new PreJobHookError(run);
  }

  /** The job is stopped (its container, if any, no longer runs): its post_job hook runs now, if it owes one. */
  jobStopped(job: JobRecord): void {
    if (job.postHookDue && job.postHookEndedAt === null) this.runPost(job.id);
  }

  /** At start: every hook owed by a job that ended before (never run, or interrupted). */
  resume(): void {
    if (!this.postJobConfigured) return;
    for (const job of this.deps.store.postHooksOwed()) {
      this.deps.log.info({ jobId: job.id, interrupted: job.postHookStartedAt !== null }, 'running the post_job hook a job ended before this start still owes');
      this.runPost(job.id);
    }
  }

  /** Resolves once the job's post hook has ended or it owes none, within `settleWaitMs`, or when `signal` aborts. */
  async settled(jobId: string, signal: AbortSignal): Promise<void> {
    if (!this.postJobConfigured) return;
    const deadline = this.deps.clock.now() + this.options.settleWaitMs;
    for (;;) {
      const job = this.deps.store.get(jobId);
      if (!job?.postHookDue || job.postHookEndedAt !== null) return;
      const left = deadline - this.deps.clock.now();
      if (left <= 0 || signal.aborted) return;
      await this.changed(jobId, left, signal);
    }
  }

  /** A final delivery as it leaves: with the post hook's result, when the job has one. */
  stamp(delivery: Delivery): Delivery {
    const result = parseHookResult(this.deps.store.get(delivery.jobId)?.postHookResult ?? undefined);
    return result ? withPostJobHook(delivery, result) : delivery;
  }

  /** Kills the hooks still running (their end is not stored, so they run again at the next start). Safe twice. */
  async close(): Promise<void> {
    this.abort.abort(new Error('agent stopping'));
    await Promise.allSettled([...this.running.values()]);
  }

  private runPost(jobId: string): void {
    if (!this.postJobConfigured || this.running.has(jobId) || this.abort.signal.aborted) return;
    const run = this.post(jobId).finally(() => {
      this.running.delete(jobId);
      for (const wake of this.listeners.get(jobId) ?? []) wake();
    });
    this.running.set(jobId, run);
  }

  private async post(jobId: string): Promise<void> {
    const { store, log, clock } = this.deps;
    const signal = this.abort.signal;
    try {
      const job = store.get(jobId);
      if (!job) return;
      store.recordPostHook(jobId, clock.now());
      const env = {
        ...jobEnv(job, this.options.agentId),
        FOREMAN_JOB_OUTCOME: job.outcome ?? '',
        FOREMAN_JOB_EXIT_CODE: job.exitCode === null ? '' : String(job.exitCode),
      };
      const run = await runHook(this.options.postJob, env, this.options.timeoutMs, clock, signal);
      // Killed because the agent stops: not ended, so it runs again at the next start.
      if (signal.aborted) return;
      store.recordPostHook(jobId, clock.now(), encodeHookResult(run));
      const fields = { jobId, hook: 'post_job', outcome: job.outcome, exitCode: run.exitCode, durationMs: run.durationMs, timedOut: run.timedOut };
      if (hookSucceeded(run)) log.info(fields, 'post_job hook done');
      else log.warn({ ...fields, reason: describeHookRun(run), tail: run.tail }, 'post_job hook failed; the job keeps its outcome');
    } catch (err) {
      log.error({ jobId, reason: err instanceof Error ? err.message : String(err) }, 'could not record the post_job hook; it runs again at the next start');
    }
  }

  /** Resolves when the job's post hook ends, after `ms`, or when `signal` aborts. */
  private changed(jobId: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let set = this.listeners.get(jobId);
      if (!set) this.listeners.set(jobId, (set = new Set()));
      const listeners = set;
      const done = (): void => {
        timer.cancel();
        signal.removeEventListener('abort', done);
        listeners.delete(done);
        if (listeners.size === 0) this.listeners.delete(jobId);
        resolve();
      };
      const timer = this.deps.clock.after(ms, done, { unref: true });
      listeners.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
