import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { CallbackOutbox } from '../callbacks/outbox.ts';
import { Poller, userAgentFor } from '../control/poller.ts';
import { ExecutorJobError, LABEL_JOB, type ContainerStatus, type Executor, type ExecutorEvent } from '../executor/executor.ts';
import { createJobApi, type ApiReply, type JobApiServer, type JobUpdate } from '../job-api/server.ts';
import { hasEnded, holdsSlot, type Outcome } from '../jobs/state.ts';
import type { JobRecord, JobStore, NewDelivery } from '../jobs/store.ts';
import { backoffDelay, describeHttpError } from '../shared/backoff.ts';
import type { Clock } from '../shared/clock.ts';
import { validateJob } from '../shared/job-spec.ts';
import type { AgentMetrics } from './metrics.ts';
import { containerNameFor, jobEndpoint, newJobSecret } from './naming.ts';
import { resolveListenAddress } from './listen.ts';

export interface AgentDeps {
  readonly config: Config;
  readonly store: JobStore;
  readonly executor: Executor;
  readonly log: Logger;
  readonly clock: Clock;
  readonly version: string;
  readonly metrics?: AgentMetrics;
}

/** Lines of container output attached to a failure report, and their longest length. */
const REPORT_LOG_LINES = 20;
const REPORT_LOG_LINE_CHARS = 1000;
/** How long a container gets between SIGTERM and SIGKILL when the agent stops it. */
const STOP_GRACE_MS = 10_000;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'user-agent',
]);

interface EndDetails {
  readonly reason: string;
  readonly message: string;
  readonly exitCode?: number | null;
  readonly includeLogs?: boolean;
}

/**
 * The agent: polls for jobs, runs each in a container, serves the job API, forwards updates
 * through the durable outbox, and reports every ending. All state lives in the store; the
 * in-memory maps below only hold timers and slots and are rebuilt by `reconcile`.
 */
export class Agent {
  private readonly config: Config;
  private readonly store: JobStore;
  private readonly executor: Executor;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly metrics: AgentMetrics | undefined;
  private readonly outbox: CallbackOutbox;
  private readonly jobApi: JobApiServer;
  private readonly poller: Poller;
  private readonly userAgent: string;

  /** Jobs holding one of max_concurrent_jobs slots: from creation until the container is stopped. */
  private readonly slots = new Set<string>();
  /** Pending job ids in arrival order. */
  private readonly queue: string[] = [];
  private readonly timeouts = new Map<string, NodeJS.Timeout>();
  private readonly removals = new Map<string, NodeJS.Timeout>();
  /** Per-job chain so lifecycle steps of one job never interleave. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly oomKilled = new Set<string>();
  private slotWaiters: Array<() => void> = [];

  private readonly stopping = new AbortController();
  private engineUp = false;
  private baseUrl = '';
  private pollLoop: Promise<void> | undefined;
  private watchLoop: Promise<void> | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  /** A retry of `pump` after a failed store write. */
  private pumpTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(deps: AgentDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.executor = deps.executor;
    this.log = deps.log;
    this.clock = deps.clock;
    this.metrics = deps.metrics;
    this.userAgent = userAgentFor(deps.version);
    const core = this.config.core;
    this.outbox = new CallbackOutbox({
      store: this.store,
      log: this.log,
      clock: this.clock,
      userAgent: this.userAgent,
      maxAgeMs: core.callback_max_age,
      requestTimeoutMs: Math.max(core.poll_timeout, 1000),
      backoff: { baseMs: 500, maxMs: 30_000 },
      onSettled: (_delivery, result) => this.metrics?.deliveries.inc({ result }),
    });
    this.jobApi = createJobApi({
      log: this.log,
      maxBodySize: core.max_body_size,
      backend: {
        authorize: (id, secret) => this.authorize(id, secret),
        fetchJob: (id) => this.fetchJob(id),
        updateJob: (id, update) => this.updateJob(id, update),
      },
    });
    this.poller = new Poller({
      url: core.url,
      token: core.token,
      labels: core.labels,
      agentId: this.store.agentId,
      userAgent: this.userAgent,
      pollFrequencyMs: core.poll_frequency,
      pollTimeoutMs: core.poll_timeout,
      backoff: { baseMs: Math.max(core.poll_frequency, 100), maxMs: Math.max(core.poll_frequency, 60_000) },
      clock: this.clock,
      log: this.log,
      freeSlots: () => this.freeSlots(),
      waitForSlot: (signal) => this.waitForSlot(signal),
      onJobs: (entries) => this.receive(entries),
    });
  }

  get agentId(): string {
    return this.store.agentId;
  }

  /** The job API's base URL as containers see it. */
  get jobApiUrl(): string {
    return this.baseUrl;
  }

  /** Connects to the engine, serves the job API, recovers what a previous run left, then polls. */
  async start(): Promise<void> {
    const signal = this.stopping.signal;
    await this.connectEngine(signal);
    if (signal.aborted) return;
    const core = this.config.core;
    const { advertise, bind } = await resolveListenAddress(core, this.executor);
    const bound = await this.jobApi.listen(bind, core.port);
    this.baseUrl = `http://${advertise.includes(':') ? `[${advertise}]` : advertise}:${bound.port}`;
    this.log.info({ agentId: this.agentId, listen: `${bind}:${bound.port}`, jobApi: this.baseUrl }, 'job API listening');

    // Subscribe to exits before reconciling so none slips between the two.
    await this.startWatching();
    this.outbox.resume();
    this.purgeExpired();
    this.pollLoop = this.poller.run(signal);
    this.log.info({ url: core.url, maxConcurrentJobs: core.max_concurrent_jobs }, 'polling for jobs');
  }

  // ---- engine connection -------------------------------------------------------------

  private async connectEngine(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    for (;;) {
      try {
        await this.executor.prepare(signal);
        const version = await this.executor.version();
        if (attempt > 0) this.log.info({ engine: this.config.docker.url, version }, 'Docker engine answers again');
        else this.log.info({ engine: this.config.docker.url, version, network: this.config.core.network_name }, 'connected to the Docker engine');
        this.engineUp = true;
        return;
      } catch (err) {
        if (signal.aborted) return;
        attempt++;
        if (attempt === 1) {
          this.log.error(
            { engine: this.config.docker.url, reason: describeHttpError(err) },
            `no Docker engine at ${this.config.docker.url}; retrying until it answers`,
          );
        }
        try {
          await this.clock.sleep(backoffDelay({ baseMs: 500, maxMs: 10_000 }, attempt), signal);
        } catch {
          return;
        }
      }
    }
  }

  private startWatching(): Promise<void> {
    const signal = this.stopping.signal;
    return new Promise<void>((firstReady) => {
      this.watchLoop = (async () => {
        let ready = false;
        while (!signal.aborted) {
          try {
            await this.executor.watch(
              (event) => this.onEngineEvent(event),
              signal,
              () => {
                this.engineUp = true;
                // Reconcile after every (re)subscription: exits may have happened while away.
                this.enqueueReconcile(firstReady, ready);
                ready = true;
              },
            );
          } catch (err) {
            if (signal.aborted) break;
            this.engineUp = false;
            this.log.error({ engine: this.config.docker.url, reason: describeHttpError(err) }, 'lost the Docker engine; reconnecting');
          }
          if (signal.aborted) break;
          await this.connectEngine(signal);
        }
        firstReady();
      })();
    });
  }

  private enqueueReconcile(firstReady: () => void, again: boolean): void {
    this.reconcile()
      .catch((err: unknown) => this.log.error({ reason: describeHttpError(err) }, 'reconciling with the engine failed'))
      .finally(() => {
        if (!again) firstReady();
        this.pump();
      });
  }

  // ---- reconciliation ----------------------------------------------------------------

  /** Brings the store and the engine into agreement after a start or an engine outage. */
  private async reconcile(): Promise<void> {
    const containers = await this.executor.list();
    const byJob = new Map<string, ContainerStatus>();
    for (const c of containers) if (c.jobId !== undefined) byJob.set(c.jobId, c);
    const active = this.store.listActive();
    const known = new Set(active.map((j) => j.id));

    for (const job of active) {
      const container = byJob.get(job.id);
      await this.serial(job.id, () => this.reconcileJob(job.id, container));
    }
    for (const c of containers) {
      if (c.jobId !== undefined && known.has(c.jobId)) continue;
      this.log.warn({ containerId: c.id, jobId: c.jobId }, 'removing a container this agent has no record of');
      await this.executor.remove(c.id).catch((err: unknown) => this.log.warn({ containerId: c.id, reason: describeHttpError(err) }, 'could not remove container'));
    }
  }

  private async reconcileJob(id: string, listed: ContainerStatus | undefined): Promise<void> {
    const job = this.store.get(id);
    if (!job) return;
    // The listing may predate a launch that finished while this step waited its turn.
    const container = listed ?? (job.containerName ? await this.executor.inspect(job.containerName) : undefined);
    switch (job.state) {
      case 'pending':
        if (!this.queue.includes(id)) this.queue.push(id);
        return;
      case 'creating':
        if (!container) {
          // The container was never made, so the job never ran: it may start again.
          this.store.transition(id, 'pending');
          if (!this.queue.includes(id)) this.queue.push(id);
          return;
        }
        this.store.transition(id, 'started', { containerId: container.id, startedAt: container.startedAt ?? this.clock.now() });
        this.slots.add(id);
        if (!container.running && container.startedAt === null) {
          await this.startContainer(id, container.id);
          return;
        }
        return this.adoptOrFinish(id, container);
      case 'started':
      case 'running':
      case 'completed':
        if (!container) {
          this.slots.delete(id);
          if (job.state === 'completed') {
            this.store.transition(id, 'stopped');
            this.store.transition(id, 'removed');
            return;
          }
          await this.endJob(id, 'lost', { reason: 'container-vanished', message: 'the job container disappeared while the agent was not watching' });
          return;
        }
        this.slots.add(id);
        return this.adoptOrFinish(id, container);
      case 'stopped':
        this.slots.delete(id);
        if (!container) this.store.transition(id, 'removed');
        else this.scheduleRemoval(job);
        return;
      case 'removed':
        return;
    }
  }

  private async adoptOrFinish(id: string, container: ContainerStatus): Promise<void> {
    const job = this.store.get(id);
    if (!job) return;
    if (!container.running) {
      await this.onExited(id, container.id, container.exitCode, container.oomKilled);
      return;
    }
    if (job.state === 'completed') {
      await this.stopAfterCompletion(id);
      return;
    }
    this.log.info({ jobId: id, containerId: container.id, state: job.state }, 're-adopted running job container');
    this.armTimeout(job);
  }

  // ---- receiving jobs ----------------------------------------------------------------

  private freeSlots(): number {
    return Math.max(0, this.config.core.max_concurrent_jobs - this.slots.size - this.queue.length);
  }

  private waitForSlot(signal: AbortSignal): Promise<void> {
    if (this.freeSlots() > 0 || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.slotWaiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private notifySlotFree(): void {
    if (this.freeSlots() === 0) return;
    const waiters = this.slotWaiters;
    this.slotWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private receive(entries: unknown[]): void {
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
      this.metrics?.jobsEnded.inc({ outcome: 'invalid' });
      if (result.id === undefined) return;
      const report = result.callbackUrl
        ? this.report(result.id, result.callbackUrl, 'invalid', { reason: 'validation', message: `the job failed validation: ${result.reason}` })
        : undefined;
      const remembered = this.store.rememberRejected(result.id, report);
      if (remembered?.delivery) this.outbox.enqueue(remembered.delivery);
      return;
    }
    const job = result.job;
    if (!this.store.admit(job, newJobSecret(), containerNameFor(this.agentId, job.id))) {
      this.log.info({ jobId: job.id }, 'job id already known to this agent; not running it again');
      return;
    }
    this.queue.push(job.id);
  }

  /** Starts queued jobs while slots are free and the engine answers. */
  private pump(): void {
    while (!this.stopping.signal.aborted && this.engineUp && this.queue.length > 0 && this.slots.size < this.config.core.max_concurrent_jobs) {
      const id = this.queue.shift();
      if (id === undefined) break;
      this.slots.add(id);
      this.serial(id, () => this.launch(id)).catch(() => undefined);
    }
    this.metrics?.setJobs(this.slots.size, this.queue.length);
    this.notifySlotFree();
  }

  // ---- running a job -----------------------------------------------------------------

  private async launch(id: string): Promise<void> {
    let job: JobRecord;
    try {
      job = this.store.transition(id, 'creating');
    } catch (err) {
      // Nothing changed: give the slot back and try again on the next occasion.
      this.slots.delete(id);
      this.queue.unshift(id);
      this.log.error({ jobId: id, reason: describeHttpError(err) }, 'could not record the job start; will retry');
      this.pumpTimer ??= setTimeout(() => {
        this.pumpTimer = undefined;
        this.pump();
      }, 1000);
      return;
    }
    const spec = job.spec;
    let containerId: string | undefined;
    try {
      await this.executor.ensureImage(spec.image, spec.alwaysPull === true);
      containerId = await this.executor.create({
        name: job.containerName,
        image: spec.image,
        command: spec.command,
        env: this.containerEnv(job),
        labels: { [LABEL_JOB]: id },
      });
      // Started before the engine call returns, so a fast container's first request finds it ready.
      this.store.transition(id, 'started', { containerId, startedAt: this.clock.now() });
      await this.startContainer(id, containerId);
    } catch (err) {
      await this.failLaunch(id, err);
    }
  }

  private async startContainer(id: string, containerId: string): Promise<void> {
    try {
      await this.executor.start(containerId);
    } catch (err) {
      await this.failLaunch(id, err);
      return;
    }
    const job = this.store.get(id);
    if (job && !hasEnded(job.state)) {
      this.log.info({ jobId: id, containerId, image: job.spec.image }, 'job container started');
      this.armTimeout(job);
    }
  }

  private async failLaunch(id: string, err: unknown): Promise<void> {
    const pull = err instanceof ExecutorJobError && err.kind === 'pull';
    const outcome: Outcome = pull ? 'pull-failed' : 'start-failed';
    const message = err instanceof ExecutorJobError ? err.message : `the Docker engine did not answer: ${describeHttpError(err)}`;
    this.log.warn({ jobId: id, outcome, reason: message }, 'job could not start');
    await this.endJob(id, outcome, { reason: pull ? 'pull' : 'start', message, includeLogs: true });
  }

  private containerEnv(job: JobRecord): Record<string, string> {
    const endpoint = jobEndpoint(this.baseUrl, job.id, job.secret);
    return {
      ...job.spec.env,
      ...this.config.core.env,
      FOREMAN_GET_JOB_ENDPOINT: endpoint,
      FOREMAN_PUT_JOB_ENDPOINT: endpoint,
    };
  }

  private armTimeout(job: JobRecord): void {
    if (this.timeouts.has(job.id) || job.startedAt === null) return;
    const remaining = Math.max(0, job.startedAt + this.config.core.job_completion_timeout - this.clock.now());
    const timer = setTimeout(() => {
      this.timeouts.delete(job.id);
      this.serial(job.id, async () => {
        const current = this.store.get(job.id);
        if (!current || hasEnded(current.state)) return;
        const timeoutMs = this.config.core.job_completion_timeout;
        this.log.warn({ jobId: job.id, timeoutMs }, 'job did not complete in time; stopping it');
        await this.endJob(job.id, 'timed-out', {
          reason: 'timeout',
          message: `the job did not report completed within job_completion_timeout (${timeoutMs} ms)`,
          includeLogs: true,
        });
      }).catch(() => undefined);
    }, remaining);
    this.timeouts.set(job.id, timer);
  }

  private clearTimeout(id: string): void {
    const timer = this.timeouts.get(id);
    if (timer) clearTimeout(timer);
    this.timeouts.delete(id);
  }

  // ---- the job API -------------------------------------------------------------------

  private authorize(id: string, secret: string): boolean {
    const job = this.store.get(id);
    if (!job || job.state === 'removed' || job.secret.length === 0) return false;
    const expected = Buffer.from(job.secret);
    const given = Buffer.from(secret);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  private async fetchJob(id: string): Promise<ApiReply> {
    const reply = (job: JobRecord | undefined): ApiReply => {
      if (!job) return { status: 404, body: { error: 'no such job' } };
      if (hasEnded(job.state)) return this.endedReply(job);
      return { status: 200, body: { id: job.id, body: job.spec.body ?? null } };
    };
    const job = this.store.get(id);
    // Only the first fetch writes (started → running); later ones are plain reads.
    if (job?.state !== 'started') return reply(job);
    return this.store.batch(() => {
      const current = this.store.get(id);
      if (current?.state === 'started') this.store.transition(id, 'running');
      return reply(current);
    });
  }

  /** Stores the update and its delivery in one group-committed write, then answers. */
  private async updateJob(id: string, update: JobUpdate): Promise<ApiReply> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(update.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith('x-foreman-delivery-')) continue;
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    headers['x-foreman-job-id'] = encodeURIComponent(id);
    headers['x-foreman-agent-id'] = this.agentId;
    const completed = update.status === 'completed';
    if (completed) headers['x-foreman-job-outcome'] = 'succeeded';
    else delete headers['x-foreman-job-outcome'];

    // The state is checked inside the write, so a timeout or exit cannot slip in between.
    const result = await this.store.batch(() => {
      const job = this.store.get(id);
      if (!job) return { reply: { status: 404, body: { error: 'no such job' } } };
      if (hasEnded(job.state)) return { reply: this.endedReply(job) };
      if (job.state !== 'started' && job.state !== 'running') return { reply: { status: 409, body: { error: `job is ${job.state}` } } };
      const next = completed ? 'completed' : job.state === 'started' ? 'running' : undefined;
      const recorded = this.store.recordUpdate(id, { url: job.spec.callbackUrl, headers, body: update.body }, next, completed ? { outcome: 'succeeded' } : {});
      return { reply: { status: 200, body: { status: 'accepted', progress: update.progress } }, delivery: recorded.delivery };
    });
    if (!result.delivery) return result.reply;
    this.outbox.enqueue(result.delivery);
    if (completed) {
      this.metrics?.jobsEnded.inc({ outcome: 'succeeded' });
      this.clearTimeout(id);
      this.serial(id, () => this.stopAfterCompletion(id)).catch(() => undefined);
    }
    return result.reply;
  }

  private endedReply(job: JobRecord): ApiReply {
    const detail = job.outcome && job.outcome !== 'succeeded' ? ` (${job.outcome})` : '';
    return { status: 409, body: { error: `job already ended${detail}: no further updates are accepted` } };
  }

  // ---- endings -----------------------------------------------------------------------

  private async stopAfterCompletion(id: string): Promise<void> {
    const job = this.store.get(id);
    if (!job || job.state !== 'completed') return;
    if (job.containerId) await this.stopContainer(id, job.containerId);
    const current = this.store.get(id);
    if (current?.state === 'completed') this.markStopped(this.store.transition(id, 'stopped'));
  }

  private onEngineEvent(event: ExecutorEvent): void {
    if (event.type === 'oom') {
      this.oomKilled.add(event.jobId);
      return;
    }
    this.serial(event.jobId, () => this.onExited(event.jobId, event.containerId, event.exitCode, false)).catch(() => undefined);
  }

  private async onExited(id: string, containerId: string, exitCode: number | null, oomKilled: boolean): Promise<void> {
    const job = this.store.get(id);
    if (!job || job.containerId !== containerId) return;
    if (job.state === 'completed') {
      this.markStopped(this.store.transition(id, 'stopped'));
      return;
    }
    if (job.state !== 'started' && job.state !== 'running') return;
    const oom = oomKilled || this.oomKilled.has(id) || (await this.executor.inspect(containerId).catch(() => undefined))?.oomKilled === true;
    this.oomKilled.delete(id);
    const code = exitCode ?? null;
    await this.endJob(id, oom ? 'oom-killed' : 'failed', {
      reason: oom ? 'oom' : 'exit',
      message: oom
        ? 'the container was killed because it ran out of memory'
        : `the container exited with code ${code ?? 'unknown'} without reporting completed`,
      exitCode: code,
      includeLogs: true,
    });
  }

  /**
   * Ends a job that did not complete by itself: queues the report and moves it to `stopped`
   * in one write, then stops the container. Re-checks the state after every await.
   */
  private async endJob(id: string, outcome: Outcome, details: EndDetails): Promise<void> {
    this.clearTimeout(id);
    const before = this.store.get(id);
    if (!before || before.state === 'stopped' || before.state === 'removed') return;
    const logs = details.includeLogs && before.containerId ? await this.tailLogs(before.containerId) : undefined;

    const job = this.store.get(id);
    if (!job || hasEnded(job.state)) {
      // The container reported completed while we gathered logs.
      return;
    }
    const report = this.report(id, job.spec.callbackUrl, outcome, { ...details, logs });
    const to = job.state === 'pending' ? 'removed' : 'stopped';
    const recorded = this.store.recordUpdate(id, report, to, { outcome });
    this.outbox.enqueue(recorded.delivery);
    this.metrics?.jobsEnded.inc({ outcome });
    if (job.containerId) await this.stopContainer(id, job.containerId);
    if (to === 'stopped') this.markStopped(recorded.job);
  }

  private async tailLogs(containerId: string): Promise<string[] | undefined> {
    try {
      const lines = await this.executor.logsTail(containerId, REPORT_LOG_LINES);
      return lines.map((l) => (l.length > REPORT_LOG_LINE_CHARS ? `${l.slice(0, REPORT_LOG_LINE_CHARS)}…` : l));
    } catch {
      return undefined;
    }
  }

  private report(id: string, callbackUrl: string, outcome: Outcome, details: EndDetails & { logs?: string[] | undefined }): NewDelivery {
    const body: Record<string, unknown> = { outcome, reason: details.reason, message: details.message };
    if (details.exitCode !== undefined && details.exitCode !== null) body.exitCode = details.exitCode;
    if (details.logs) body.logs = details.logs;
    return {
      url: callbackUrl,
      headers: {
        'content-type': 'application/json',
        'x-foreman-job-status': 'completed',
        'x-foreman-job-outcome': outcome,
        'x-foreman-job-id': encodeURIComponent(id),
        'x-foreman-agent-id': this.agentId,
      },
      body: Buffer.from(JSON.stringify(body)),
    };
  }

  private async stopContainer(id: string, containerId: string): Promise<void> {
    try {
      await this.executor.stop(containerId, STOP_GRACE_MS);
    } catch (err) {
      this.log.warn({ jobId: id, containerId, reason: describeHttpError(err) }, 'could not stop the container; will retry when the engine answers');
    }
  }

  /** The container is stopped: free the slot and schedule removal. */
  private markStopped(job: JobRecord): void {
    this.clearTimeout(job.id);
    this.slots.delete(job.id);
    this.pump();
    if (!this.stopping.signal.aborted) this.scheduleRemoval(job);
  }

  private scheduleRemoval(job: JobRecord, attempt = 0): void {
    if (this.removals.has(job.id)) return;
    const due = (job.stoppedAt ?? this.clock.now()) + this.config.core.job_removal_timeout;
    const delay = attempt === 0 ? Math.max(0, due - this.clock.now()) : backoffDelay({ baseMs: 1000, maxMs: 30_000 }, attempt);
    const timer = setTimeout(() => {
      this.removals.delete(job.id);
      this.serial(job.id, async () => {
        const ok = await this.removeJobContainer(job.id);
        if (!ok && !this.stopping.signal.aborted) this.scheduleRemoval(job, attempt + 1);
      }).catch(() => undefined);
    }, delay);
    this.removals.set(job.id, timer);
  }

  /** Removes a stopped job's container; true when done. */
  private async removeJobContainer(id: string): Promise<boolean> {
    const job = this.store.get(id);
    if (!job || job.state !== 'stopped') return true;
    if (job.containerId) {
      try {
        await this.executor.remove(job.containerId);
      } catch (err) {
        this.log.warn({ jobId: id, containerId: job.containerId, reason: describeHttpError(err) }, 'could not remove the container');
        return false;
      }
    }
    this.store.transition(id, 'removed');
    return true;
  }

  /** Runs `step` after every earlier step of the same job. Failures are logged, never thrown away silently. */
  private serial(id: string, step: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(id) ?? Promise.resolve();
    const next = previous.then(step).catch((err: unknown) => {
      this.log.error({ jobId: id, reason: describeHttpError(err) }, 'job lifecycle step failed');
    });
    this.chains.set(id, next);
    void next.finally(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
    return next;
  }

  private purgeExpired(): void {
    try {
      const purged = this.store.purgeRemoved(this.clock.now() - this.config.core.job_retention);
      if (purged > 0) this.log.info({ purged }, 'forgot finished jobs past job_retention');
    } catch (err) {
      this.log.warn({ reason: describeHttpError(err) }, 'could not purge finished jobs');
    }
    const hour = 3_600_000;
    this.purgeTimer = setTimeout(() => this.purgeExpired(), Math.min(hour, Math.max(this.config.core.job_retention, 1000)));
    this.purgeTimer.unref();
  }

  // ---- shutdown ----------------------------------------------------------------------

  /**
   * Stops polling, stops running containers (reporting `agent-shutdown`), removes stopped
   * ones when configured, gives the outbox a bounded time to drain, and releases everything.
   * Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const deadline = AbortSignal.timeout(this.config.core.shutdown_timeout);
    this.log.info('shutting down: no more polling; stopping job containers');
    this.stopping.abort(new Error('agent stopping'));
    await this.pollLoop;
    if (this.purgeTimer) clearTimeout(this.purgeTimer);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    for (const timer of this.timeouts.values()) clearTimeout(timer);
    this.timeouts.clear();
    for (const timer of this.removals.values()) clearTimeout(timer);
    this.removals.clear();

    const work = (async () => {
      await Promise.allSettled([...this.chains.values()]);
      for (const id of this.queue.splice(0)) {
        await this.serial(id, () =>
          this.endJob(id, 'agent-shutdown', { reason: 'shutdown', message: 'the agent shut down before the job could start' }),
        );
      }
      const running = this.store.listActive().filter((j) => holdsSlot(j.state));
      await Promise.allSettled(
        running.map((j) =>
          this.serial(j.id, async () => {
            if (j.state === 'completed') return this.stopAfterCompletion(j.id);
            await this.endJob(j.id, 'agent-shutdown', {
              reason: 'shutdown',
              message: 'the agent shut down while the job was running; its container was stopped',
              includeLogs: true,
            });
          }),
        ),
      );
      if (this.config.core.remove_stopped_containers_on_terminate) {
        const stopped = this.store.listActive().filter((j) => j.state === 'stopped');
        await Promise.allSettled(stopped.map((j) => this.serial(j.id, async () => void (await this.removeJobContainer(j.id)))));
      }
      await this.outbox.drain(deadline);
    })();
    await Promise.race([work, new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve(), { once: true }))]);
    if (deadline.aborted) this.log.warn({ shutdownTimeoutMs: this.config.core.shutdown_timeout }, 'shutdown took too long; leaving the rest for the next start');
    else if (this.outbox.backlog > 0) this.log.warn({ backlog: this.outbox.backlog }, 'undelivered callbacks stay stored for the next start');

    await this.outbox.close();
    await this.jobApi.close();
    await this.watchLoop;
    this.store.close();
    this.log.info('agent stopped');
  }
}

