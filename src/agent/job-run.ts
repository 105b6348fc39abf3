import { endingReport, trimLogTail, REPORT_LOG_LINES, type Ending } from '../callbacks/messages.ts';
import { ExecutorJobError, LABEL_JOB, type ContainerStatus } from '../executor/executor.ts';
import {
  hasEnded,
  onContainerExited,
  onContainerMissing,
  onLaunchFailed,
  onShutdown,
  onTimeout,
  type Decision,
  type JobState,
  type Outcome,
} from '../jobs/state.ts';
import type { JobRecord } from '../jobs/store.ts';
import { backoffDelay, describeHttpError } from '../shared/backoff.ts';
import type { Timer } from '../shared/clock.ts';
import type { JobRunContext, JobRunHooks } from './job-run-context.ts';

type Details = Omit<Ending, 'outcome' | 'logs'> & { readonly includeLogs?: boolean };

/**
 * Owns one job from the moment it is queued until its container is removed: its cancel signal,
 * its timers (launch and completion timeout, removal), its OOM flag, its slot, and an ordered chain
 * of steps so that two steps of one job never interleave. Every decision about what an event
 * means comes from `src/jobs/state.ts`; this class carries it out against the engine and the store.
 */
export class JobRun {
  readonly id: string;
  private readonly ctx: JobRunContext;
  private readonly hooks: JobRunHooks;
  /** Aborts the launch calls in flight: on a launch timeout and at shutdown. */
  private readonly cancel = new AbortController();
  private chain: Promise<void> = Promise.resolve();
  private holding = false;
  private stopping = false;
  private oomKilled = false;
  private launchTimer: Timer | undefined;
  private completionTimer: Timer | undefined;
  private removalTimer: Timer | undefined;

  constructor(id: string, ctx: JobRunContext, hooks: JobRunHooks) {
    this.id = id;
    this.ctx = ctx;
    this.hooks = hooks;
  }

  /** True from the launch (or re-adoption) until the container is stopped. */
  get holdsSlot(): boolean {
    return this.holding;
  }

  /** Resolves once every step queued so far has run. */
  idle(): Promise<void> {
    return this.chain;
  }

  // ---- events from the owner -----------------------------------------------------------

  /** The scheduler gave this job a slot: pull, create and start. */
  launch(): Promise<void> {
    this.holding = true;
    return this.step(() => this.runLaunch());
  }

  /** The engine reported the container's exit. */
  exited(containerId: string, exitCode: number | null): Promise<void> {
    return this.step(() => this.handleExit(containerId, exitCode, false));
  }

  /** The engine reported an OOM kill; the exit follows. */
  markOomKilled(): void {
    this.oomKilled = true;
  }

  /** The container's `completed` was recorded: stop it. */
  completed(): Promise<void> {
    this.cancelTimeouts();
    return this.step(() => this.stopAfterCompletion());
  }

  /** Brings this job in line with what the engine holds (`listed`: its container in the listing, if any). */
  reconcile(listed: ContainerStatus | undefined): Promise<void> {
    return this.step(() => this.runReconcile(listed));
  }

  /** The agent stops: cancel what is in flight, end the job, stop its container. */
  shutdown(): Promise<void> {
    this.stopping = true;
    this.cancelTimeouts();
    this.removalTimer?.cancel();
    this.removalTimer = undefined;
    this.cancel.abort(new Error('the agent is shutting down'));
    return this.step(() =>
      this.act(onShutdown, (from) =>
        from === 'pending'
          ? { reason: 'shutdown', message: 'the agent shut down before the job could start' }
          : from === 'creating'
            ? { reason: 'shutdown', message: 'the agent shut down before the job container started' }
            : { reason: 'shutdown', message: 'the agent shut down while the job was running; its container was stopped', includeLogs: true },
      ),
    );
  }

  /** Removes a stopped job's container now (at shutdown, when configured). */
  removeNow(): Promise<void> {
    return this.step(async () => void (await this.removeContainer()));
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

  private async runLaunch(): Promise<void> {
    const { store, executor, clock, log } = this.ctx;
    // Cancelled before its turn came (a shutdown): the job never started, and the shutdown step ends it.
    if (this.cancel.signal.aborted) return this.release();
    let job: JobRecord;
    try {
      job = store.transition(this.id, 'creating');
    } catch (err) {
      // Nothing changed: queue it again, then give the slot back, so the retry waits a moment.
      log.error({ jobId: this.id, reason: describeHttpError(err) }, 'could not record the job start; will retry');
      this.hooks.requeue(this, 'front');
      this.release();
      return;
    }
    this.armLaunchTimeout();
    const { spec } = job;
    const signal = this.cancel.signal;
    try {
      await executor.ensureImage(spec.image, spec.alwaysPull === true, signal);
      const containerId = await executor.create(
        { name: job.containerName, image: spec.image, command: spec.command, env: this.containerEnv(job), labels: { [LABEL_JOB]: this.id } },
        signal,
      );
      // Started before the engine call returns, so a fast container's first request finds it ready.
      store.transition(this.id, 'started', { containerId, startedAt: clock.now() });
      await this.startContainer(containerId);
    } catch (err) {
      // Whoever cancelled (a timeout, the shutdown) has queued the step that ends the job.
      if (!signal.aborted) await this.failLaunch(err);
    }
  }

  private async startContainer(containerId: string): Promise<void> {
    const signal = this.cancel.signal;
    try {
      await this.ctx.executor.start(containerId, signal);
    } catch (err) {
      if (!signal.aborted) await this.failLaunch(err);
      return;
    }
    const job = this.ctx.store.get(this.id);
    if (job && !hasEnded(job.state)) {
      this.ctx.log.info({ jobId: this.id, containerId, image: job.spec.image }, 'job container started');
      this.armTimeout(job);
    }
  }

  private async failLaunch(err: unknown): Promise<void> {
    const pull = err instanceof ExecutorJobError && err.kind === 'pull';
    const message = err instanceof ExecutorJobError ? err.message : `the Docker engine did not answer: ${describeHttpError(err)}`;
    await this.act(
      (state) => onLaunchFailed(state, pull),
      () => ({ reason: pull ? 'pull' : 'start', message, includeLogs: true }),
      (outcome) => this.ctx.log.warn({ jobId: this.id, outcome, reason: message }, 'job could not start'),
    );
  }

  private containerEnv(job: JobRecord): Record<string, string> {
    const endpoint = this.ctx.endpoints.urlFor(job.id, job.secret);
    return { ...job.spec.env, ...this.ctx.options.env, FOREMAN_GET_JOB_ENDPOINT: endpoint, FOREMAN_PUT_JOB_ENDPOINT: endpoint };
  }

  private async handleExit(containerId: string, exitCode: number | null, oomKilled: boolean): Promise<void> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.containerId !== containerId) return;
    const running = job.state === 'started' || job.state === 'running';
    // The OOM event can be missed (a restart, an outage); the container's state still says so.
    const oom = running && (oomKilled || this.oomKilled || (await this.ctx.executor.inspect(containerId).catch(() => undefined))?.oomKilled === true);
    this.oomKilled = false;
    await this.act(
      (state) => onContainerExited(state, oom),
      () =>
        oom
          ? { reason: 'oom', message: 'the container was killed because it ran out of memory', exitCode, includeLogs: true }
          : { reason: 'exit', message: `the container exited with code ${exitCode ?? 'unknown'} without reporting completed`, exitCode, includeLogs: true },
    );
  }

  private async stopAfterCompletion(): Promise<void> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.state !== 'completed') return;
    if (job.containerId) await this.stopContainer(job.containerId);
    if (this.ctx.store.get(this.id)?.state === 'completed') this.markStopped(this.ctx.store.transition(this.id, 'stopped'));
  }

  private async runReconcile(listed: ContainerStatus | undefined): Promise<void> {
    const { store, executor } = this.ctx;
    const job = store.get(this.id);
    if (!job || job.state === 'removed') return;
    if (job.state === 'pending') return this.hooks.requeue(this, 'back');
    // The listing may predate a launch that finished while this step waited its turn.
    const container = listed ?? (job.containerName ? await executor.inspect(job.containerName) : undefined);
    if (!container) {
      return this.act(onContainerMissing, () => ({ reason: 'container-vanished', message: 'the job container disappeared while the agent was not watching' }));
    }
    if (job.state === 'stopped') {
      this.release();
      this.scheduleRemoval(job);
      return;
    }
    this.holding = true;
    if (job.state === 'creating') {
      store.transition(this.id, 'started', { containerId: container.id, startedAt: container.startedAt ?? this.ctx.clock.now() });
      if (!container.running && container.startedAt === null) return this.startContainer(container.id);
    }
    if (!container.running) return this.handleExit(container.id, container.exitCode, container.oomKilled);
    if (job.state === 'completed') return this.stopAfterCompletion();
    const current = store.get(this.id);
    if (!current) return;
    this.ctx.log.info({ jobId: this.id, containerId: container.id, state: current.state }, 're-adopted running job container');
    this.armTimeout(current);
  }

  /**
   * Carries out what `decide` says about the job's current state. An ending gathers the log tail
   * first, so the decision is taken again afterwards: the container may have completed meanwhile.
   */
  private async act(
    decide: (state: JobState) => Decision,
    details: (from: JobState) => Details,
    onEnding?: (outcome: Outcome) => void,
  ): Promise<void> {
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
        this.hooks.requeue(this, 'back');
        return this.release();
      case 'forget':
        this.release();
        if (job.state !== 'stopped') store.transition(this.id, 'stopped');
        store.transition(this.id, 'removed');
        return this.hooks.finished(this);
      case 'end':
        onEnding?.(decision.outcome);
        return this.end(decide, details(job.state));
    }
  }

  /** Queues the report and moves the job on in one write, then stops the container. */
  private async end(decide: (state: JobState) => Decision, details: Details): Promise<void> {
    const { store, metrics } = this.ctx;
    this.cancelTimeouts();
    const before = store.get(this.id);
    const logs = details.includeLogs && before?.containerId ? await this.tailLogs(before.containerId) : undefined;
    const job = store.get(this.id);
    if (!job) return;
    const decision = decide(job.state);
    // The container reported completed while we gathered its logs.
    if (decision.kind !== 'end') return;
    const { includeLogs: _, ...ending } = details;
    const report = endingReport({ jobId: this.id, agentId: this.ctx.agentId, callbackUrl: job.spec.callbackUrl }, { ...ending, outcome: decision.outcome, logs });
    const recorded = store.recordUpdate(this.id, report, decision.to, { outcome: decision.outcome });
    this.ctx.deliver(recorded.delivery);
    metrics?.jobsEnded.inc({ outcome: decision.outcome });
    if (job.containerId) await this.stopContainer(job.containerId);
    if (decision.to === 'stopped') this.markStopped(recorded.job);
    else this.hooks.finished(this);
  }

  private async tailLogs(containerId: string): Promise<string[] | undefined> {
    try {
      return trimLogTail(await this.ctx.executor.logsTail(containerId, REPORT_LOG_LINES));
    } catch {
      return undefined;
    }
  }

  private async stopContainer(containerId: string): Promise<void> {
    try {
      await this.ctx.executor.stop(containerId, this.ctx.options.stopGraceMs);
    } catch (err) {
      this.ctx.log.warn({ jobId: this.id, containerId, reason: describeHttpError(err) }, 'could not stop the container; will retry when the engine answers');
    }
  }

  /** The container is stopped: free the slot and schedule removal. */
  private markStopped(job: JobRecord): void {
    this.cancelTimeouts();
    this.release();
    if (!this.stopping) this.scheduleRemoval(job);
  }

  private release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.hooks.slotFreed(this);
  }

  // ---- timers ----------------------------------------------------------------------------

  /** While pulling and creating, the completion timeout counts from the launch; it restarts at container start. */
  private armLaunchTimeout(): void {
    this.launchTimer?.cancel();
    this.launchTimer = this.ctx.clock.after(this.ctx.options.completionTimeoutMs, () => {
      this.launchTimer = undefined;
      // Abort the pull or create in flight at once; the ending step runs as soon as it gave up.
      this.cancel.abort(new Error('job_completion_timeout passed before the container started'));
      void this.timedOut('the image pull and container start did not finish');
    });
  }

  private armTimeout(job: JobRecord): void {
    this.launchTimer?.cancel();
    this.launchTimer = undefined;
    if (this.completionTimer || job.startedAt === null || this.stopping) return;
    const remaining = Math.max(0, job.startedAt + this.ctx.options.completionTimeoutMs - this.ctx.clock.now());
    this.completionTimer = this.ctx.clock.after(remaining, () => {
      this.completionTimer = undefined;
      void this.timedOut('the job did not report completed');
    });
  }

  private timedOut(what: string): Promise<void> {
    const timeoutMs = this.ctx.options.completionTimeoutMs;
    return this.step(() =>
      this.act(
        onTimeout,
        () => ({ reason: 'timeout', message: `${what} within job_completion_timeout (${timeoutMs} ms)`, includeLogs: true }),
        () => this.ctx.log.warn({ jobId: this.id, timeoutMs }, 'job did not complete in time; stopping it'),
      ),
    );
  }

  private cancelTimeouts(): void {
    this.launchTimer?.cancel();
    this.launchTimer = undefined;
    this.completionTimer?.cancel();
    this.completionTimer = undefined;
  }

  private scheduleRemoval(job: JobRecord, attempt = 0): void {
    if (this.removalTimer) return;
    const { clock, options } = this.ctx;
    const due = (job.stoppedAt ?? clock.now()) + options.removalTimeoutMs;
    const delay = attempt === 0 ? Math.max(0, due - clock.now()) : backoffDelay(options.removalBackoff, attempt);
    this.removalTimer = clock.after(delay, () => {
      this.removalTimer = undefined;
      void this.step(async () => {
        const ok = await this.removeContainer();
        if (!ok && !this.stopping) this.scheduleRemoval(job, attempt + 1);
      });
    });
  }

  /** Removes a stopped job's container (by name when its id was never learnt); true when done. */
  private async removeContainer(): Promise<boolean> {
    const job = this.ctx.store.get(this.id);
    if (!job || job.state !== 'stopped') return true;
    const target = job.containerId ?? job.containerName;
    try {
      if (target) await this.ctx.executor.remove(target);
    } catch (err) {
      this.ctx.log.warn({ jobId: this.id, containerId: target, reason: describeHttpError(err) }, 'could not remove the container');
      return false;
    }
    this.ctx.store.transition(this.id, 'removed');
    this.hooks.finished(this);
    return true;
  }
}
