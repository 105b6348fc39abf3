/**
 * A real OTLP/HTTP trace receiver, as an OpenTelemetry Collector serves one on :4318: it takes `POST /v1/traces`
 * with the JSON encoding OpenTelemetry's exporter sends (gzip too), answers 200 `{}`, and keeps every span.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { waitFor } from './wait.ts';

/** One span as the exporter sent it, its attributes (and its resource's) made plain values. */
export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly resource: Readonly<Record<string, unknown>>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  readonly status: number;
  readonly statusMessage: string | undefined;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: OtlpAttribute[];
  status?: { code?: number; message?: string };
}
interface OtlpRequest {
  resourceSpans?: Array<{ resource?: { attributes?: OtlpAttribute[] }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>;
}

function plain(attributes: OtlpAttribute[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of attributes ?? []) {
    out[key] = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.doubleValue ?? value.boolValue;
  }
  return out;
}

const ms = (nanos: string | number): number => Number(BigInt(nanos) / 1_000_000n);

/** Every span of one export request, as sent. */
export function decodeTraces(body: Buffer): ReceivedSpan[] {
  const request = JSON.parse(body.toString('utf8')) as OtlpRequest;
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = plain(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((span) => ({
        traceId: span.traceId,
        spanId: span.spanId,
        parentSpanId: span.parentSpanId ?? '',
        name: span.name,
        kind: span.kind,
        startMs: ms(span.startTimeUnixNano),
        endMs: ms(span.endTimeUnixNano),
        attributes: plain(span.attributes),
        resource,
        status: span.status?.code ?? 0,
        statusMessage: span.status?.message,
      })),
    );
  });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Requests that were not a JSON trace export (path, content type), for the test to show. */
  readonly refused: string[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void readBody(req).then((raw) => {
        const type = req.headers['content-type'] ?? '';
        if (req.method !== 'POST' || req.url !== '/v1/traces' || !type.startsWith('application/json')) {
          this.refused.push(`${req.method} ${req.url} ${type}`);
          res.writeHead(404).end();
          return;
        }
        try {
          const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
          this.spans.push(...decodeTraces(body));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } catch (err) {
          this.refused.push(`undecodable: ${String(err)}`);
          res.writeHead(400).end();
        }
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The spans of one trace, by name. */
  named(traceId: string, name: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId && s.name === name);
  }

  /** Waits for a span of this trace and name (and whatever `where` asks of it). */
  waitForSpan(traceId: string, name: string, where: (span: ReceivedSpan) => boolean = () => true, timeoutMs = 30_000): Promise<ReceivedSpan> {
    return waitFor(`a ${name} span of trace ${traceId}`, () => this.named(traceId, name).find(where), timeoutMs);
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
