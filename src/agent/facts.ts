import type { Logger } from 'pino';
import type { Executor } from '../executor/executor.ts';
import { describeHttpError } from '../shared/backoff.ts';
import { encodeAttributes } from '../protocol/wire.ts';

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
