// What the control server's routes share: the id parameter, errors as JSON, headers, validation messages, event streams.
import { Type } from '@fastify/type-provider-typebox';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MAX_ID_LENGTH } from '../../packages/control-server-kit/index.ts';

export { MAX_ID_LENGTH };

/** `:id` in a route: a job id. */
export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'the job id' }) });

/** The per-job secret a callbackUrl or logsUrl carries. */
export const SecretQuery = Type.Object({
  secret: Type.Optional(Type.String({ maxLength: 128, description: "the job's secret, as in the URL the job was handed out with" })),
});

/** Every error: a 4xx (or 500) with one sentence. */
export const ErrorReply = Type.Object({ error: Type.String() }, { description: 'what was wrong' });

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
