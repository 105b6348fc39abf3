/**
 * What the agent's parts see of tracing: a `Tracing` for the agent and a `JobTrace` per job. Types and one
 * helper only, nothing of OpenTelemetry: src/tracing/otel.ts implements them, loaded by `import()` only when
 * tracing is configured, so an agent without it loads none of OpenTelemetry.
 */
import type { TraceIds } from '../shared/trace-ids.ts';

export type { TraceIds };

/** Attribute values a span takes. */
export type SpanAttributes = Readonly<Record<string, string | number | boolean | undefined>>;

/** What tracing needs of a job record (src/jobs/store.ts `JobRecord`). */
export interface TracedJob {
  readonly id: string;
  readonly spec: { readonly image: string } & Readonly<Record<string, unknown>>;
  readonly containerName: string;
  readonly containerId: string | null;
  readonly receivedAt: number;
  readonly startedAt: number | null;
  readonly stoppedAt: number | null;
  readonly trace: TraceIds | null;
}

/** The steps of a job that get a span of their own under its `foreman.job` span. */
export type JobStep = 'pull' | 'create' | 'start' | 'remove';

/** A span under way; `end` once (later calls do nothing). */
export interface StepSpan {
  end(error?: unknown, attributes?: SpanAttributes): void;
}

/** An outgoing request's span, and the trace context headers the request carries (`traceparent`, `tracestate`). */
export interface RequestSpan {
  readonly headers: Readonly<Record<string, string>>;
  /** The answer's status, or why there was none. */
  end(result: { readonly status?: number; readonly error?: string }): void;
}

/**
 * One job's trace, held by its runner: the `foreman.job` span (a child of the job's own `traceparent`, or a new
 * trace) and its children. Its ids are stored with the job, so after a restart `Tracing.forJob` continues the same
 * spans. Nothing here throws: tracing never fails a job.
 */
export interface JobTrace {
  /** The ids to store with the job. */
  readonly ids: TraceIds;
  /** True when this trace began now (its ids are new and must be stored), false when continued from stored ids. */
  readonly fresh: boolean;
  /** TRACEPARENT (and TRACESTATE) for the job's container, whose parent is the `foreman.run` span. */
  readonly containerEnv: Readonly<Record<string, string>>;
  step(step: JobStep, attributes?: SpanAttributes): StepSpan;
  /** The container runs (since `at`): the `foreman.run` span begins. */
  running(containerId: string, at: number): void;
  /** The job's outcome is decided (its report is queued): recorded on the `foreman.job` span. */
  ended(outcome: string, details?: { readonly reason?: string; readonly message?: string; readonly exitCode?: number | null }): void;
  /** The container stopped (at `at`): the `foreman.run` span ends. */
  stopped(at: number): void;
  /** Nothing is left of the job in the engine: the `foreman.job` span ends. */
  finished(): void;
}

/** The agent's tracing: every job's trace, the callback and log requests' spans, the log lines' trace fields. */
export interface Tracing {
  /** The job's trace: continued from `job.trace` when stored, else begun now (its queue wait recorded). */
  forJob(job: TracedJob): JobTrace;
  /** One callback delivery attempt (a child of the job's span, or of its `foreman.report` span for the final report). */
  deliveryAttempt(delivery: DeliveryInfo, attempt: number): RequestSpan | undefined;
  /** A delivery left the outbox: ends the `foreman.report` span of a final report. */
  deliverySettled(delivery: DeliveryInfo, result: string): void;
  /** One POST of a job's log (a batch of lines, or the end). */
  logBatch(jobId: string, url: string, details: { readonly offset: number; readonly lines: number; readonly end: boolean }): RequestSpan | undefined;
  /** `traceId` and `spanId` (of its `foreman.job` span) for a log line about this job, while the agent holds its trace. */
  logFields(jobId: string): { traceId: string; spanId: string } | undefined;
  /** Exports what is left (bounded in time) and stops. Safe to call twice. */
  close(): Promise<void>;
}

/** What tracing needs of a queued callback (src/shared/delivery.ts `Delivery`). */
export interface DeliveryInfo {
  readonly id: string;
  readonly jobId: string;
  readonly seq: number;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly createdAt: number;
}

/** Runs `work` inside a span of the step when the job is traced; the span ends with its result. */
export async function traced<T>(trace: JobTrace | undefined, step: JobStep, attributes: SpanAttributes, work: () => Promise<T>): Promise<T> {
  const span = trace?.step(step, attributes);
  try {
    const result = await work();
    span?.end(undefined, typeof result === 'string' && step === 'create' ? { 'container.id': result } : undefined);
    return result;
  } catch (err) {
    span?.end(err);
    throw err;
  }
}
