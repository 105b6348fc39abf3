// What agents call: the poll (GET /job, an agent token) and each job's callbackUrl (PUT /job/<id>?secret=…, the
// job's own secret). The log batches (the logsUrl) are in log-routes.ts.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { HEADER } from '../protocol/wire.ts';
import { CANCEL_HEADER, HEADERS, formatCancelHeader, parseCallback, parsePoll } from '../../packages/control-server-kit/index.ts';
import { checkUsage, parseAttributes, parseImages } from './agent-facts.ts';
import type { Auth } from './auth.ts';
import { ErrorReply, HttpError, IdParams, SecretQuery, header } from './http.ts';
import { AssignedJobSchema } from './schemas.ts';
import type { Store } from './store.ts';

export const MAX_CALLBACK_BODY = 16 * 1024 * 1024;

export interface AgentRouteOptions {
  /** Base URL agents use to reach this server, for callbackUrl and logsUrl; default from each poll's Host. */
  publicUrl: string | undefined;
  /** Hand a job again to the agent it was handed to, when it has sent nothing about it for this long (0: never). */
  redeliverAfterMs: number;
  /** See PollOptions in store-types.ts. */
  imagePreferenceMs: number;
  liveWithinMs: number;
}

/** A job's callbackUrl and logsUrl: the job's id and its secret, under `base`. */
export function jobUrls(base: string, id: string, secret: string | null): { callbackUrl: string; logsUrl: string } {
  const url = `${base}/job/${encodeURIComponent(id)}`;
  const query = secret === null ? '' : `?secret=${encodeURIComponent(secret)}`;
  return { callbackUrl: `${url}${query}`, logsUrl: `${url}/logs${query}` };
}

export function baseUrl(request: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ?? `${request.protocol}://${request.host}`;
}

function setCancelHeader(reply: FastifyReply, ids: readonly string[]): void {
  const value = formatCancelHeader(ids);
  if (value !== undefined) void reply.header(CANCEL_HEADER, value);
}

export async function registerAgentRoutes(app: FastifyInstance, store: Store, auth: Auth, options: AgentRouteOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/job',
    {
      schema: {
        summary: `The poll: hands out up to ${HEADER.capacity} jobs`,
        description: `Needs an agent token. Reads ${HEADERS.capacity}, ${HEADERS.labels}, ${HEADERS.agentId}, ${HEADER.attributes} and ${HEADER.images}; the reply may carry ${CANCEL_HEADER}.`,
        tags: ['agents'],
        security: [{ bearer: [] }],
        headers: Type.Object({
          [HEADERS.capacity]: Type.Optional(Type.String({ description: 'free slots: at most this many jobs are handed out' })),
          [HEADERS.labels]: Type.Optional(Type.String({ description: 'the agent’s labels, k=v pairs joined by commas, URL-encoded' })),
          [HEADERS.agentId]: Type.Optional(Type.String({ description: 'the agent’s stable id' })),
          [HEADER.attributes]: Type.Optional(Type.String({ description: 'the host’s facts, k=v pairs like the labels (a bad value is ignored)' })),
          [HEADER.images]: Type.Optional(Type.String({ description: 'the images the agent has, <reference>@<digest> URL-encoded, joined by commas' })),
        }),
        response: { 200: Type.Array(AssignedJobSchema), 400: ErrorReply, 401: ErrorReply },
      },
    },
    async (request, reply) => {
      const token = auth.agent(request);
      const poll = parsePoll(request.headers);
      // Never show the token itself: agents without an id are named by a hash of token and user agent.
      const agentId =
        poll.agentId ??
        `anonymous-${createHash('sha256')
          .update(`${token}\0${poll.userAgent ?? ''}`)
          .digest('hex')
          .slice(0, 12)}`;
      const polled = await store.poll(
        {
          id: agentId,
          labels: poll.labels,
          capacity: poll.capacity,
          userAgent: poll.userAgent,
          attributes: parseAttributes(header(request, HEADER.attributes)),
          images: parseImages(header(request, HEADER.images)),
        },
        options,
      );
      setCancelHeader(reply, polled.cancel);
      const base = baseUrl(request, options.publicUrl);
      return polled.assigned.map(({ job, secret }) => ({ ...job, ...jobUrls(base, job.id, secret) }));
    },
  );

  // The callback accepts any content type: bodies are forwarded from job containers as they are.
  await app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_CALLBACK_BODY }, (_request, body, parsed) => parsed(null, body));
    scope.withTypeProvider<TypeBoxTypeProvider>().put(
      '/job/:id',
      {
        schema: {
          summary: "A job's status update (its callbackUrl)",
          description: `Authorized by the secret in the URL. Reads ${HEADERS.jobStatus}, ${HEADERS.jobProgress}, ${HEADERS.jobOutcome}, ${HEADERS.deliveryId}, ${HEADERS.deliverySeq}, ${HEADERS.agentId}, ${HEADER.usage} and traceparent; the body is the job's result. Applied once per delivery, in seq order; the reply may carry ${CANCEL_HEADER}.`,
          tags: ['agents'],
          params: IdParams,
          querystring: SecretQuery,
          response: {
            200: Type.Object({ ok: Type.Boolean(), applied: Type.Boolean(), reason: Type.Optional(Type.String()) }),
            400: ErrorReply,
            401: ErrorReply,
            404: ErrorReply,
            413: ErrorReply,
          },
        },
      },
      async (request, reply) => {
        const update = parseCallback(request.headers, request.body as Buffer | undefined);
        const outcome = await store.applyCallback({
          ...update,
          jobId: request.params.id,
          secret: request.query.secret,
          traceparent: header(request, 'traceparent')?.slice(0, 256),
          usage: checkUsage(header(request, HEADER.usage)),
        });
        if (outcome.kind === 'unknown-job') throw new HttpError(404, `unknown job ${request.params.id}`);
        if (outcome.kind === 'forbidden') throw new HttpError(401, 'missing or wrong job secret: use the callbackUrl the job was handed out with');
        if (outcome.cancel) setCancelHeader(reply, [request.params.id]);
        // Duplicates, stale, post-completion and other agents' deliveries are acknowledged so the agent stops retrying.
        return outcome.kind === 'applied' ? { ok: true, applied: true } : { ok: true, applied: false, reason: outcome.kind };
      },
    );
    done();
  });
}
