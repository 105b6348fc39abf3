/** One job's spans on OpenTelemetry's SDK: the `JobTrace` a runner holds (see job-trace.ts). */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { ATTR_CONTAINER_ID, ATTR_CONTAINER_IMAGE_NAME, ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import type { JobStep, JobTrace, SpanAttributes, StepSpan, TracedJob, TraceIds } from './job-trace.ts';
import { readTraceparent, traceEnv, traceHeaders, type ChosenIds } from './trace-context.ts';

// OpenTelemetry's conventions still call these incubating, and advise copying them rather than importing them.
export const ATTR_CONTAINER_NAME = 'container.name';
export const ATTR_PROCESS_EXIT_CODE = 'process.exit.code';
export const ATTR_HOST_NAME = 'host.name';

/** foreman's own attributes, where OpenTelemetry's conventions have none. */
export const ATTR = {
  jobId: 'foreman.job.id',
  agentId: 'foreman.agent.id',
  outcome: 'foreman.job.outcome',
  reason: 'foreman.job.reason',
  resumed: 'foreman.resumed',
  alwaysPull: 'foreman.pull.always',
} as const;

export interface JobSpansParts {
  readonly tracer: Tracer;
  readonly ids: ChosenIds;
  readonly agentId: string;
  /** Told once about a job whose `traceparent` is malformed (ignored: its spans begin a new trace). */
  readonly malformed: (jobId: string, traceparent: unknown) => void;
  /** The job's trace ended: the agent forgets it. */
  readonly forget: (jobId: string, trace: OtelJobTrace) => void;
}

/** The error's class, as `error.type` wants it (never its message, which may quote a job's env). */
function errorType(err: unknown): string {
  return err instanceof Error ? err.name : '_OTHER';
}

function withoutUndefined(attributes: SpanAttributes | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(attributes ?? {})) if (value !== undefined) out[key] = value;
  return out;
}

export class OtelJobTrace implements JobTrace {
  readonly ids: TraceIds;
  readonly fresh: boolean;
  readonly containerEnv: Readonly<Record<string, string>>;
  /** The `foreman.job` span's context, the parent of every other span of the job. */
  readonly context: Context;
  readonly jobSpan: Span;
  private readonly parts: JobSpansParts;
  private readonly jobId: string;
  private runSpan: Span | undefined;
  private ran = false;
  private done = false;

  constructor(parts: JobSpansParts, job: TracedJob) {
    this.parts = parts;
    this.jobId = job.id;
    const stored = job.trace ? readTraceparent(job.trace.job, job.trace.state) : undefined;
    const attributes = {
      [ATTR.jobId]: job.id,
      [ATTR.agentId]: parts.agentId,
      [ATTR_CONTAINER_IMAGE_NAME]: job.spec.image,
      [ATTR_CONTAINER_NAME]: job.containerName || undefined,
      [ATTR_CONTAINER_ID]: job.containerId ?? undefined,
    };
    if (job.trace && stored) {
      // Continued after a restart: the same trace, the same job span (its children exported before point at it).
      this.fresh = false;
      const parent = job.trace.parent ? readTraceparent(job.trace.parent, job.trace.state) : undefined;
      this.jobSpan = parts.ids.withIds({ traceId: stored.traceId, spanId: stored.spanId }, () =>
        this.startJobSpan(job, { ...attributes, [ATTR.resumed]: true }, parent),
      );
      this.ids = job.trace;
    } else {
      this.fresh = true;
      const parent = readTraceparent(job.spec.traceparent, job.spec.tracestate);
      if (!parent && Object.hasOwn(job.spec, 'traceparent')) parts.malformed(job.id, job.spec.traceparent);
      this.jobSpan = this.startJobSpan(job, attributes, parent);
      const own = this.jobSpan.spanContext();
      this.ids = {
        job: traceHeaders(own).traceparent ?? '',
        run: parts.ids.newSpanId(),
        parent: parent ? traceHeaders(parent).traceparent : undefined,
        state: own.traceState?.serialize() || undefined,
      };
    }
    this.context = trace.setSpan(ROOT_CONTEXT, this.jobSpan);
    this.containerEnv = traceEnv(this.runContext());
    if (this.fresh) {
      // From its arrival until now, when it got a slot.
      parts.tracer.startSpan('foreman.queue', { startTime: job.receivedAt }, this.context).end();
    } else if (job.startedAt !== null && job.stoppedAt === null) {
      // Its container ran when the agent stopped: the run span goes on, under the same id.
      this.startRun(job.containerId ?? undefined, job.startedAt);
    }
  }

  private startJobSpan(job: TracedJob, attributes: SpanAttributes, parent: SpanContext | undefined): Span {
    const context = parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
    return this.parts.tracer.startSpan(
      'foreman.job',
      { kind: SpanKind.CONSUMER, startTime: job.receivedAt, attributes: withoutUndefined(attributes) },
      context,
    );
  }

  /** The `foreman.run` span's context, whether it started yet or not: the parent the container is given. */
  private runContext(): SpanContext {
    const job = this.jobSpan.spanContext();
    return { traceId: job.traceId, spanId: this.ids.run, traceFlags: job.traceFlags ?? TraceFlags.NONE, traceState: job.traceState };
  }

  step(step: JobStep, attributes?: SpanAttributes): StepSpan {
    const span = this.parts.tracer.startSpan(`foreman.${step}`, { attributes: withoutUndefined(attributes) }, this.context);
    let ended = false;
    return {
      end: (error, more) => {
        if (ended) return;
        ended = true;
        span.setAttributes(withoutUndefined(more));
        if (error !== undefined) {
          span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      },
    };
  }

  running(containerId: string, at: number): void {
    this.jobSpan.setAttribute(ATTR_CONTAINER_ID, containerId);
    if (!this.ran && !this.done) this.startRun(containerId, at);
  }

  private startRun(containerId: string | undefined, at: number): void {
    this.ran = true;
    this.runSpan = this.parts.ids.withIds({ spanId: this.ids.run }, () =>
      this.parts.tracer.startSpan('foreman.run', { startTime: at, attributes: withoutUndefined({ [ATTR_CONTAINER_ID]: containerId }) }, this.context),
    );
  }

  ended(outcome: string, details: { readonly reason?: string; readonly message?: string; readonly exitCode?: number | null } = {}): void {
    if (this.done) return;
    this.jobSpan.setAttributes(
      withoutUndefined({
        [ATTR.outcome]: outcome,
        [ATTR.reason]: details.reason,
        [ATTR_PROCESS_EXIT_CODE]: details.exitCode ?? undefined,
      }),
    );
    if (details.exitCode !== undefined && details.exitCode !== null) this.runSpan?.setAttribute(ATTR_PROCESS_EXIT_CODE, details.exitCode);
    // The message is the report's own: secrets are hidden from it already (src/agent/job/endings.ts).
    if (outcome !== 'succeeded') this.jobSpan.setStatus({ code: SpanStatusCode.ERROR, message: details.message ?? outcome });
  }

  stopped(at: number): void {
    this.runSpan?.end(at);
    this.runSpan = undefined;
  }

  finished(): void {
    if (this.done) return;
    this.done = true;
    this.runSpan?.end();
    this.runSpan = undefined;
    this.jobSpan.end();
    this.parts.forget(this.jobId, this);
  }
}
