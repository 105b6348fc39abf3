/** What a runner is given: the shared parts and options, and the hooks back to its owner (the scheduler). */
import type { Logger } from 'pino';
import type { Executor } from '../../executor/executor.ts';
import type { Delivery, JobStore } from '../../jobs/store.ts';
import type { BackoffPolicy } from '../../shared/backoff.ts';
import type { Clock } from '../../shared/clock.ts';
import type { JobUsage } from '../../protocol/wire.ts';
import type { Tracing } from '../../tracing/job-trace.ts';
import type { JobHooks } from './hooks.ts';
import type { JobSecrets } from './secrets.ts';
import type { LiveLogs } from './live-log.ts';
import type { JobEndpoints } from './naming.ts';

export interface RunnerOptions {
  readonly completionTimeoutMs: number;
  readonly removalTimeoutMs: number;
  /** How long a container gets between SIGTERM and SIGKILL when the agent stops it. */
  readonly stopGraceMs: number;
  /** Retries of a removal the engine refused. */
  readonly removalBackoff: BackoffPolicy;
  /** `core.cancel_grace_period`: between a canceled job's stop signal and its kill, unless the job sets its own. */
  readonly cancelGraceMs: number;
  /** `core.stall_timeout` (0: off), unless the job sets its own. */
  readonly stallTimeoutMs: number;
  /** `[core.env]`: laid over each job's own env. */
  readonly env: Readonly<Record<string, string>>;
  /** `core.usage_interval`: how often a running job's use is sampled (0: not at all, no usage in reports). */
  readonly usageIntervalMs: number;
  /** `docker.memory_limit` (0: none): a job's memory limit unless it asks for less. */
  readonly memoryLimit: number;
}

/** What a job's parts record about it; the agent's Prometheus metrics (src/agent/metrics.ts) provide these. */
export interface JobMetrics {
  readonly jobsEnded: { inc(labels: { outcome: string }): void };
  readonly startLatency: { observe(seconds: number): void };
  readonly runTime: { observe(labels: { outcome: string }, seconds: number): void };
  /** What an ended job's container used. */
  jobUsage?(usage: JobUsage): void;
}

/** What every runner shares: the agent's parts, handed down by the scheduler. */
export interface RunnerContext {
  readonly store: JobStore;
  readonly executor: Executor;
  readonly log: Logger;
  readonly clock: Clock;
  readonly agentId: string;
  readonly endpoints: JobEndpoints;
  readonly deliver: (delivery: Delivery) => void;
  /** Makes a job's image present: one pull for every job that needs it at once (src/images/cache.ts). */
  readonly images: {
    ensure(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void>;
    /** Removes what the budget says to; called once a job's container is gone, so its image may go. Never throws. */
    collect(): Promise<void>;
  };
  readonly metrics: JobMetrics | undefined;
  /** Live job logs; unset in tests that do not need them. */
  readonly logs?: LiveLogs | undefined;
  /** Every job's trace, when tracing is configured (src/tracing/). */
  readonly tracing?: Tracing | undefined;
  /** `[hooks]`: the operator's commands before and after each job; unset when none are configured. */
  readonly hooks?: JobHooks | undefined;
  /** Jobs' `secrets`: their values in memory, their files for the container; unset in tests that need none. */
  readonly secrets?: JobSecrets | undefined;
  readonly options: RunnerOptions;
}

/** How a runner tells its owner about its slot and its place in the queue. */
export interface RunnerHooks {
  /** The runner gave its slot back: its container is stopped, or it never got one. */
  slotFreed(): void;
  /** The job is pending again and waits for a slot: at the front after a failed start write, else at the back. */
  requeue(where: 'front' | 'back'): void;
  /** Nothing is left of the job in the engine; the runner can be forgotten. */
  finished(): void;
}
