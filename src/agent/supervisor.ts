import type { Logger } from 'pino';
import type { CallbackOutbox } from '../callbacks/outbox.ts';
import type { Poller } from '../control/poller.ts';
import { ExecutorSetupError, type Executor } from '../executor/executor.ts';
import type { JobApiServer } from '../job-api/server.ts';
import type { JobStore } from '../jobs/store.ts';
import { backoffDelay, describeHttpError, type BackoffPolicy } from '../shared/backoff.ts';
import type { Clock, Timer } from '../shared/clock.ts';
import type { LiveLogs } from './job/live-log.ts';
import { resolveListenAddress, type ListenSettings } from './listen.ts';
import type { JobEndpoints } from './job/naming.ts';
import type { OneShot } from './one-shot.ts';
import type { ImageCache } from '../images/cache.ts';
import type { HostFactsHeader } from './facts.ts';
import type { Reconciler } from './reconciler.ts';
import type { Scheduler } from './job/scheduler.ts';
import type { AgentSnapshot } from './metrics.ts';

export interface SupervisorOptions {
  /** The engine's URL, for log lines. */
  readonly engineUrl: string;
  readonly listen: ListenSettings;
  readonly port: number;
  /** For the log line that says polling began. */
  readonly pollUrl: string;
  readonly maxConcurrentJobs: number;
  readonly shutdownTimeoutMs: number;
  /** After the first signal, how long running jobs may go on (0: stop them at once). */
  readonly drainTimeoutMs: number;
  /** At the end of the drain, leave running jobs for the next agent instead of stopping them. */
  readonly detachOnTerminate: boolean;
  readonly removeStoppedOnTerminate: boolean;
  readonly jobRetentionMs: number;
  readonly engineBackoff: BackoffPolicy;
}

/** The parts the supervisor starts and stops; `src/agent/compose.ts` builds them. */
export interface SupervisorParts {
  readonly store: JobStore;
  readonly executor: Executor;
  readonly log: Logger;
  readonly clock: Clock;
  readonly outbox: CallbackOutbox;
  readonly logs: LiveLogs;
  readonly jobApi: JobApiServer;
  readonly endpoints: JobEndpoints;
  readonly poller: Poller;
  readonly scheduler: Scheduler;
  readonly reconciler: Reconciler;
  /** `[hooks]`, when configured: post_job hooks owed from before a restart run at start; running ones are killed last. */
  readonly hooks?: { resume(): void; close(): Promise<void> } | undefined;
  readonly oneShot: OneShot;
  /** `x-foreman-attributes`, asked of the engine on a timer. */
  readonly facts: HostFactsHeader;
  /** The image cache, cleaned up on the same timer. */
  readonly images: ImageCache;
}

/** How often the host facts are asked for again and the image cache cleaned up. */
const MAINTENANCE_MS = 60_000;

/** How long a health probe waits for the engine. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * The supervisor: connects to the engine and keeps watching it, serves the job API, recovers
 * what a previous run left, polls, and shuts down in stages (drain the running jobs, end or detach
 * them, then deliver the outbox within `shutdown_timeout`). Jobs themselves live in the scheduler's runners.
 */
export class Supervisor {
  private readonly parts: SupervisorParts;
  private readonly options: SupervisorOptions;
  private readonly stopping = new AbortController();
  /** Aborted by a second signal: the drain ends at once. */
  private readonly drainCut = new AbortController();
  private drainingNow = false;
  /** Connected to the engine: it answered, and no watch has failed since. */
  private engineUp = false;
  private engineProblem = 'not connected yet';
  private pollLoop: Promise<void> | undefined;
  private watchLoop: Promise<void> | undefined;
  private purgeTimer: Timer | undefined;
  private maintenanceTimer: Timer | undefined;
  private closing: Promise<void> | undefined;

  constructor(parts: SupervisorParts, options: SupervisorOptions) {
    this.parts = parts;
    this.options = options;
  }

  get agentId(): string {
    return this.parts.store.agentId;
  }

  /** The job API's base URL as containers see it. */
  get jobApiUrl(): string {
    return this.parts.endpoints.base;
  }

  get draining(): boolean {
    return this.drainingNow;
  }

  /** Resolves when a one-shot run (`--max-jobs`, `--exit-when-idle`) is done. */
  get done(): Promise<void> {
    return this.parts.oneShot.done;
  }

  /** Ends a drain at once (a second signal): running jobs are stopped, or detached, now. */
  endDrain(): void {
    this.drainCut.abort(new Error('drain ended early'));
  }

  /**
   * `/healthz`, liveness: undefined while the store answers (that this is asked and answered shows the event loop
   * runs), else why not. The engine is not asked: an engine that is down is no reason to restart the agent, which
   * rides out engine restarts by itself; readiness and `foreman_engine_up` say so instead.
   */
  health(): string | undefined {
    try {
      this.parts.store.get('');
      return undefined;
    } catch (err) {
      return `the store does not answer: ${describeHttpError(err)}`;
    }
  }

  /**
   * `/readyz`: undefined while the agent takes jobs: it is not draining or stopping, the engine answers (within
   * 2 s) and has not been lost, and the last poll succeeded; else why not.
   */
  async ready(): Promise<string | undefined> {
    if (this.closing) return this.drainingNow ? 'draining: taking no new jobs' : 'shutting down';
    if (!this.engineUp) return `the Docker engine at ${this.options.engineUrl} does not answer: ${this.engineProblem}`;
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.parts.clock.after(PROBE_TIMEOUT_MS, () => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    });
    try {
      await Promise.race([this.parts.executor.version(), timeout]);
    } catch (err) {
      return `the Docker engine at ${this.options.engineUrl} does not answer: ${describeHttpError(err)}`;
    } finally {
      timer?.cancel();
    }
    const problem = this.parts.poller.problem;
    return problem === undefined ? undefined : `the last poll failed: ${problem}`;
  }

  /** What the agent holds now, for the metrics read at scrape time. */
  snapshot(): AgentSnapshot {
    const { scheduler, outbox, logs, clock } = this.parts;
    return {
      slots: this.options.maxConcurrentJobs,
      running: scheduler.running,
      pending: scheduler.queued,
      callbackBacklog: outbox.backlog,
      callbackOldestAt: outbox.oldestCreatedAt,
      logBacklogLines: logs.backlogLines(),
      engineUp: this.engineUp,
      now: clock.now(),
    };
  }

  private setEngine(up: boolean, problem?: string): void {
    this.engineUp = up;
    if (problem !== undefined) this.engineProblem = problem;
    this.parts.scheduler.setEngineUp(up);
  }

  /** Resumes stored deliveries, connects to the engine, serves the job API, recovers what a previous run left, then polls. */
  async start(): Promise<void> {
    const { executor, jobApi, endpoints, outbox, poller, log } = this.parts;
    const signal = this.stopping.signal;
    // Stored deliveries are queued before the job API takes a new update, so each job's order holds across
    // a restart; and they go out while the engine is still awaited.
    this.parts.logs.resume();
    outbox.resume();
    this.parts.hooks?.resume();
    await this.connectEngine(signal);
    if (signal.aborted) return;
    const { advertise, bind } = await resolveListenAddress(this.options.listen, executor);
    const bound = await jobApi.listen(bind, this.options.port);
    endpoints.base = `http://${advertise.includes(':') ? `[${advertise}]` : advertise}:${bound.port}`;
    log.info({ agentId: this.agentId, listen: `${bind}:${bound.port}`, jobApi: endpoints.base }, 'job API listening');

    // Subscribe to exits before reconciling so none slips between the two.
    await this.startWatching();
    this.purgeExpired();
    await this.maintain();
    this.pollLoop = poller.pollUntilStopped(signal);
    this.parts.oneShot.start();
    log.info({ url: this.options.pollUrl, maxConcurrentJobs: this.options.maxConcurrentJobs }, 'polling for jobs');
  }

  private async connectEngine(signal: AbortSignal): Promise<void> {
    const { executor, log, clock } = this.parts;
    const engine = this.options.engineUrl;
    for (let attempt = 0; ;) {
      try {
        await executor.prepare(signal);
        const version = await executor.version();
        if (attempt > 0) log.info({ engine, version }, 'Docker engine answers again');
        else log.info({ engine, version, network: this.options.listen.network_name }, 'connected to the Docker engine');
        this.setEngine(true);
        return;
      } catch (err) {
        if (signal.aborted) return;
        // A setting the engine cannot honour (docker.runtime) will not fix itself: the agent does not start.
        if (err instanceof ExecutorSetupError) throw err;
        attempt++;
        this.setEngine(false, describeHttpError(err));
        if (attempt === 1) log.error({ engine, reason: describeHttpError(err) }, `no Docker engine at ${engine}; retrying until it answers`);
        try {
          await clock.sleep(backoffDelay(this.options.engineBackoff, attempt), signal);
        } catch {
          return;
        }
      }
    }
  }

  /** Watches the engine until shutdown, reconnecting and reconciling after every outage; resolves once first reconciled. */
  private startWatching(): Promise<void> {
    const { executor, log, scheduler } = this.parts;
    const signal = this.stopping.signal;
    return new Promise<void>((firstReady) => {
      this.watchLoop = (async () => {
        while (!signal.aborted) {
          try {
            await executor.watch(
              (event) => scheduler.onEngineEvent(event),
              signal,
              () => {
                this.setEngine(true);
                // Reconcile after every (re)subscription: exits may have happened while away.
                void this.reconcile().then(firstReady);
              },
            );
          } catch (err) {
            if (signal.aborted) break;
            this.setEngine(false, describeHttpError(err));
            log.error({ engine: this.options.engineUrl, reason: describeHttpError(err) }, 'lost the Docker engine; reconnecting');
          }
          if (signal.aborted) break;
          await this.connectEngine(signal);
        }
        firstReady();
      })();
    });
  }

  private async reconcile(): Promise<void> {
    try {
      await this.parts.reconciler.reconcile();
    } catch (err) {
      this.parts.log.error({ reason: describeHttpError(err) }, 'reconciling with the engine failed');
    }
    this.parts.scheduler.pump();
  }

  /** The host facts again, and the image cache's clean-up; then again in a minute. Never throws. */
  private async maintain(): Promise<void> {
    await this.parts.facts.refresh();
    await this.parts.images.collect();
    if (this.stopping.signal.aborted) return;
    this.maintenanceTimer = this.parts.clock.after(MAINTENANCE_MS, () => void this.maintain(), { unref: true });
  }

  private purgeExpired(): void {
    const { store, clock, log } = this.parts;
    try {
      const before = clock.now() - this.options.jobRetentionMs;
      const purged = store.purgeRemoved(before) + this.parts.logs.purge(before);
      if (purged > 0) log.info({ purged }, 'forgot finished jobs past job_retention');
    } catch (err) {
      log.warn({ reason: describeHttpError(err) }, 'could not purge finished jobs');
    }
    const hour = 3_600_000;
    this.purgeTimer = clock.after(Math.min(hour, Math.max(this.options.jobRetentionMs, 1000)), () => this.purgeExpired(), { unref: true });
  }

  /**
   * Stops polling; ends every job (`agent-shutdown`) and stops its container, cancelling pulls in
   * flight; removes stopped containers when configured; then gives the outbox what is left of
   * `shutdown_timeout` to deliver, and releases everything. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const { scheduler, outbox, jobApi, store, log, clock } = this.parts;
    this.parts.oneShot.stop();
    await this.drain();
    const expired = new AbortController();
    const deadline = expired.signal;
    const deadlineTimer = clock.after(this.options.shutdownTimeoutMs, () => expired.abort(new Error('shutdown_timeout passed')));
    const detach = this.options.detachOnTerminate;
    log.info(detach ? 'shutting down: no more polling; leaving running jobs to the next agent' : 'shutting down: no more polling; stopping job containers');
    this.stopping.abort(new Error('agent stopping'));
    await this.pollLoop;
    this.purgeTimer?.cancel();
    this.maintenanceTimer?.cancel();

    const work = (async () => {
      await (detach ? scheduler.detach() : scheduler.shutdown());
      if (this.options.removeStoppedOnTerminate) await scheduler.removeStopped();
      await outbox.drain(deadline);
    })();
    const timedOut = new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([work, timedOut]);
    if (deadline.aborted) log.warn({ shutdownTimeoutMs: this.options.shutdownTimeoutMs }, 'shutdown took too long; leaving the rest for the next start');
    else if (outbox.backlog > 0) log.warn({ backlog: outbox.backlog }, 'undelivered callbacks stay stored for the next start');

    deadlineTimer.cancel();
    await this.parts.hooks?.close();
    await outbox.close();
    await this.parts.logs.close();
    await jobApi.close();
    await this.watchLoop;
    store.close();
    log.info('agent stopped');
  }

  /** Takes no new jobs but keeps polling (heartbeats, cancels) while running jobs go on, up to drain_timeout. */
  private async drain(): Promise<void> {
    const { scheduler, clock, log } = this.parts;
    const ms = this.options.drainTimeoutMs;
    if (ms <= 0 || !this.pollLoop) return;
    this.drainingNow = true;
    scheduler.startDrain();
    log.info({ drainTimeoutMs: ms, running: scheduler.running }, 'draining: no new jobs; running jobs go on (send the signal again to end the drain)');
    const timer = clock.after(ms, () => this.endDrain());
    await scheduler.waitUntilNoneRunning(this.drainCut.signal);
    timer.cancel();
    log.info({ running: scheduler.running }, scheduler.running === 0 ? 'drain complete: no job is running' : 'drain over with jobs still running');
    this.drainingNow = false;
  }
}
