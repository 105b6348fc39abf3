/**
 * W3C Trace Context for the agent: `traceparent`/`tracestate` read and written by OpenTelemetry's own
 * propagator, and span ids the agent chooses itself, so that a span continued after a restart keeps its id.
 */
import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { RandomIdGenerator, type IdGenerator } from '@opentelemetry/sdk-trace-base';

const propagator = new W3CTraceContextPropagator();

/** The span context a `traceparent` (with its `tracestate`) carries; undefined when it is missing or malformed. */
export function readTraceparent(traceparent: unknown, tracestate?: unknown): SpanContext | undefined {
  const carrier: Record<string, unknown> = { traceparent, tracestate };
  const found = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter));
  return found && trace.isSpanContextValid(found) ? found : undefined;
}

/** `traceparent` and, when the trace has one, `tracestate` for this span context (lower case, as HTTP headers). */
export function traceHeaders(context: SpanContext): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ROOT_CONTEXT, context), carrier, defaultTextMapSetter);
  return carrier;
}

/** The same, named as a container's environment has them: `TRACEPARENT`, `TRACESTATE`. */
export function traceEnv(context: SpanContext): Record<string, string> {
  return Object.fromEntries(Object.entries(traceHeaders(context)).map(([name, value]) => [name.toUpperCase(), value]));
}

/**
 * Random ids, as OpenTelemetry's own generator makes them, except for the one span started inside `withIds`:
 * a `foreman.job` or `foreman.run` span started again after a restart gets the ids it had, so the spans exported
 * before the restart (its children, the container's own) still point at it.
 */
export class ChosenIds implements IdGenerator {
  private readonly random = new RandomIdGenerator();
  private traceId: string | undefined;
  private spanId: string | undefined;

  generateTraceId = (): string => {
    const id = this.traceId ?? this.random.generateTraceId();
    this.traceId = undefined;
    return id;
  };

  generateSpanId = (): string => {
    const id = this.spanId ?? this.random.generateSpanId();
    this.spanId = undefined;
    return id;
  };

  /** A new random span id, for a span started later (the `foreman.run` span, named in TRACEPARENT before it starts). */
  newSpanId(): string {
    return this.random.generateSpanId();
  }

  /** Runs `start` (which starts one span, synchronously) with these ids handed to that span. */
  withIds<T>(ids: { readonly traceId?: string; readonly spanId: string }, start: () => T): T {
    this.traceId = ids.traceId;
    this.spanId = ids.spanId;
    try {
      return start();
    } finally {
      this.traceId = undefined;
      this.spanId = undefined;
    }
  }
}
