import type { Logger } from 'pino';
import type { Executor } from '../executor/executor.ts';
import { describeHttpError } from '../shared/backoff.ts';
import type { HostFacts } from '../shared/engine-facts.ts';

/**
 * `x-foreman-attributes`: what this agent's host offers, as `key=value` pairs (keys and values URL-encoded, joined
 * by commas, as `x-foreman-labels`): `arch`, `os`, `cpus`, `memory` (bytes), `disk_free` (bytes where the engine
 * keeps images, when the agent can see that file system), `engine` (`docker`, `podman`), `engine_version`,
 * `runtimes` (comma-separated), `executor` (`docker`, `swarm`).
 */
export function encodeAttributes(facts: HostFacts, executor: string): string {
  const pairs: Array<[string, string | number | undefined]> = [
    ['arch', facts.arch],
    ['os', facts.os],
    ['cpus', facts.cpus],
    ['memory', facts.memoryBytes],
    ['disk_free', facts.diskFreeBytes],
    ['engine', facts.engine],
    ['engine_version', facts.engineVersion],
    ['runtimes', facts.runtimes.join(',')],
    ['executor', executor],
  ];
  return pairs
    .filter((pair): pair is [string, string | number] => pair[1] !== undefined && pair[1] !== '')
    .map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`)
    .join(',');
}

/** The host facts the agent sends, asked of the engine at start and then on a timer, never per poll. */
export class HostFactsHeader {
  private readonly executor: Pick<Executor, 'hostFacts'>;
  private readonly executorKind: string;
  private readonly log: Logger;
  private value = '';
  private failedBefore = false;

  constructor(executor: Pick<Executor, 'hostFacts'>, executorKind: string, log: Logger) {
    this.executor = executor;
    this.executorKind = executorKind;
    this.log = log;
  }

  /** The last value; empty until the engine first answered. */
  get header(): string {
    return this.value;
  }

  /** Asks the engine again; keeps the last value when it does not answer. Never throws. */
  async refresh(): Promise<void> {
    try {
      this.value = encodeAttributes(await this.executor.hostFacts(), this.executorKind);
      this.failedBefore = false;
    } catch (err) {
      if (!this.failedBefore) this.log.warn({ reason: describeHttpError(err) }, 'could not read the host facts from the engine; sending the last ones');
      this.failedBefore = true;
    }
  }
}
