import type { JobRecord } from '../../jobs/store.ts';
import { backoffDelay, type BackoffPolicy } from '../../shared/backoff.ts';
import type { Clock } from '../../shared/clock.ts';
import { TimerSet } from '../../shared/timer-set.ts';

/** What a job's clocks do when they run out: the runner turns each into a step of its own. */
export interface ClockAlarms {
  /** The image pull and container start did not finish within the completion timeout (`own`: the job's `timeout`). */
  launchTimedOut(timeoutMs: number, own: boolean): void;
  /** The container did not report `completed` within the completion timeout, counted from its start. */
  completionTimedOut(timeoutMs: number, own: boolean): void;
  /** No update was accepted for `stallMs`. */
  stalled(stallMs: number): void;
  /** A cancel's grace period ended and the container still runs. */
  graceOver(): void;
  /** The stopped container is due for removal (`attempt` 0 the first time, then retries). */
  removalDue(attempt: number): void;
}

export interface ClockSettings {
  readonly completionTimeoutMs: number;
  readonly stallTimeoutMs: number;
  readonly removalTimeoutMs: number;
  readonly removalBackoff: BackoffPolicy;
}

/**
 * One job's timers: the completion timeout (from the launch, then from container start), the stall
 * timeout (from container start, then from the last accepted update), the kill after a cancel's grace
 * period, and the removal of its stopped container. Each is one timer however often it is re-armed.
 */
export class JobClocks {
  private readonly timers: TimerSet<'launch' | 'completion' | 'stall' | 'kill' | 'removal'>;
  private readonly clock: Clock;
  private readonly settings: ClockSettings;
  private readonly alarms: ClockAlarms;
  /** When the container's last update was accepted (or it started): the stall clock. */
  private lastTouch = 0;

  constructor(clock: Clock, settings: ClockSettings, alarms: ClockAlarms) {
    this.clock = clock;
    this.settings = settings;
    this.alarms = alarms;
    this.timers = new TimerSet(clock);
  }

  /** The job's own `timeout`, else `core.job_completion_timeout`. */
  completionTimeoutMs(job: JobRecord): number {
    return job.spec.timeout ?? this.settings.completionTimeoutMs;
  }

  /** While pulling and creating, the completion timeout counts from the launch; it starts again at container start. */
  armLaunch(job: JobRecord): void {
    const timeoutMs = this.completionTimeoutMs(job);
    this.timers.set('launch', timeoutMs, () => this.alarms.launchTimedOut(timeoutMs, job.spec.timeout !== undefined));
  }

  /** The container runs: the completion timeout from its start, and the stall timeout from its last update. */
  armRunning(job: JobRecord): void {
    this.timers.cancel('launch');
    if (job.startedAt === null) return;
    if (!this.timers.has('completion')) {
      const timeoutMs = this.completionTimeoutMs(job);
      const remaining = Math.max(0, job.startedAt + timeoutMs - this.clock.now());
      this.timers.set('completion', remaining, () => this.alarms.completionTimedOut(timeoutMs, job.spec.timeout !== undefined));
    }
    const stallMs = job.spec.stallTimeout ?? this.settings.stallTimeoutMs;
    if (stallMs > 0 && !this.timers.has('stall')) {
      this.touched(job.lastUpdateAt ?? job.startedAt);
      this.armStall(stallMs);
    }
  }

  /** An update was accepted at `at`: the stall clock starts again (the timer itself moves only when it fires). */
  touched(at: number): void {
    this.lastTouch = Math.max(this.lastTouch, at);
  }

  /** The kill `remainingMs` from now, unless one is armed already (a cancel carried over a restart keeps its deadline). */
  armKill(remainingMs: number): void {
    if (!this.timers.has('kill')) this.timers.set('kill', remainingMs, () => this.alarms.graceOver());
  }

  /** Removal of the stopped container: `job_removal_timeout` after it stopped, then retries with backoff. */
  armRemoval(job: JobRecord, attempt = 0): void {
    if (this.timers.has('removal')) return;
    const now = this.clock.now();
    const due = (job.stoppedAt ?? now) + this.settings.removalTimeoutMs;
    const delay = attempt === 0 ? Math.max(0, due - now) : backoffDelay(this.settings.removalBackoff, attempt);
    this.timers.set('removal', delay, () => this.alarms.removalDue(attempt));
  }

  /** The job ended or its container is being stopped: no timeout or stall fires any more. */
  stopRunning(): void {
    this.timers.cancel('launch', 'completion', 'stall');
  }

  /** The container is stopped: the kill of a cancel is moot too. */
  stopped(): void {
    this.timers.cancel('launch', 'completion', 'stall', 'kill');
  }

  /** The agent is going away: nothing more but the kill of a cancel under way. */
  leave(): void {
    this.timers.cancel('launch', 'completion', 'stall', 'removal');
  }

  /** One timer per job, however many updates arrive: when it fires early, it waits for the rest. */
  private armStall(stallMs: number): void {
    const due = this.lastTouch + stallMs - this.clock.now();
    this.timers.set('stall', Math.max(0, due), () => {
      if (this.lastTouch + stallMs > this.clock.now()) return this.armStall(stallMs);
      this.alarms.stalled(stallMs);
    });
  }
}
