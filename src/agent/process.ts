import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { Config, LoadedConfig } from '../config/types.ts';
import { createDockerClient } from '../executor/docker/client.ts';
import type { Executor } from '../executor/executor.ts';
import { DataDirInUseError } from '../jobs/data-dir-lock.ts';
import { SqliteStore } from '../jobs/sqlite-store.ts';
import { LogStore } from '../logs/log-store.ts';
import { describeHttpError } from '../shared/backoff.ts';
import { systemClock, type Timer } from '../shared/clock.ts';
import { redactUrl } from '../shared/redact.ts';
import type { Tracing } from '../tracing/job-trace.ts';
import type { OneShotOptions } from './one-shot.ts';
import { composeAgent, createExecutor } from './compose.ts';
import { textLine } from './log-text.ts';
import { probeSocketPath, serveProbesOnAddress, serveProbesOnSocket, type HealthProbes, type ProbeListener } from './probes.ts';

// The command line reaches the rest of the agent only through this module.
export { ConfigError } from '../config/errors.ts';
export { loadConfig, loadDataDir } from '../config/load.ts';
export { probeSocketPath, socketPathProblem } from './probes.ts';
// For the single executable (src/cli/sea.ts), which carries better-sqlite3's native addon itself.
export { setSqliteNativeBinding } from '../shared/sqlite-binding.ts';

export interface RunOptions {
  readonly version: string;
  /** Prints one line for the user on stderr, before logging is set up. */
  readonly complain: (line: string) => void;
  /** Tests pass their own; by default the process's SIGINT/SIGTERM stop the agent. */
  readonly signals?: NodeJS.EventEmitter;
  /** `--max-jobs`, `--exit-when-idle`. */
  readonly oneShot?: OneShotOptions;
}

/** How long the first log line waits for the engine's version before it says the engine has not answered yet. */
const BANNER_ENGINE_WAIT_MS = 2000;

/**
 * The agent's logger: pino's JSON lines on stdout, or (`log.format = "text"`) the same lines for a terminal. With
 * `traceFields`, a line about a job (one with a `jobId`) carries its trace's `traceId` and `spanId`.
 */
export function createLogger(settings: Config['log'], traceFields?: (jobId: string) => object | undefined): Logger {
  const mixin = traceFields
    ? (fields: object): object => {
        const jobId = (fields as { jobId?: unknown }).jobId;
        return (typeof jobId === 'string' && traceFields(jobId)) || {};
      }
    : undefined;
  const options = { level: settings.level, base: { agent: 'foreman' }, ...(mixin ? { mixin } : {}) };
  if (settings.format === 'json') return pino(options);
  const out = pino.destination({ fd: 1, sync: true });
  return pino(options, { write: (line: string) => out.write(textLine(line)) });
}

/**
 * Runs the agent until SIGINT/SIGTERM (or a one-shot run is done) and resolves with the exit code.
 * The first signal shuts down cleanly (draining first when `drain_timeout` is set); a second ends
 * the drain at once, or, when there is none, exits at once.
 */
export async function runAgentProcess(loaded: LoadedConfig, options: RunOptions): Promise<number> {
  const { config } = loaded;
  // Log lines name a job's trace once tracing (started below, when configured) holds it.
  const traced: { tracing?: Tracing | undefined } = {};
  const log = createLogger(config.log, config.tracing.endpoint ? (jobId) => traced.tracing?.logFields(jobId) : undefined);

  let store: SqliteStore;
  try {
    store = SqliteStore.open({ dataDir: config.core.data_dir, log });
  } catch (err) {
    const reason = err instanceof DataDirInUseError ? err.message : `cannot open the store in ${config.core.data_dir}: ${describeHttpError(err)}`;
    options.complain(reason);
    return 1;
  }
  // prom-client costs memory at load, so it is only loaded when metrics are served.
  const metricsModule = config.metrics.address ? await import('./metrics.ts') : undefined;
  const metrics = metricsModule ? new metricsModule.AgentMetrics({ version: options.version, node: process.version }) : undefined;
  // OpenTelemetry too: only when tracing is configured.
  const tracing = config.tracing.endpoint ? await startTracing(config, store, log, options.version) : undefined;
  traced.tracing = tracing;
  const executor = createExecutor(config, createDockerClient(config.docker.url, config.docker), store.agentId, log, systemClock, metrics);
  // Asked now, answered while the rest is built: the first line waits for it, nothing else does.
  const engine = engineVersion(executor);
  let logStore: LogStore;
  try {
    logStore = new LogStore(join(config.core.data_dir, 'logs.db'));
  } catch (err) {
    store.close();
    options.complain(`cannot open the log store in ${config.core.data_dir}: ${describeHttpError(err)}`);
    return 1;
  }
  const agent = composeAgent(config, {
    store,
    executor,
    log,
    clock: systemClock,
    version: options.version,
    metrics,
    oneShot: options.oneShot,
    logStore,
    tracing,
  });
  metrics?.observe(() => agent.snapshot());
  log.info(
    {
      version: options.version,
      node: process.version,
      agentId: store.agentId,
      executor: config.core.executor,
      engine: redactUrl(config.docker.url),
      ...(await engine),
      dataDir: config.core.data_dir,
      ...(tracing ? { tracing: redactUrl(config.tracing.endpoint) } : {}),
    },
    `foreman ${options.version} starting`,
  );
  for (const warning of loaded.warnings) log.warn(warning);

  const signals = options.signals ?? process;
  let stopRequested: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  let signalCount = 0;
  let drainCut = false;
  const onSignal = (name: string): void => {
    signalCount++;
    if (signalCount === 1) {
      const drains = config.core.drain_timeout > 0;
      log.info({ signal: name }, drains ? 'stopping; send the signal again to end the drain at once' : 'stopping; send the signal again to exit at once');
      stopRequested();
    } else if (agent.draining && !drainCut) {
      drainCut = true;
      log.warn({ signal: name }, 'second signal: ending the drain now');
      agent.endDrain();
    } else {
      log.warn({ signal: name }, 'second signal: exiting now');
      process.exit(130);
    }
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);

  // The probes are served before the agent starts: it is alive while it waits for the engine.
  const probes: HealthProbes = { health: () => agent.health(), ready: () => agent.ready() };
  const listeners = await serveProbes(log, config, probes);
  const metricsServer =
    metricsModule && metrics
      ? await metricsModule.serveMetrics(metrics, config.metrics.address, probes).catch((err: unknown) => {
          log.error({ address: config.metrics.address, reason: describeHttpError(err) }, 'could not serve metrics');
          return undefined;
        })
      : undefined;

  let code = 0;
  const finished = Promise.race([stopped, agent.done]);
  try {
    await Promise.race([agent.start(), finished]);
    await finished;
  } catch (err) {
    log.error({ reason: describeHttpError(err) }, 'the agent could not start');
    code = 1;
  } finally {
    await agent.close();
    await tracing?.close();
    await metricsServer?.close();
    await Promise.allSettled(listeners.map((listener) => listener.close()));
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
  return code;
}

/** Tracing on OpenTelemetry's SDK, loaded now; undefined (and said so) when it cannot start: the agent runs untraced. */
async function startTracing(config: Config, store: SqliteStore, log: Logger, version: string): Promise<Tracing | undefined> {
  try {
    const { createTracing } = await import('../tracing/otel.ts');
    return createTracing({
      endpoint: config.tracing.endpoint,
      serviceName: config.tracing.service_name,
      version,
      agentId: store.agentId,
      log,
      clock: systemClock,
      lookup: (jobId) => store.get(jobId)?.trace ?? undefined,
    });
  } catch (err) {
    log.error({ endpoint: redactUrl(config.tracing.endpoint), reason: describeHttpError(err) }, 'could not start tracing; running without it');
    return undefined;
  }
}

/** The engine's version for the first log line, or why there is none yet (it does not wait long: the agent waits for an engine later). */
async function engineVersion(executor: Executor): Promise<{ engineVersion: string } | { engineProblem: string }> {
  let timer: Timer | undefined;
  try {
    return await Promise.race([
      executor.version().then(
        (version) => ({ engineVersion: version }),
        (err: unknown) => ({ engineProblem: describeHttpError(err) }),
      ),
      new Promise<{ engineProblem: string }>((resolve) => {
        timer = systemClock.after(BANNER_ENGINE_WAIT_MS, () => resolve({ engineProblem: `no answer within ${BANNER_ENGINE_WAIT_MS} ms` }), { unref: true });
      }),
    ]);
  } finally {
    timer?.cancel();
  }
}

/** The probes on the agent's socket in data_dir (for `foreman ping`) and on `health.address`; a listener that fails is logged, not fatal. */
async function serveProbes(log: Logger, config: Config, probes: HealthProbes): Promise<ProbeListener[]> {
  const listeners: ProbeListener[] = [];
  const attempts: Array<[what: string, where: string, serve: () => Promise<ProbeListener>]> = [
    [
      'the probe socket (foreman ping will not reach the agent)',
      probeSocketPath(config.core.data_dir),
      () => serveProbesOnSocket(probes, probeSocketPath(config.core.data_dir)),
    ],
  ];
  if (config.health.address) attempts.push(['health.address', config.health.address, () => serveProbesOnAddress(probes, config.health.address)]);
  for (const [what, where, serve] of attempts) {
    try {
      const listener = await serve();
      listeners.push(listener);
      log.debug({ listen: listener.where }, 'serving /healthz and /readyz');
    } catch (err) {
      log.error({ listen: where, reason: describeHttpError(err) }, `could not serve ${what}`);
    }
  }
  return listeners;
}
