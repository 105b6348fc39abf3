// What operators call (an admin token, or a read-only one for reads; the dashboard's cookie counts as either):
// submit and cancel jobs, page through jobs, see agents, follow every change as server-sent events.
import { HEADER } from '../protocol/wire.ts';
import type { FastifyInstance } from 'fastify';
import { parseTraceParent } from '@opentelemetry/core';
import { Type } from '@fastify/type-provider-typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Auth } from './auth.ts';
import type { EventHub } from './events.ts';
import { ErrorReply, HttpError, IdParams, openEventStream } from './http.ts';
import type { JobStatus } from './rows.ts';
import { AgentViewSchema, JobViewSchema, NewJobSchema } from './schemas.ts';
import type { Store } from './store.ts';

export interface ApiRouteOptions {
  /** POST /jobs answers 429 while this many jobs are queued. */
  maxQueuedJobs: number;
  /** The largest POST /jobs body, in bytes. */
  maxJobBytes: number;
}

const DEFAULT_PAGE = 100;
const MAX_PAGE = 500;
const STATUSES: readonly JobStatus[] = ['queued', 'assigned', 'running', 'completed', 'canceled'];
const OPERATOR: Array<Record<string, string[]>> = [{ bearer: [] }, { session: [] }];

const ListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, description: `jobs per page (default ${DEFAULT_PAGE})` })),
  cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'from the previous page’s Link header (rel="next")' })),
  status: Type.Optional(Type.String({ description: 'only jobs in these states, comma-separated: queued, assigned, running, completed, canceled' })),
  label: Type.Optional(
    Type.Union([Type.String(), Type.Array(Type.String())], { description: 'key=value: only jobs requiring this label; repeat for several' }),
  ),
  agent: Type.Optional(Type.String({ description: 'only jobs handed to this agent' })),
});

export async function registerApiRoutes(app: FastifyInstance, store: Store, auth: Auth, hub: EventHub, options: ApiRouteOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/jobs',
    {
      bodyLimit: options.maxJobBytes,
      schema: {
        summary: 'Submit a job',
        tags: ['operators'],
        security: OPERATOR,
        body: NewJobSchema,
        response: {
          201: Type.Object({ id: Type.String() }),
          400: ErrorReply,
          401: ErrorReply,
          403: ErrorReply,
          409: ErrorReply,
          413: ErrorReply,
          415: ErrorReply,
          429: ErrorReply,
        },
      },
    },
    async (request, reply) => {
      auth.operator(request, 'admin');
      const { id } = request.body;
      // A lone surrogate cannot be percent-encoded into a callbackUrl or x-foreman-cancel.
      if (id !== undefined && /\p{Cs}/u.test(id)) throw new HttpError(400, 'invalid request: body.id must be well-formed Unicode');
      const { traceparent } = request.body;
      if (traceparent !== undefined && !parseTraceParent(traceparent)) {
        throw new HttpError(400, 'invalid request: body.traceparent must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)');
      }
      const created = await store.createJob(request.body, { maxQueued: options.maxQueuedJobs });
      if (created.kind === 'exists') throw new HttpError(409, `job ${id ?? ''} already exists`);
      if (created.kind === 'queue-full') {
        void reply.header('retry-after', '10');
        throw new HttpError(429, `the queue is full: ${created.queued} jobs are queued (--max-queued-jobs); submit again once agents have taken some`);
      }
      return reply.code(201).send({ id: created.job.id });
    },
  );

  // A cancel needs no body; whatever a client sends (even an empty "JSON" one) is ignored.
  await app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 }, (_request, _body, parsed) => parsed(null, undefined));
    scope.withTypeProvider<TypeBoxTypeProvider>().post(
      '/jobs/:id/cancel',
      {
        schema: {
          summary: 'Cancel a job',
          description: `A queued job ends at once; a handed-out one is canceled by its agent (${HEADER.cancel}) and ends with its report.`,
          tags: ['operators'],
          security: OPERATOR,
          params: IdParams,
          response: { 202: JobViewSchema, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply },
        },
      },
      async (request, reply) => {
        auth.operator(request, 'admin');
        const result = await store.cancelJob(request.params.id);
        switch (result.kind) {
          case 'unknown-job':
            throw new HttpError(404, `unknown job ${request.params.id}`);
          case 'already-ended':
            throw new HttpError(409, `job ${request.params.id} has already ended (${result.job.status}, ${result.job.outcome ?? 'no outcome'})`);
          default:
            return reply.code(202).send(result.job);
        }
      },
    );
    done();
  });

  api.get(
    '/jobs',
    {
      schema: {
        summary: 'Jobs, newest first, a page at a time',
        description: 'The next page’s URL is in the Link header (rel="next"); there is none on the last page.',
        tags: ['operators'],
        security: OPERATOR,
        querystring: ListQuery,
        response: { 200: Type.Array(JobViewSchema), 400: ErrorReply, 401: ErrorReply },
      },
    },
    async (request, reply) => {
      auth.operator(request, 'read');
      const { query } = request;
      const status = query.status?.split(',').map((word) => word.trim());
      const unknown = status?.filter((word) => !(STATUSES as readonly string[]).includes(word));
      if (unknown !== undefined && unknown.length > 0) {
        throw new HttpError(400, `invalid request: status "${unknown.join(',')}" is not one of ${STATUSES.join(', ')}`);
      }
      const labels: Record<string, string> = {};
      for (const pair of query.label === undefined ? [] : [query.label].flat()) {
        const at = pair.indexOf('=');
        if (at <= 0) throw new HttpError(400, `invalid request: label "${pair}" is not key=value`);
        labels[pair.slice(0, at)] = pair.slice(at + 1);
      }
      const limit = query.limit ?? DEFAULT_PAGE;
      const page = await store.listJobs({
        limit,
        before: query.cursor === undefined ? undefined : Number(query.cursor),
        status: status as JobStatus[] | undefined,
        labels: Object.keys(labels).length === 0 ? undefined : labels,
        agentId: query.agent,
      });
      if (page.next !== undefined) {
        const next = new URLSearchParams();
        next.set('limit', String(limit));
        next.set('cursor', String(page.next));
        if (query.status !== undefined) next.set('status', query.status);
        for (const [key, value] of Object.entries(labels)) next.append('label', `${key}=${value}`);
        if (query.agent !== undefined) next.set('agent', query.agent);
        void reply.header('link', `</jobs?${next.toString()}>; rel="next"`);
      }
      return page.jobs;
    },
  );

  api.get(
    '/jobs/:id',
    {
      schema: {
        summary: 'One job',
        tags: ['operators'],
        security: OPERATOR,
        params: IdParams,
        response: { 200: JobViewSchema, 401: ErrorReply, 404: ErrorReply },
      },
    },
    async (request) => {
      auth.operator(request, 'read');
      const job = await store.getJob(request.params.id);
      if (job === undefined) throw new HttpError(404, `unknown job ${request.params.id}`);
      return job;
    },
  );

  api.get(
    '/agents',
    { schema: { summary: 'Agents seen', tags: ['operators'], security: OPERATOR, response: { 200: Type.Array(AgentViewSchema), 401: ErrorReply } } },
    async (request) => {
      auth.operator(request, 'read');
      return store.listAgents();
    },
  );

  api.get(
    '/events',
    {
      schema: {
        summary: 'Every change, live: a snapshot, then job and agent events (server-sent events)',
        tags: ['operators'],
        security: OPERATOR,
        produces: ['text/event-stream'],
        response: { 200: Type.String({ description: 'text/event-stream' }), 401: ErrorReply },
      },
    },
    async (request, reply) => {
      auth.operator(request, 'read');
      const stream = openEventStream(reply);
      request.raw.on('close', () => hub.remove(stream));
      // A write racing a client disconnect must not become an unhandled 'error' event.
      stream.on('error', () => hub.remove(stream));
      await hub.add(stream);
    },
  );
}
