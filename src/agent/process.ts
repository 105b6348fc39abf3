import { join } from 'node:path';
import pino from 'pino';
import type { LoadedConfig } from '../config/types.ts';
import { createDockerClient } from '../executor/docker/client.ts';
import { DataDirInUseError } from '../jobs/data-dir-lock.ts';
import { SqliteStore } from '../jobs/sqlite-store.ts';
import { LogStore } from '../logs/log-store.ts';
import { describeHttpError } from '../shared/backoff.ts';
import { systemClock } from '../shared/clock.ts';
import type { OneShotOptions } from './one-shot.ts';
import { composeAgent, createExecutor } from './compose.ts';

// The command line reaches the rest of the agent only through this module.
export { ConfigError } from '../config/errors.ts';
export { loadConfig } from '../config/load.ts';
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

/**
 * Runs the agent until SIGINT/SIGTERM (or a one-shot run is done) and resolves with the exit code.
 * The first signal shuts down cleanly (draining first when `drain_timeout` is set); a second ends
 * the drain at once, or, when there is none, exits at once.
 */
export async function runAgentProcess(loaded: LoadedConfig, options: RunOptions): Promise<number> {
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
  const executor = createExecutor(config, createDockerClient(config.docker.url, config.docker), store.agentId, log, systemClock);
  let logStore: LogStore;
  try {
    logStore = new LogStore(join(config.core.data_dir, 'logs.db'));
  } catch (err) {
    store.close();
    options.complain(`cannot open the log store in ${config.core.data_dir}: ${describeHttpError(err)}`);
    return 1;
  }
  const agent = composeAgent(config, { store, executor, log, clock: systemClock, version: options.version, metrics, oneShot: options.oneShot, logStore });

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

  const metricsServer =
    metricsModule && metrics
      ? await metricsModule
          .serveMetrics(metrics, config.metrics.address, { health: () => agent.health(), ready: () => agent.ready() })
          .catch((err: unknown) => {
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
    await metricsServer?.close();
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
  return code;
}
