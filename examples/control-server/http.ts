// Request parsing shared by the control server's routes: headers, callback deliveries, validation errors.
import { Type } from '@fastify/type-provider-typebox';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const MAX_ID_LENGTH = 256;

/** `:id` in a route: a job id. */
export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }) });

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** One value for a header node may have joined or split; undefined when absent. */
export function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (Array.isArray(value)) return value.join(', ');
  return value;
}

export function parseCapacity(raw: string | undefined): number {
  if (raw === undefined) return 1;
  if (!/^\s*\d{1,9}\s*$/.test(raw)) throw new HttpError(400, 'x-foreman-capacity must be a non-negative integer');
  return Number(raw);
}

/** x-foreman-agent-id, trimmed; undefined when absent or empty. */
export function parseAgentId(request: FastifyRequest): string | undefined {
  const agentId = header(request, 'x-foreman-agent-id')?.trim();
  if (agentId !== undefined && agentId.length > MAX_ID_LENGTH) throw new HttpError(400, 'x-foreman-agent-id is too long');
  return agentId || undefined;
}

function isJsonContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType.trim());
}

/** The callback body as stored: parsed JSON when declared JSON and parseable, otherwise the text. */
export function callbackResult(body: unknown, contentType: string | undefined): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) return undefined;
  const text = body.toString('utf8');
  if (isJsonContentType(contentType)) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Keep what was sent rather than reject a delivery the agent cannot fix.
      return text;
    }
  }
  return text;
}

export function parseCallbackHeaders(request: FastifyRequest) {
  const status = header(request, 'x-foreman-job-status')?.trim().toLowerCase();
  if (status !== 'running' && status !== 'completed') throw new HttpError(400, 'x-foreman-job-status must be "running" or "completed"');

  const rawProgress = header(request, 'x-foreman-job-progress');
  let progress: number | undefined;
  if (rawProgress !== undefined && rawProgress.trim() !== '') {
    progress = Number(rawProgress);
    if (!Number.isFinite(progress)) throw new HttpError(400, 'x-foreman-job-progress must be a number');
  }

  const outcome = header(request, 'x-foreman-job-outcome')?.trim() || undefined;
  if (outcome !== undefined && outcome.length > 64) throw new HttpError(400, 'x-foreman-job-outcome is too long');

  const deliveryId = header(request, 'x-foreman-delivery-id')?.trim() || undefined;
  if (deliveryId !== undefined && deliveryId.length > MAX_ID_LENGTH) throw new HttpError(400, 'x-foreman-delivery-id is too long');

  const rawSeq = header(request, 'x-foreman-delivery-seq');
  let deliverySeq: number | undefined;
  if (rawSeq !== undefined) {
    if (!/^\s*\d{1,15}\s*$/.test(rawSeq)) throw new HttpError(400, 'x-foreman-delivery-seq must be a non-negative integer');
    deliverySeq = Number(rawSeq);
  }
  return { status, progress, outcome, deliveryId, deliverySeq, agentId: parseAgentId(request) } as const;
}

export interface ValidationIssue {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** One readable sentence from TypeBox's error list, e.g. `body.env.a must be string`. */
export function describeValidation(context: string, issues: ValidationIssue[]): string {
  const sentences = issues.flatMap((issue) => {
    // The companion "additionalProperties" issue names the field; this one only says "schema is false".
    if (issue.keyword === 'boolean') return [];
    const where = context + (issue.instancePath ?? '').replaceAll('/', '.');
    const extra = issue.params?.additionalProperties;
    if (issue.keyword === 'additionalProperties' && Array.isArray(extra)) return [`${where} has unknown field(s): ${extra.join(', ')}`];
    return [`${where} ${issue.message ?? 'is invalid'}`];
  });
  return [...new Set(sentences)].join('; ') || `${context} is invalid`;
}

/** Takes the reply over as a server-sent-event stream (browsers reconnect after 2 s) and returns it. */
export function openEventStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const stream = reply.raw;
  stream.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
  });
  stream.write('retry: 2000\n\n');
  return stream;
}
