import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { CallbackOutbox } from '../callbacks/outbox.ts';
import type { Config } from '../config/types.ts';
import { Poller } from '../control/poller.ts';
import { HEADER, userAgentFor } from '../protocol/wire.ts';
import { DockerExecutor, type DockerExecutorOptions } from '../executor/docker/docker-executor.ts';
import { RegistryAuth } from '../executor/docker/registry-auth.ts';
import type { Executor } from '../executor/executor.ts';
import { SwarmExecutor } from '../executor/swarm/swarm-executor.ts';
import { createJobApi } from '../job-api/server.ts';
import type { JobStore } from '../jobs/store.ts';
import { LogStore } from '../logs/log-store.ts';
import { LogShipper } from '../logs/shipper.ts';
import type { Clock } from '../shared/clock.ts';
import type { BackoffPolicy } from '../shared/backoff.ts';
import { redactUrl } from '../shared/redact.ts';
import { ImageCache } from '../images/cache.ts';
import { HostFactsHeader } from './facts.ts';
import type { Tracing } from '../tracing/job-trace.ts';
import { Supervisor } from './supervisor.ts';
import { createJobApiBackend } from './job/api-backend.ts';
import { jobPolicy } from './job/policy.ts';
import type { AgentMetrics } from './metrics.ts';
import { LiveLogs } from './job/live-log.ts';
import { JobHooks } from './job/hooks.ts';
import { JobSecrets } from './job/secrets.ts';
import { JobEndpoints } from './job/naming.ts';
import { OneShot, type OneShotOptions } from './one-shot.ts';
import { Reconciler } from './reconciler.ts';
import { Scheduler } from './job/scheduler.ts';

/** Every retry policy of the agent, in one place. */
export const BACKOFF = {
  /** Callback deliveries. */
  callbacks: { baseMs: 500, maxMs: 30_000 },
  /** Sending job logs. */
  logs: { baseMs: 500, maxMs: 10_000 },
  /** Reading a container's output while the engine does not answer. */
  logReads: { baseMs: 500, maxMs: 10_000 },
  /** Reconnecting to the engine. */
  engine: { baseMs: 500, maxMs: 10_000 },
  /** Removing a container the engine refused to remove. */
  removal: { baseMs: 1000, maxMs: 30_000 },
  /** Failed polls: never faster than poll_frequency, at most a minute apart (or poll_frequency when longer). */
  polls: (pollFrequencyMs: number): BackoffPolicy => ({ baseMs: Math.max(pollFrequencyMs, 100), maxMs: Math.max(pollFrequencyMs, 60_000) }),
} as const;

/** How long a container gets between SIGTERM and SIGKILL when the agent stops it. */
const STOP_GRACE_MS = 10_000;
/** How long removing a stopped container waits for its output to be read to the end. */
const FOLLOW_WAIT_MS = 60_000;
/** `x-foreman-images` lists at most this many images, in at most this many bytes. */
const IMAGES_HEADER_ENTRIES = 50;
const IMAGES_HEADER_BYTES = 4096;
/** How long lines read from a container wait to be stored together (one transaction for all of them). */
const LOG_FLUSH_MS = 100;
/** A moment past a hook's timeout for its kill to land. */
const HOOK_KILL_MS = 5000;
/** Wait before starting jobs again after the store refused to record a start. */
const LAUNCH_RETRY_MS = 1000;

export interface AgentDeps {
  readonly store: JobStore;
  readonly executor: Executor;
  readonly log: Logger;
  readonly clock: Clock;
  readonly version: string;
  readonly metrics?: AgentMetrics | undefined;
  /** One-shot runs, from the command line. */
  readonly oneShot?: OneShotOptions | undefined;
  /** Where live job logs are kept; in memory when not given (tests). */
  readonly logStore?: LogStore | undefined;
  /** Every job's trace, when `[tracing]` is configured (src/tracing/otel.ts, loaded only then). */
  readonly tracing?: Tracing | undefined;
}

/** The executor's settings from the config: the job network and how every job container is hardened and limited. */
export function executorSettings(config: Config): Omit<DockerExecutorOptions, 'docker' | 'agentId' | 'log'> {
  const { core, docker } = config;
  return {
    networkName: core.network_name,
    extraHosts: core.extra_hosts,
    memoryLimit: docker.memory_limit,
    cpus: docker.cpus,
    pidsLimit: docker.pids_limit,
    capAdd: docker.cap_add,
    user: docker.user,
    readOnlyRootfs: docker.read_only_rootfs,
    runtime: docker.runtime,
    registryAuth: new RegistryAuth(docker.registries),
  };
}

/** The executor `core.executor` names, on the engine at `docker.url`; `metrics`, when served, times its pulls. */
export function createExecutor(config: Config, docker: Docker, agentId: string, log: Logger, clock: Clock, metrics?: AgentMetrics): Executor {
  const onPull = metrics ? (result: 'success' | 'failure' | 'canceled', seconds: number) => metrics.pullDuration.observe({ result }, seconds) : undefined;
  const options = { docker, agentId, log, onPull, ...executorSettings(config) };
  return config.core.executor === 'swarm' ? new SwarmExecutor({ ...options, clock }) : new DockerExecutor(options);
}

/** Why this agent cannot deliver jobs' secrets as files, if it cannot. */
function secretsUnsupported(config: Config): string | undefined {
  if (config.core.executor === 'swarm') {
    return "the swarm executor does not take jobs with secrets: Swarm's own secrets are kept at rest in the cluster's store, and its tasks may run on nodes whose disks this agent cannot write to (use the docker executor)";
  }
  const url = config.docker.url;
  if (!url.startsWith('unix://') && !url.startsWith('/'))
    return `jobs with secrets need the engine on this host (docker.url is ${redactUrl(url)}): their files are written to docker.secrets_dir here`;
  return undefined;
}

/**
 * The composition root: builds every part of the agent from the compiled config, turning it into
 * the options each part takes. No other module sees the whole `Config`.
 */
export function composeAgent(config: Config, deps: AgentDeps): Supervisor {
  const { store, executor, log, clock, metrics, tracing } = deps;
  const core = config.core;
  const userAgent = userAgentFor(deps.version);
  const logStore = deps.logStore ?? new LogStore(':memory:', () => clock.now());
  const requestTimeoutMs = Math.max(core.poll_timeout, 1000);
  const shipper = new LogShipper({
    store: logStore,
    log,
    clock,
    userAgent,
    agentId: store.agentId,
    requestTimeoutMs,
    backoff: BACKOFF.logs,
    maxAgeMs: core.callback_max_age,
    traceBatch: tracing ? (jobId, url, details) => tracing.logBatch(jobId, url, details) : undefined,
  });
  const secrets = new JobSecrets(log, {
    dir: config.docker.secrets_dir,
    agentId: store.agentId,
    unsupported: secretsUnsupported(config),
    user: config.docker.user,
  });
  // Files a previous run left: its jobs with secrets end now (their values were in its memory only).
  secrets.sweep();
  const logs = new LiveLogs(
    { store: logStore, shipper, executor, log, clock, hidden: (jobId) => secrets.hidden(jobId) },
    { maxBytes: core.max_log_bytes, secrets: Object.values(core.env), backoff: BACKOFF.logReads, followWaitMs: FOLLOW_WAIT_MS, flushMs: LOG_FLUSH_MS },
  );
  const hooks =
    config.hooks.pre_job.length > 0 || config.hooks.post_job.length > 0
      ? new JobHooks(
          { store, log, clock },
          {
            preJob: config.hooks.pre_job,
            postJob: config.hooks.post_job,
            timeoutMs: config.hooks.timeout,
            agentId: store.agentId,
            // The container's stop, the hook, and a moment for its kill to land.
            settleWaitMs: STOP_GRACE_MS + config.hooks.timeout + HOOK_KILL_MS,
          },
        )
      : undefined;
  const outbox = new CallbackOutbox({
    store,
    log,
    clock,
    userAgent,
    maxAgeMs: core.callback_max_age,
    requestTimeoutMs,
    backoff: BACKOFF.callbacks,
    traceAttempt: tracing ? (delivery, attempt) => tracing.deliveryAttempt(delivery, attempt) : undefined,
    onSettled: (delivery, result) => {
      tracing?.deliverySettled(delivery, result);
      metrics?.deliveries.inc({ result });
      metrics?.deliveryLatency.observe({ result }, Math.max(0, clock.now() - delivery.createdAt) / 1000);
    },
    onCancel: (ids) => scheduler.cancel(ids),
    beforeFinal: async (jobId, signal) => void (await Promise.all([logs.settled(jobId, signal), hooks?.settled(jobId, signal)])),
    finalize: hooks ? (delivery) => hooks.stamp(delivery) : undefined,
  });
  const deliver = outbox.enqueue.bind(outbox);
  const endpoints = new JobEndpoints();
  const images = new ImageCache(
    {
      engine: {
        ensureImage: (image, alwaysPull, signal) => executor.ensureImage(image, alwaysPull, signal),
        imageInfo: (image) => executor.imageInfo(image),
        removeImage: (image) => executor.removeImage(image),
        freeBytes: async () => (await executor.hostFacts()).diskFreeBytes,
      },
      records: store,
      clock,
      log,
      // Every job the store still tracks, queued or launching or running: its image stays.
      needed: () => new Set(store.listActive().map((job) => job.spec.image)),
      onRemoved: (_ref, reason) => metrics?.imagesRemoved.inc({ reason }),
    },
    {
      budgetBytes: config.images.budget_bytes,
      lowFreeBytes: config.images.low_free_bytes,
      highFreeBytes: config.images.high_free_bytes,
      headerEntries: IMAGES_HEADER_ENTRIES,
      headerBytes: IMAGES_HEADER_BYTES,
    },
  );
  const facts = new HostFactsHeader(executor, core.executor, log);
  const scheduler = new Scheduler(
    {
      store,
      executor,
      log,
      clock,
      agentId: store.agentId,
      endpoints,
      deliver,
      images,
      metrics,
      logs,
      tracing,
      hooks,
      secrets,
      options: {
        completionTimeoutMs: core.job_completion_timeout,
        removalTimeoutMs: core.job_removal_timeout,
        stopGraceMs: STOP_GRACE_MS,
        removalBackoff: BACKOFF.removal,
        cancelGraceMs: core.cancel_grace_period,
        stallTimeoutMs: core.stall_timeout,
        usageIntervalMs: core.usage_interval,
        memoryLimit: config.docker.memory_limit,
        env: core.env,
      },
    },
    {
      maxConcurrentJobs: core.max_concurrent_jobs,
      launchRetryMs: LAUNCH_RETRY_MS,
      maxJobs: deps.oneShot?.maxJobs,
      policy: jobPolicy({
        allowedImages: config.docker.allowed_images,
        cpus: config.docker.cpus,
        memory: config.docker.memory_limit,
        pids: config.docker.pids_limit,
        maxTimeout: core.max_job_timeout,
      }),
    },
  );
  const jobApi = createJobApi({
    log,
    maxBodySize: core.max_body_size,
    backend: createJobApiBackend({ store, runner: (id) => scheduler.runnerFor(id) }),
  });
  const poller = new Poller({
    url: core.url,
    token: core.token,
    labels: core.labels,
    agentId: store.agentId,
    userAgent,
    pollFrequencyMs: core.poll_frequency,
    pollTimeoutMs: core.poll_timeout,
    backoff: BACKOFF.polls(core.poll_frequency),
    clock,
    log,
    freeSlots: () => scheduler.freeSlots(),
    onPolled: metrics ? (result) => metrics.polls.inc({ result }) : undefined,
    onJobs: (entries) => {
      // Containers call the job API soon after they start.
      jobApi.prepare();
      return scheduler.receive(entries);
    },
    onCancel: (ids) => scheduler.cancel(ids),
    extraHeaders: () => ({ [HEADER.attributes]: facts.header, [HEADER.images]: images.header() }),
  });
  const reconciler = new Reconciler({ store, executor, scheduler, log });
  const oneShot = new OneShot({ clock, log, idle: () => scheduler.idle && outbox.backlog === 0, allTaken: () => scheduler.allTaken }, deps.oneShot ?? {});
  return new Supervisor(
    { store, executor, log, clock, outbox, logs, jobApi, endpoints, poller, scheduler, reconciler, oneShot, facts, images, hooks },
    {
      // For log lines only: without credentials.
      engineUrl: redactUrl(config.docker.url),
      listen: { hostname: core.hostname, listen_address: core.listen_address, extra_hosts: core.extra_hosts, network_name: core.network_name },
      port: core.port,
      pollUrl: redactUrl(core.url),
      maxConcurrentJobs: core.max_concurrent_jobs,
      shutdownTimeoutMs: core.shutdown_timeout,
      drainTimeoutMs: core.drain_timeout,
      detachOnTerminate: core.detach_on_terminate,
      removeStoppedOnTerminate: core.remove_stopped_containers_on_terminate,
      jobRetentionMs: core.job_retention,
      engineBackoff: BACKOFF.engine,
    },
  );
}
