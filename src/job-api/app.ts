// The fastify part of the job API, loaded on the first request a container sends (see server.ts):
// an agent with no jobs never loads fastify, its schema compiler or its router.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  HEADER,
  JOB_API_REDACTIONS_ROUTE,
  JOB_API_ROUTE,
  JOB_STATUSES,
  REDACTION_MAX_CHARS,
  REDACTION_MIN_CHARS,
  REDACTIONS_PER_REQUEST,
} from '../protocol/wire.ts';
import { isWellFormedText } from '../shared/job-input.ts';
import type { JobApiOptions } from './types.ts';

const StatusHeaders = Type.Object({
  [HEADER.jobStatus]: Type.Union(JOB_STATUSES.map((status) => Type.Literal(status))),
  [HEADER.jobProgress]: Type.Optional(Type.Number()),
});
const Params = Type.Object({ id: Type.String() });
const Query = Type.Object({ token: Type.Optional(Type.String()) });

const notFound = { error: 'no such job' };

function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  const path = first?.instancePath ?? '';
  if (path.includes(HEADER.jobStatus) || (first?.keyword === 'required' && String(first.params?.missingProperty).includes('status'))) {
    return `${HEADER.jobStatus} must be ${JOB_STATUSES.map((s) => `"${s}"`).join(' or ')}`;
  }
  if (path.includes(HEADER.jobProgress)) return `${HEADER.jobProgress} must be a number`;
  return error.message;
}

/** A redactions request's values, or what is wrong with it. */
function redactionValues(body: Buffer): string[] | string {
  const expected = `the body must be JSON {"values": [strings of ${REDACTION_MIN_CHARS} to ${REDACTION_MAX_CHARS} characters]}, at most ${REDACTIONS_PER_REQUEST} of them`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return expected;
  }
  const values = typeof parsed === 'object' && parsed !== null ? (parsed as { values?: unknown }).values : undefined;
  if (!Array.isArray(values) || values.length === 0 || values.length > REDACTIONS_PER_REQUEST) return expected;
  const ok = values.every(
    (v): v is string => typeof v === 'string' && v.length >= REDACTION_MIN_CHARS && v.length <= REDACTION_MAX_CHARS && isWellFormedText(v),
  );
  return ok ? values : expected;
}

export interface JobApp {
  readonly app: FastifyInstance;
  /** fastify's request handler, for the server that already listens. */
  readonly handle: (request: IncomingMessage, response: ServerResponse) => void;
}

/** Builds the routes on `server`, which the caller made, listens with and closes. */
export async function buildJobApp(options: JobApiOptions, server: Server): Promise<JobApp> {
  const { backend, log, maxBodySize } = options;
  let handle: JobApp['handle'] | undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: maxBodySize,
    // Job ids may be up to 256 characters once percent-encoded three times over.
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
    serverFactory: (handler) => {
      handle = handler;
      return server;
    },
    // The server's own clientError listener (server.ts) answers bad bytes, also before fastify loads.
    clientErrorHandler: () => undefined,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are forwarded byte for byte, so never parse them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  // Authorise before reading the body: an unknown id or wrong secret is a plain 404.
  app.addHook('onRequest', async (request, reply) => {
    const id = (request.params as { id?: string } | undefined)?.id;
    const token = (request.query as { token?: string } | undefined)?.token;
    if (id === undefined || typeof token !== 'string' || !backend.authorize(id, token)) {
      await reply.code(404).send(notFound);
    }
  });

  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation) return reply.code(400).send({ error: validationMessage(error) });
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: `request body exceeds ${maxBodySize} bytes` });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.message });
    }
    log.error({ err: error.message }, 'job API request failed');
    return reply.code(503).send({ error: 'the agent could not record this request; retry' });
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(notFound));

  app.get(JOB_API_ROUTE, { schema: { params: Params, querystring: Query } }, async (request, reply) => {
    const result = await backend.fetchJob(request.params.id);
    return reply.code(result.status).send(result.body);
  });

  app.put(JOB_API_ROUTE, { schema: { params: Params, querystring: Query, headers: StatusHeaders } }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const result = await backend.updateJob(request.params.id, {
      status: request.headers[HEADER.jobStatus],
      progress: request.headers[HEADER.jobProgress] ?? 0,
      headers: request.raw.headers,
      body,
    });
    return reply.code(result.status).send(result.body);
  });

  app.post(JOB_API_REDACTIONS_ROUTE, { schema: { params: Params, querystring: Query } }, async (request, reply) => {
    const parsed = redactionValues(Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0));
    if (typeof parsed === 'string') return reply.code(400).send({ error: parsed });
    const result = await backend.addRedactions(request.params.id, parsed);
    return reply.code(result.status).send(result.body);
  });

  await app.ready();
  if (!handle) throw new Error('fastify did not call serverFactory');
  return { app, handle };
}
