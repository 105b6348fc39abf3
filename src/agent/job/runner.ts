import { endingReport } from '../../callbacks/messages.ts';
import type { ContainerStatus } from '../../executor/executor.ts';
import {
  onCancel,
  onContainerExited,
  onContainerMissing,
  onDetach,
  onLaunchFailed,
  onShutdown,
  onStall,
  onTimeout,
  type Decision,
  type JobState,
} from '../../jobs/state.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import { cancelDetails, exitDetails, launchFailedDetails, missingDetails, shutdownDetails, stallDetails, timeoutDetails, type DetailsFor } from './endings.ts';
import { JobContainer, secretsOf } from './container.ts';
import { launch, startContainer, type Launching } from './launch.ts';
import { readopt, READOPTED_NOTE, type Readopting } from './readopt.ts';
import { JobClocks } from './clocks.ts';
import { reportedUsage, UsageMeter } from './usage.ts';
import type { RunnerContext, RunnerHooks } from './context.ts';
import type { JobLog } from './live-log.ts';
import { LaunchAbort } from './abort.ts';
import { recordFetch, recordRedactions, recordUpdate, type ContainerUpdate, type FetchResult, type RedactResult, type UpdateResult } from './reports.ts';
import { traced, type JobTrace } from '../../tracing/job-trace.ts';
import { traceOf } from './trace.ts';

export { RunnerAbort, type RunnerAbortReason } from './abort.ts';
export type { ContainerUpdate, FetchResult, UpdateResult } from './reports.ts';

/**
 * Owns one job from the moment it is queued until its container is removed: its cancel signal,
 * its timers (launch and completion timeout, stall, cancel kill, removal), its OOM flag, its slot,
 * and an ordered chain of steps so that two steps of one job never interleave. Every decision about
 * what an event means comes from `src/jobs/state.ts`; this class carries it out against the engine
 * and the store.
 */
export class JobRunner {
  readonly id: string;
  private readonly ctx: RunnerContext;
  private readonly hooks: RunnerHooks;
  /** Aborts the launch calls in flight, with the reason (`RunnerAbort`): a launch timeout, a cancel, the shutdown. */
  private readonly abort = new LaunchAbort();
  private readonly clocks: JobClocks;
  /** Samples what its container uses, for the final report. */
  private readonly meter: UsageMeter;
  private readonly container: JobContainer;
  /** Its live log, read from the container while it runs (jobs with a `logsUrl`). */
  private readonly logs: JobLog | undefined;
  private chain: Promise<void> = Promise.resolve();
  private holding = false;
  private stopping = false;
  private oomKilled = false;
  /** Its trace, when tracing is on: from its launch (or its re-adoption) on. */
  private trace: JobTrace | undefined;

  constructor(id: string, ctx: RunnerContext, hooks: RunnerHooks) {
    this.id = id;
    this.ctx = ctx;
    this.hooks = hooks;
    this.clocks = new JobClocks(ctx.clock, ctx.options, {
      launchTimedOut: (timeoutMs, own) => {
        this.abort.abort('launch-timeout');
        const details = timeoutDetails('the image pull and container start did not finish', timeoutMs, own);
        void this.step(() => this.act(onTimeout, details, 'job did not start in time; abandoning it'));
      },
      completionTimedOut: (timeoutMs, own) => {
        const details = timeoutDetails('the job did not report completed', timeoutMs, own);
        void this.step(() => this.act(onTimeout, details, 'job did not complete in time; stopping it'));
      },
      stalled: (stallMs) => void this.step(() => this.act(onStall, stallDetails(stallMs), 'job sent no update in time; stopping it')),
      graceOver: () => void this.container.killAfterGrace(this.ctx.store.get(this.id), this.ctx.options.cancelGraceMs),
      removalDue: (attempt) =>
        void this.step(async () => {
          const ok = await this.removeContainer();
          const job = this.ctx.store.get(this.id);
          if (!ok && !this.stopping && job) this.clocks.armRemoval(job, attempt + 1);
        }),
    });
    this.container = new JobContainer(id, ctx);
    this.meter = new UsageMeter(id, ctx, ctx.options.usageIntervalMs);
    this.logs = ctx.logs?.forJob(id);
  }

  /** True from the launch (or re-adoption) until the container is stopped. */
  get holdsSlot(): boolean {
    return this.holding;
  }

  // ---- events from the owner -----------------------------------------------------------

  /** The scheduler gave this job a slot: pull, create and start. */
  launch(): Promise<void> {
    this.holding = true;
    return this.step(() => launch(this.launching()));
  }

  /** The engine reported the container's exit. */
  exited(containerId: string, exitCode: number | null): Promise<void> {
    return this.step(() => this.handleExit(containerId, exitCode, false));
  }

  /** The engine reported an OOM kill; the exit follows. */
  markOomKilled(): void {
    this.oomKilled = true;
  }

  /** The control server's cancel is stored: drop the job, or stop its container with a grace period. */
  cancel(): Promise<void> {
    this.clocks.stopRunning();
    this.abort.abort('cancel');
    return this.step(() => this.act(onCancel, cancelDetails()));
  }

  /** Brings this job in line with what the engine holds (`listed`: its container in the listing, if any). */
  reconcile(listed: ContainerStatus | undefined): Promise<void> {
    return this.step(() => readopt(this.readopting(), listed));
  }

  /** The agent stops: cancel what is in flight, end the job (`agent-shutdown`), stop its container. */
  shutdown(): Promise<void> {
    this.leave();
    return this.step(() => this.act((s) => onShutdown(s, this.canceling()), shutdownDetails()));
  }

  /** The agent stops with `detach_on_terminate`: leave the job as it is for the next agent. */
  detach(): Promise<void> {
    this.leave();
    // The next agent samples it from where it finds it.
    void this.meter.finish(false);
    return this.step(() => this.act((s) => onDetach(s, this.canceling()), shutdownDetails()));
  }

  /** Removes a stopped job's container now (at shutdown, when configured). */
  removeNow(): Promise<void> {
    return this.step(async () => void (await this.removeContainer()));
  }

  // ---- the container's own reports, through the job API ---------------------------------
  // Not queued behind the steps: a container's request is answered at once. Each is one store
  // write that checks the state inside it, so a timeout or an exit cannot slip in between.

  /** The container fetched its job: the first fetch marks it running. */
  containerFetched(): Promise<FetchResult> {
    return recordFetch(this.ctx.store, this.id);
  }

  /**
   * The container sent a status update: stored with its delivery in one group-committed write, then
   * queued for the callback. The stall clock starts again; on `completed` the container is stopped.
   */
  async containerUpdated(update: ContainerUpdate): Promise<UpdateResult> {
    const at = this.ctx.clock.now();
    // The job's last word: what its container used, sampled while it still runs and waits for this answer.
    const job = update.status === 'completed' ? this.ctx.store.get(this.id) : undefined;
    const final = job && (job.state === 'started' || job.state === 'running');
    // Its container id from the store: a short job can report before the launch saw its container run.
    if (final) await this.meter.finish(true, job.containerId);
    const usage = final ? reportedUsage(this.meter, job, 'succeeded', this.ctx) : undefined;
    const result = await recordUpdate(this.ctx, this.id, update, at, usage);
    if (result.kind !== 'stored') return result;
    this.ctx.deliver(result.delivery);
    this.clocks.touched(at);
    if (result.outcome) {
      this.trace?.ended(result.outcome);
      this.ctx.metrics?.jobsEnded.inc({ outcome: result.outcome });
      this.clocks.stopRunning();
      void this.step(() => this.stopAfterCompletion());
    }
    return { kind: 'accepted' };
  }

  /** The container asked to hide more values in its logs and reports, from now on. */
  containerRedacts(values: readonly string[]): Promise<RedactResult> {
    return recordRedactions(this.ctx, this.id, values, (forms) => this.logs?.redactMore(forms));
  }

  // ---- steps -----------------------------------------------------------------------------

  /** Runs `work` after every earlier step of this job. Failures are logged, never thrown away silently. */
  private step(work: () => Promise<void>): Promise<void> {
    const next = this.chain.then(work).catch((err: unknown) => {
      this.ctx.log.error({ jobId: this.id, reason: describeHttpError(err) }, 'job lifecycle step failed');
    });
    this.chain = next;
    return next;
  }

  private canceling(): boolean {
    return (this.ctx.store.get(this.id)?.cancelRequestedAt ?? null) !== null;
  }

  /** No more timers or removals: the agent is going away. The kill of a cancel stays armed. */
  private leave(): void {
    this.stopping = true;
    this.clocks.leave();
    this.abort.abort('shutdown');
  }

  /** The launch's view of this runner (src/agent/job/launch.ts). */
  private launching(): Launching {
    return {
      id: this.id,
      ctx: this.ctx,
      abort: this.abort,
      clocks: this.clocks,
      meter: this.meter,
      logs: this.logs,
      trace: (job) => (job ? (this.trace ??= traceOf(this.ctx, job)) : this.trace),
      stopping: () => this.stopping,
      release: (requeue) => {
        if (requeue) this.hooks.requeue('front');
        this.release();
      },
      failed: (err) => this.failLaunch(err),
    };
  }

  private async failLaunch(err: unknown): Promise<void> {
    const { failed, details } = launchFailedDetails(err, secretsOf(this.ctx.store.get(this.id), this.ctx.options.env));
    await this.act((state) => onLaunchFailed(state, failed), details, 'job could not start');
  }

  private async handleExit(containerId: string, exitCode: number | null, oomKilled: boolean): Promise<void> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.containerId !== containerId) return;
    const running = job.state === 'started' || job.state === 'running';
    const oom = running && (oomKilled || this.oomKilled || (await this.container.oomKilled(containerId)));
    this.oomKilled = false;
    await this.act((state) => onContainerExited(state, oom, job.cancelRequestedAt !== null), exitDetails(exitCode));
  }

  private async stopAfterCompletion(): Promise<void> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.state !== 'completed') return;
    if (job.containerId) await this.container.stop(job.containerId, this.ctx.options.stopGraceMs);
    if (this.ctx.store.get(this.id)?.state === 'completed') this.markStopped(this.ctx.store.transition(this.id, 'stopped'));
  }

  /** Re-adoption's steps on this runner's parts (src/agent/job/readopt.ts decides which). */
  private readopting(): Readopting {
    return {
      id: this.id,
      ctx: this.ctx,
      continueTrace: (job) => {
        if (job.trace) this.trace ??= traceOf(this.ctx, job);
      },
      secretsLost: (job, canceling) => {
        if (!this.ctx.secrets?.lost(job)) return undefined;
        // Its output from here on cannot be read: the values to hide in it went with the last run's memory.
        this.logs?.lost();
        return this.act((s) => onShutdown(s, canceling), shutdownDetails(true));
      },
      requeue: () => this.hooks.requeue('back'),
      cancel: () => this.act(onCancel, cancelDetails()),
      missing: (canceling) => {
        this.logs?.lost();
        return this.act((s) => onContainerMissing(s, canceling), missingDetails());
      },
      resumeRemoval: (job) => {
        this.release();
        this.logs?.follow(job);
        this.clocks.armRemoval(job);
      },
      hold: () => void (this.holding = true),
      start: (containerId) => startContainer(this.launching(), containerId),
      follow: (job, container) => {
        this.logs?.follow(job);
        // Sampled again from here on: CPU time counts from the container's start, the process peak only from now.
        if (container.running) this.meter.start(container.id, READOPTED_NOTE);
      },
      exited: (containerId, exitCode, oomKilled) => this.handleExit(containerId, exitCode, oomKilled),
      finishStop: () => this.stopAfterCompletion(),
      adopt: (job) => {
        if (!this.stopping) this.clocks.armRunning(job);
      },
    };
  }

  /**
   * Carries out what `decide` says about the job's current state. An ending gathers the log tail
   * first, so the decision is taken again afterwards: the container may have completed meanwhile.
   * `warning`, when given, is logged when the job ends.
   */
  private async act(decide: (state: JobState) => Decision, details: DetailsFor, warning?: string): Promise<void> {
    const { store } = this.ctx;
    const job = store.get(this.id);
    if (!job) return;
    const decision = decide(job.state);
    switch (decision.kind) {
      case 'ignore':
        return;
      case 'move': {
        const moved = store.transition(this.id, decision.to);
        if (decision.to === 'stopped') this.markStopped(moved);
        return;
      }
      case 'finish-stop':
        return this.stopAfterCompletion();
      case 'requeue':
        if (job.state !== 'pending') store.transition(this.id, 'pending');
        this.hooks.requeue('back');
        return this.release();
      case 'forget': {
        this.release();
        const stopped = job.state === 'stopped' ? job : store.transition(this.id, 'stopped');
        this.ctx.hooks?.jobStopped(stopped);
        store.transition(this.id, 'removed');
        this.trace?.finished();
        return this.hooks.finished();
      }
      case 'signal-stop':
        return this.container.signalStop(job, this.ctx.options.cancelGraceMs, this.ctx.clock.now(), (ms) => this.clocks.armKill(ms));
      case 'end': {
        const ending = details(decision.outcome, job.state);
        if (warning) this.ctx.log.warn({ jobId: this.id, outcome: decision.outcome, reason: ending.message }, warning);
        return this.end(decide, ending);
      }
    }
  }

  /** Queues the report and moves the job on in one write, then stops the container. */
  private async end(decide: (state: JobState) => Decision, details: ReturnType<DetailsFor>): Promise<void> {
    const { store, metrics } = this.ctx;
    this.clocks.stopRunning();
    const before = store.get(this.id);
    // The last lines and the last sample of its use, while the container (if it still runs) is not yet stopped.
    const [logs] = await Promise.all([
      details.includeLogs && before?.containerId
        ? this.container.tailLogs(before.containerId, (lines) => this.logs?.hide(lines, before.secret) ?? lines)
        : undefined,
      this.meter.finish(true, before?.containerId),
    ]);
    const job = store.get(this.id);
    if (!job) return;
    const decision = decide(job.state);
    // The container reported completed while we gathered its logs.
    if (decision.kind !== 'end') return;
    const { includeLogs: _, ...ending } = details;
    const report = endingReport(
      { jobId: this.id, agentId: this.ctx.agentId, callbackUrl: job.spec.callbackUrl },
      { ...ending, outcome: decision.outcome, logs, usage: reportedUsage(this.meter, job, decision.outcome, this.ctx) },
    );
    this.trace ??= traceOf(this.ctx, job);
    const recorded = store.recordUpdate(this.id, report, decision.to, { outcome: decision.outcome, exitCode: ending.exitCode });
    this.trace?.ended(decision.outcome, ending);
    this.ctx.deliver(recorded.delivery);
    metrics?.jobsEnded.inc({ outcome: decision.outcome });
    if (job.containerId) await this.container.stop(job.containerId, this.ctx.options.stopGraceMs);
    if (decision.to === 'stopped') this.markStopped(recorded.job);
    else {
      this.trace?.finished();
      this.hooks.finished();
    }
  }

  /** The container is stopped: free the slot, read its output to the end (also if it never ran), schedule removal. */
  private markStopped(job: JobRecord): void {
    this.ctx.hooks?.jobStopped(job);
    this.clocks.stopped();
    if (job.stoppedAt !== null) this.trace?.stopped(job.stoppedAt);
    this.release();
    this.logs?.follow(job);
    // After the follow: a log first read now still hides the job's values.
    this.ctx.secrets?.release(job.id);
    if (job.startedAt !== null && job.stoppedAt !== null) {
      this.ctx.metrics?.runTime.observe({ outcome: job.outcome ?? 'unknown' }, Math.max(0, job.stoppedAt - job.startedAt) / 1000);
    }
    if (!this.stopping) this.clocks.armRemoval(job);
  }

  private release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.hooks.slotFreed();
  }

  /** Removes a stopped job's container (by name when its id was never learnt); true when done. */
  private async removeContainer(): Promise<boolean> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.state !== 'stopped') return true;
    await this.logs?.followed();
    const target = job.containerId ?? job.containerName;
    const removed = await traced(this.trace, 'remove', { 'container.id': target }, () => this.container.remove(target));
    if (!removed) return false;
    this.ctx.store.transition(this.id, 'removed');
    this.trace?.finished();
    this.hooks.finished();
    void this.ctx.images.collect();
    return true;
  }
}
