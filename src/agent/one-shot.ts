import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.ts';
import { TimerSet } from '../shared/timer-set.ts';

export interface OneShotOptions {
  /** `--max-jobs N`: done once N jobs were taken, have ended and their reports are delivered. */
  readonly maxJobs?: number | undefined;
  /** `--exit-when-idle MS`: done after MS with nothing running, queued or left to deliver. */
  readonly exitWhenIdleMs?: number | undefined;
}

export interface OneShotDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** Nothing running, nothing queued, no report left to deliver. */
  readonly idle: () => boolean;
  /** Every job `--max-jobs` allows has been taken. */
  readonly allTaken: () => boolean;
}

/** How often a one-shot run looks whether it is done: often enough for a prompt exit, rarely enough to cost nothing. */
const CHECK_MS = 200;

/** For ephemeral hosts (one VM or pod per job): tells when a one-shot run is done. */
export class OneShot {
  private readonly deps: OneShotDeps;
  private readonly options: OneShotOptions;
  private readonly timers: TimerSet<'check'>;
  private idleSince: number | undefined;
  private resolveDone: () => void = () => undefined;
  /** Resolves once the run is done; never when neither option is set. */
  readonly done: Promise<void>;

  constructor(deps: OneShotDeps, options: OneShotOptions) {
    this.deps = deps;
    this.options = options;
    this.timers = new TimerSet(deps.clock);
    this.done = new Promise<void>((resolve) => (this.resolveDone = resolve));
  }

  get enabled(): boolean {
    return this.options.maxJobs !== undefined || this.options.exitWhenIdleMs !== undefined;
  }

  start(): void {
    if (this.enabled) this.check();
  }

  stop(): void {
    this.timers.cancelAll();
  }

  private check(): void {
    const { clock, log, idle, allTaken } = this.deps;
    const { maxJobs, exitWhenIdleMs } = this.options;
    const now = clock.now();
    const quiet = idle();
    this.idleSince = quiet ? (this.idleSince ?? now) : undefined;
    if (maxJobs !== undefined && quiet && allTaken()) {
      log.info({ maxJobs }, 'took --max-jobs jobs and every one has ended and been reported; exiting');
      return this.resolveDone();
    }
    if (exitWhenIdleMs !== undefined && this.idleSince !== undefined && now - this.idleSince >= exitWhenIdleMs) {
      log.info({ exitWhenIdleMs }, 'idle for --exit-when-idle; exiting');
      return this.resolveDone();
    }
    const untilIdle = exitWhenIdleMs !== undefined && this.idleSince !== undefined ? this.idleSince + exitWhenIdleMs - now : CHECK_MS;
    this.timers.set('check', Math.max(1, Math.min(CHECK_MS, untilIdle)), () => this.check());
  }
}
