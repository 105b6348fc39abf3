import pino from 'pino';
import type { LoadedConfig } from '../config/types.ts';
import { DockerExecutor } from '../executor/docker/docker-executor.ts';
import { createDockerClient } from '../executor/docker/client.ts';
import { DataDirInUseError } from '../jobs/data-dir-lock.ts';
import { SqliteStore } from '../jobs/sqlite-store.ts';
import { systemClock } from '../shared/clock.ts';
import { describeHttpError } from '../shared/backoff.ts';
import { Agent } from './agent.ts';

export interface RunOptions {
  readonly version: string;
  /** Prints one line for the user on stderr, before logging is set up. */
  readonly complain: (line: string) => void;
  /** Tests pass their own; by default the process's SIGINT/SIGTERM stop the agent. */
  readonly signals?: NodeJS.EventEmitter;
}

/**
 * Runs the agent until SIGINT/SIGTERM and resolves with the exit code.
 * The first signal shuts down cleanly; a second exits at once.
 */
export async function runAgent(loaded: LoadedConfig, options: RunOptions): Promise<number> {
  const { config } = loaded;
  const log = pino({ level: config.log.level, base: { agent: 'foreman' } });
  for (const warning of loaded.warnings) log.warn(warning);

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
  const metrics = metricsModule ? new metricsModule.AgentMetrics() : undefined;
  const executor = new DockerExecutor({
    docker: createDockerClient(config.docker.url),
    agentId: store.agentId,
    networkName: config.core.network_name,
    extraHosts: config.core.extra_hosts,
    memoryLimit: config.docker.memory_limit,
  });
  const agent = new Agent({ config, store, executor, log, clock: systemClock, version: options.version, metrics });

  const signals = options.signals ?? process;
  let stopRequested: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  let signalCount = 0;
  const onSignal = (name: string): void => {
    signalCount++;
    if (signalCount === 1) {
      log.info({ signal: name }, 'stopping; send the signal again to exit at once');
      stopRequested();
    } else {
      log.warn({ signal: name }, 'second signal: exiting now');
      process.exit(130);
    }
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);

  const metricsServer =
    metricsModule && metrics
      ? await metricsModule.serveMetrics(metrics, config.metrics.address).catch((err: unknown) => {
          log.error({ address: config.metrics.address, reason: describeHttpError(err) }, 'could not serve metrics');
          return undefined;
        })
      : undefined;

  let code = 0;
  try {
    await Promise.race([agent.start(), stopped]);
    await stopped;
  } catch (err) {
    log.error({ reason: describeHttpError(err) }, 'the agent could not start');
    code = 1;
  } finally {
    await agent.close();
    await metricsServer?.close();
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
  return code;
}
