/** Fakes wired together for the unit tests of the scheduler, the runner and the supervisor: no Docker, no disk, no waiting. */
import pino from 'pino';
import { FakeExecutor } from '../executor/fake/fake-executor.ts';
import { MemoryStore } from '../jobs/memory-store.ts';
import type { Delivery } from '../shared/delivery.ts';
import { ManualClock } from './clock-kit.ts';
import type { RunnerContext } from '../agent/job/context.ts';
import { JobEndpoints } from '../agent/job/naming.ts';
import type { JobPolicy } from '../agent/job/policy.ts';
import { Scheduler } from '../agent/job/scheduler.ts';
import { HEADER } from '../protocol/wire.ts';
import type { Tracing } from '../tracing/job-trace.ts';

export const IMAGE = 'fake/job:1';

export interface KitOptions {
  readonly maxConcurrentJobs?: number;
  readonly completionTimeoutMs?: number;
  readonly removalTimeoutMs?: number;
  readonly cancelGraceMs?: number;
  readonly stallTimeoutMs?: number;
  readonly maxJobs?: number;
  /** The admin's limits (src/agent/job/policy.ts), as compose.ts gives them. */
  readonly policy?: JobPolicy;
  readonly usageIntervalMs?: number;
  readonly memoryLimit?: number;
  /** The store, engine and clock of another kit: a second agent on them, as after a restart. */
  readonly share?: { readonly clock: ManualClock; readonly store: MemoryStore; readonly executor: FakeExecutor };
  /** Every job's trace (src/tracing/otel.ts with an in-memory exporter, say). */
  readonly tracing?: Tracing;
}

export interface Report {
  readonly status: string | undefined;
  readonly outcome: string | undefined;
  readonly body: { outcome?: string; reason?: string; message?: string; exitCode?: number; logs?: string[] };
}

export function jobSpec(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, image: IMAGE, body: { n: 1 }, callbackUrl: 'http://127.0.0.1:9/cb', ...extra };
}

export function makeKit(options: KitOptions = {}) {
  const clock = options.share?.clock ?? new ManualClock();
  const store = options.share?.store ?? new MemoryStore({ now: () => clock.now() });
  const executor = options.share?.executor ?? new FakeExecutor({ agentId: store.agentId, images: [IMAGE], now: () => clock.now() });
  const delivered: Delivery[] = [];
  const endpoints = new JobEndpoints();
  endpoints.base = 'http://127.0.0.1:3000';
  const ctx: RunnerContext = {
    store,
    executor,
    log: pino({ level: 'silent' }),
    clock,
    agentId: store.agentId,
    endpoints,
    deliver: (d) => delivered.push(d),
    images: { ensure: (image, alwaysPull, signal) => executor.ensureImage(image, alwaysPull, signal), collect: () => Promise.resolve() },
    metrics: undefined,
    tracing: options.tracing,
    options: {
      completionTimeoutMs: options.completionTimeoutMs ?? 10_000,
      removalTimeoutMs: options.removalTimeoutMs ?? 5000,
      stopGraceMs: 10_000,
      removalBackoff: { baseMs: 1000, maxMs: 30_000 },
      cancelGraceMs: options.cancelGraceMs ?? 10_000,
      stallTimeoutMs: options.stallTimeoutMs ?? 0,
      env: { FROM_CORE: 'core' },
      usageIntervalMs: options.usageIntervalMs ?? 0,
      memoryLimit: options.memoryLimit ?? 0,
    },
  };
  const scheduler = new Scheduler(ctx, {
    maxConcurrentJobs: options.maxConcurrentJobs ?? 2,
    launchRetryMs: 1000,
    maxJobs: options.maxJobs,
    policy: options.policy,
  });
  scheduler.setEngineUp(true);
  // Engine events reach the runners as the supervisor would deliver them.
  const watching = new AbortController();
  void executor.watch((event) => scheduler.onEngineEvent(event), watching.signal);
  return {
    clock,
    store,
    executor,
    delivered,
    ctx,
    scheduler,
    /** What the callback would receive for a job, in order. */
    reports(id: string): Report[] {
      return delivered
        .filter((d) => d.jobId === id)
        .map((d) => ({
          status: d.headers[HEADER.jobStatus],
          outcome: d.headers[HEADER.jobOutcome],
          body: d.headers['content-type'] === 'application/json' ? (JSON.parse(d.body.toString()) as Report['body']) : {},
        }));
    },
    state(id: string): string | undefined {
      return store.get(id)?.state;
    },
  };
}

export type Kit = ReturnType<typeof makeKit>;
