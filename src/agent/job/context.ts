/** What a runner is given: the shared parts and options, and the hooks back to its owner (the scheduler). */
import type { Logger } from 'pino';
import type { Executor } from '../../executor/executor.ts';
import type { Delivery, JobStore } from '../../jobs/store.ts';
import type { BackoffPolicy } from '../../shared/backoff.ts';
import type { Clock } from '../../shared/clock.ts';
import type { Tracing } from '../../tracing/job-trace.ts';
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
}

/** What a job's parts record about it; the agent's Prometheus metrics (src/agent/metrics.ts) provide these. */
export interface JobMetrics {
  readonly jobsEnded: { inc(labels: { outcome: string }): void };
  readonly startLatency: { observe(seconds: number): void };
  readonly runTime: { observe(labels: { outcome: string }, seconds: number): void };
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
  readonly metrics: JobMetrics | undefined;
  /** Live job logs; unset in tests that do not need them. */
  readonly logs?: LiveLogs | undefined;
  /** Every job's trace, when tracing is configured (src/tracing/). */
  readonly tracing?: Tracing | undefined;
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
