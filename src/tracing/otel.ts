/**
 * The agent's tracing on OpenTelemetry's SDK for Node, exporting over OTLP/HTTP (JSON). Loaded by `import()`
 * only when `[tracing] endpoint` (or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT) is set: without it, nothing of
 * OpenTelemetry loads. The SDK itself reads the other standard variables (OTEL_TRACES_SAMPLER, OTEL_BSP_*,
 * OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_CERTIFICATE and the like).
 */
import { hostname } from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_FULL,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../shared/clock.ts';
import { redactUrl } from '../shared/redact.ts';
import { FINAL_STATUS, HEADER } from '../protocol/wire.ts';
import { ATTR, ATTR_HOST_NAME, OtelJobTrace } from './job-spans.ts';
import type { DeliveryInfo, JobTrace, RequestSpan, TracedJob, TraceIds, Tracing } from './job-trace.ts';
import { ChosenIds, readTraceparent, traceHeaders } from './trace-context.ts';

export interface OtelTracingOptions {
  /** Where spans are sent: the collector's OTLP/HTTP traces URL (`…/v1/traces`). */
  readonly endpoint: string;
  readonly serviceName: string;
  readonly version: string;
  readonly agentId: string;
  readonly log: Logger;
  readonly clock: Pick<Clock, 'now' | 'after'>;
  /** The stored trace ids of a job no runner holds (a callback retried after its container was removed, say). */
  readonly lookup: (jobId: string) => TraceIds | undefined;
  /** Unit tests: where spans go instead of the OTLP exporter, each as it ends. */
  readonly exporter?: SpanExporter;
}

/** How long closing waits for the last spans to be exported. */
const CLOSE_WAIT_MS = 5000;
/** A failing export is logged at most this often. */
const EXPORT_WARNING_EVERY_MS = 60_000;

/** Says, in the agent's log, when exports fail and when they work again (the SDK itself says nothing). */
class LoggedExporter implements SpanExporter {
  private failingSince: number | undefined;
  private lastWarning = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly inner: SpanExporter,
    private readonly options: Pick<OtelTracingOptions, 'log' | 'clock' | 'endpoint'>,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      const { log, clock } = this.options;
      const endpoint = redactUrl(this.options.endpoint);
      if (result.code === ExportResultCode.SUCCESS) {
        if (this.failingSince !== undefined) log.info({ endpoint }, 'exporting spans again');
        this.failingSince = undefined;
      } else {
        this.failingSince ??= clock.now();
        if (clock.now() - this.lastWarning >= EXPORT_WARNING_EVERY_MS) {
          this.lastWarning = clock.now();
          const reason = result.error?.message ?? 'unknown error';
          log.warn({ endpoint, spans: spans.length, reason }, 'could not export spans; they are dropped (logged at most once a minute)');
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** The agent's tracing (see `Tracing` in job-trace.ts). */
export function createTracing(options: OtelTracingOptions): Tracing {
  return new OtelTracing(options);
}

class OtelTracing implements Tracing {
  private readonly options: OtelTracingOptions;
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  private readonly ids = new ChosenIds();
  /** The trace of each job a runner holds. */
  private readonly jobs = new Map<string, OtelJobTrace>();
  /** The `foreman.report` span of each final report under way. */
  private readonly reports = new Map<string, Span>();
  private closing: Promise<void> | undefined;

  constructor(options: OtelTracingOptions) {
    this.options = options;
    const exporter = new LoggedExporter(options.exporter ?? new OTLPTraceExporter({ url: options.endpoint }), options);
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: options.serviceName,
        [ATTR_SERVICE_VERSION]: options.version,
        [ATTR_SERVICE_INSTANCE_ID]: options.agentId,
        [ATTR_HOST_NAME]: hostname(),
      }),
      idGenerator: this.ids,
      spanProcessors: [options.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
    });
    this.tracer = this.provider.getTracer('foreman', options.version);
  }

  forJob(job: TracedJob): JobTrace {
    const known = this.jobs.get(job.id);
    if (known) return known;
    const made = new OtelJobTrace(
      {
        tracer: this.tracer,
        ids: this.ids,
        agentId: this.options.agentId,
        malformed: (jobId, value) => {
          const shown = typeof value === 'string' ? value.slice(0, 80) : typeof value;
          this.options.log.warn({ jobId, traceparent: shown }, "ignored the job's malformed traceparent; its spans begin a new trace");
        },
        forget: (jobId, ended) => {
          if (this.jobs.get(jobId) === ended) this.jobs.delete(jobId);
        },
      },
      job,
    );
    this.jobs.set(job.id, made);
    return made;
  }

  /** The context of the job's `foreman.job` span: its runner's, or rebuilt from the ids stored with it. */
  private jobContext(jobId: string): Context | undefined {
    const held = this.jobs.get(jobId);
    if (held) return held.context;
    let ids: TraceIds | undefined;
    try {
      ids = this.options.lookup(jobId);
    } catch {
      return undefined;
    }
    const context = ids ? readTraceparent(ids.job, ids.state) : undefined;
    return context ? trace.setSpanContext(ROOT_CONTEXT, context) : undefined;
  }

  deliveryAttempt(delivery: DeliveryInfo, attempt: number): RequestSpan | undefined {
    const job = this.jobContext(delivery.jobId);
    if (!job) return undefined;
    let parent = job;
    const status = delivery.headers[HEADER.jobStatus];
    if (status === FINAL_STATUS) {
      let report = this.reports.get(delivery.id);
      if (!report) {
        const attributes = { [ATTR.outcome]: delivery.headers[HEADER.jobOutcome] ?? 'unknown', 'foreman.delivery.seq': delivery.seq };
        report = this.tracer.startSpan('foreman.report', { startTime: delivery.createdAt, attributes }, job);
        this.reports.set(delivery.id, report);
      }
      parent = trace.setSpan(job, report);
    }
    return this.request('foreman.callback', 'PUT', delivery.url, parent, {
      'foreman.delivery.seq': delivery.seq,
      'foreman.delivery.attempt': attempt,
      'foreman.job.status': status ?? 'unknown',
    });
  }

  deliverySettled(delivery: DeliveryInfo, result: string): void {
    const report = this.reports.get(delivery.id);
    if (!report) return;
    this.reports.delete(delivery.id);
    report.setAttribute('foreman.delivery.result', result);
    if (result !== 'delivered') report.setStatus({ code: SpanStatusCode.ERROR, message: `the report was ${result}` });
    report.end();
  }

  logBatch(jobId: string, url: string, details: { readonly offset: number; readonly lines: number; readonly end: boolean }): RequestSpan | undefined {
    const job = this.jobContext(jobId);
    if (!job) return undefined;
    return this.request('foreman.logs', 'POST', url, job, {
      'foreman.log.offset': details.offset,
      'foreman.log.lines': details.lines,
      'foreman.log.end': details.end,
    });
  }

  /** A client span for one request, with the headers that carry it. */
  private request(name: string, method: string, url: string, parent: Context, attributes: Record<string, string | number | boolean>): RequestSpan {
    const target = safeUrl(url);
    const span = this.tracer.startSpan(
      name,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: method,
          [ATTR_URL_FULL]: redactUrl(url),
          ...(target ? { [ATTR_SERVER_ADDRESS]: target.hostname, [ATTR_SERVER_PORT]: target.port } : {}),
          ...attributes,
        },
      },
      parent,
    );
    let ended = false;
    return {
      headers: traceHeaders(span.spanContext()),
      end: ({ status, error }) => {
        if (ended) return;
        ended = true;
        if (status !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
        if (status !== undefined && status >= 400) {
          span.setAttribute(ATTR_ERROR_TYPE, String(status));
          span.setStatus({ code: SpanStatusCode.ERROR });
        } else if (status === undefined) {
          span.setAttribute(ATTR_ERROR_TYPE, /\b(E[A-Z]{3,}|UND_ERR_[A-Z_]+)\b/.exec(error ?? '')?.[1] ?? '_OTHER');
          span.setStatus({ code: SpanStatusCode.ERROR, message: error });
        }
        span.end();
      },
    };
  }

  logFields(jobId: string): { traceId: string; spanId: string } | undefined {
    const held = this.jobs.get(jobId);
    if (!held) return undefined;
    const { traceId, spanId } = held.jobSpan.spanContext();
    return { traceId, spanId };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      let timer: Timer | undefined;
      const waited = new Promise<'timeout'>((resolve) => {
        timer = this.options.clock.after(CLOSE_WAIT_MS, () => resolve('timeout'), { unref: true });
      });
      try {
        const result = await Promise.race([this.provider.shutdown().then(() => 'done' as const), waited]);
        if (result === 'timeout') this.options.log.warn({ waitedMs: CLOSE_WAIT_MS }, 'the last spans were not exported in time; they are dropped');
      } catch (err) {
        this.options.log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'could not export the last spans');
      } finally {
        timer?.cancel();
      }
    })();
    return this.closing;
  }
}

/** The URL's host and port for `server.address` and `server.port`; undefined when it does not parse. */
function safeUrl(url: string): { hostname: string; port: number } | undefined {
  try {
    const parsed = new URL(url);
    return { hostname: parsed.hostname, port: Number(parsed.port) || (parsed.protocol === 'https:' ? 443 : 80) };
  } catch {
    return undefined;
  }
}
