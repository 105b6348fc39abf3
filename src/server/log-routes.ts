// Live job logs over HTTP: agents POST NDJSON batches to a job's logsUrl; the dashboard pages through
// a log or follows it as server-sent events.
import { HEADER } from '../protocol/wire.ts';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { parseLogBatch } from '../../packages/control-server-kit/index.ts';
import type { Auth } from './auth.ts';
import { ErrorReply, HttpError, IdParams, SecretQuery, header, openEventStream } from './http.ts';
import type { JobLogs } from './logs.ts';

/** A batch is about 256 KiB, but one 16 KiB line can grow several times when JSON-escaped. */
const MAX_LOG_BODY = 8 * 1024 * 1024;
const DEFAULT_PAGE = 1000;
const MAX_PAGE = 10_000;
/** Lines per `lines` event on a log stream. */
const EVENT_LINES = 1000;

const From = Type.Optional(Type.Integer({ minimum: 0, description: 'the first line number wanted (default 0)' }));
const PageQuery = Type.Object({ from: From, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, description: 'at most this many lines' })) });
const StreamQuery = Type.Object({ from: From });
const LogLineSchema = Type.Object({
  i: Type.Integer(),
  ts: Type.String(),
  stream: Type.Union([Type.Literal('stdout'), Type.Literal('stderr')]),
  text: Type.String(),
});
const LogPageReply = Type.Object({
  lines: Type.Array(LogLineSchema),
  next: Type.Integer({ description: "the first line number not returned: the next page's from" }),
  total: Type.Union([Type.Integer(), Type.Null()], { description: "the total the log's end announced; null until it arrived" }),
  complete: Type.Boolean(),
});

export interface LogRoutes {
  /** The job's log gained lines or its end: its followers are sent them. */
  wake(jobId: string): void;
  /** The job's log was cleared (another agent has the job): its followers start again from line 0. */
  reset(jobId: string): void;
  /** A comment line on every log stream, so proxies keep idle ones open. */
  ping(): void;
  /** Ends every log stream (the server is closing). */
  closeAll(): void;
}

/** One client following one job's log: sent everything below `next`. */
interface Follower {
  readonly jobId: string;
  readonly seq: number;
  readonly stream: ServerResponse;
  next: number;
  /** A pump is running; it reads again before it stops, so nothing stored meanwhile is missed. */
  busy: boolean;
  done: boolean;
}

function drained(stream: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

export async function registerLogRoutes(app: FastifyInstance, logs: JobLogs, auth: Auth): Promise<LogRoutes> {
  const followers = new Map<string, Set<Follower>>();

  const finish = (follower: Follower) => {
    follower.done = true;
    const set = followers.get(follower.jobId);
    set?.delete(follower);
    if (set?.size === 0) followers.delete(follower.jobId);
    follower.stream.end();
  };

  // Sends what is stored from follower.next, a chunk at a time, waiting for the client to take each
  // one; ends the stream once the log's end arrived and everything up to it was sent.
  const pump = async (follower: Follower): Promise<void> => {
    if (follower.busy || follower.done) return;
    follower.busy = true;
    try {
      for (;;) {
        const page = await logs.page(follower.seq, follower.next, EVENT_LINES);
        if (follower.done || follower.stream.destroyed) return;
        if (page.lines.length === 0) {
          if (page.total !== null && follower.next >= page.total) {
            follower.stream.write(`event: end\ndata: ${JSON.stringify({ total: page.total, complete: page.complete })}\n\n`);
            finish(follower);
          }
          return;
        }
        follower.next = page.next;
        // The id is where a reconnecting EventSource resumes (Last-Event-ID).
        const written = follower.stream.write(`id: ${page.next}\nevent: lines\ndata: ${JSON.stringify(page.lines)}\n\n`);
        if (!written) await drained(follower.stream);
        if (follower.done || follower.stream.destroyed) return;
      }
    } finally {
      follower.busy = false;
    }
  };

  const run = (follower: Follower) => {
    pump(follower).catch((error: unknown) => {
      app.log.error({ err: error, job: follower.jobId }, 'sending a job log stream failed');
      finish(follower);
    });
  };
  const wake = (jobId: string) => followers.get(jobId)?.forEach(run);

  await app.register((scope, _opts, done) => {
    // Any content type reaches the handler, so a wrong one gets an answer that names the right one.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_LOG_BODY }, (_request, body, parsed) => parsed(null, body));
    scope.withTypeProvider<TypeBoxTypeProvider>().post(
      '/job/:id/logs',
      {
        schema: {
          summary: "A job's live log batch (its logsUrl)",
          description: `NDJSON lines from ${HEADER.logOffset}, or the log's end (${HEADER.logEnd}). Authorized by the secret in the URL.`,
          tags: ['agents'],
          params: IdParams,
          querystring: SecretQuery,
          response: {
            200: Type.Object({ ok: Type.Boolean(), stored: Type.Integer(), ignored: Type.Optional(Type.String()) }),
            400: ErrorReply,
            401: ErrorReply,
            404: ErrorReply,
            409: ErrorReply,
            413: ErrorReply,
            415: ErrorReply,
          },
        },
      },
      async (request) => {
        // Everything is checked before anything is stored: a bad batch stores nothing.
        const batch = parseLogBatch(request.headers, request.body as Buffer | undefined);
        const result = await logs.append({
          jobId: request.params.id,
          secret: request.query.secret,
          agentId: batch.agentId,
          lines: batch.lines,
          end: batch.end,
        });
        switch (result.kind) {
          case 'unknown-job':
            throw new HttpError(404, `unknown job ${request.params.id}`);
          case 'forbidden':
            throw new HttpError(401, 'missing or wrong job secret: use the logsUrl the job was handed out with');
          case 'conflict':
            throw new HttpError(409, result.message);
          case 'other-agent':
            // Acknowledged so that copy's agent stops resending it.
            return { ok: true, stored: 0, ignored: 'other-agent' };
          default:
            return { ok: true, stored: result.inserted };
        }
      },
    );
    done();
  });

  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/jobs/:id/logs',
    {
      schema: {
        summary: "A page of a job's log",
        tags: ['operators'],
        security: [{ bearer: [] }, { session: [] }],
        params: IdParams,
        querystring: PageQuery,
        response: { 200: LogPageReply, 401: ErrorReply, 404: ErrorReply },
      },
    },
    async (request) => {
      auth.operator(request, 'read');
      const page = await logs.read(request.params.id, request.query.from ?? 0, request.query.limit ?? DEFAULT_PAGE);
      if (page === undefined) throw new HttpError(404, `unknown job ${request.params.id}`);
      return page;
    },
  );

  api.get(
    '/jobs/:id/logs/events',
    {
      schema: {
        summary: "A job's log as server-sent events (lines, reset, end)",
        tags: ['operators'],
        security: [{ bearer: [] }, { session: [] }],
        params: IdParams,
        querystring: StreamQuery,
        produces: ['text/event-stream'],
        response: { 200: Type.String({ description: 'text/event-stream' }), 401: ErrorReply, 404: ErrorReply },
      },
    },
    async (request, reply) => {
      auth.operator(request, 'read');
      const state = await logs.state(request.params.id);
      if (state === undefined) throw new HttpError(404, `unknown job ${request.params.id}`);
      const lastEventId = header(request, 'last-event-id')?.trim();
      const from = lastEventId !== undefined && /^\d{1,15}$/.test(lastEventId) ? Number(lastEventId) : (request.query.from ?? 0);
      const stream = openEventStream(reply);
      const follower: Follower = { jobId: request.params.id, seq: state.seq, stream, next: from, busy: false, done: false };
      const set = followers.get(follower.jobId) ?? new Set();
      followers.set(follower.jobId, set.add(follower));
      const forget = () => {
        follower.done = true;
        set.delete(follower);
        if (set.size === 0 && followers.get(follower.jobId) === set) followers.delete(follower.jobId);
      };
      request.raw.on('close', forget);
      // A write racing a client disconnect must not become an unhandled 'error' event.
      stream.on('error', forget);
      run(follower);
    },
  );

  return {
    wake,
    reset(jobId) {
      for (const follower of followers.get(jobId) ?? []) {
        follower.next = 0;
        follower.stream.write('id: 0\nevent: reset\ndata: {}\n\n');
      }
      wake(jobId);
    },
    ping() {
      for (const set of followers.values()) for (const follower of set) follower.stream.write(': ping\n\n');
    },
    closeAll() {
      for (const set of followers.values()) {
        for (const follower of set) {
          follower.done = true;
          follower.stream.destroy();
        }
      }
      followers.clear();
    },
  };
}
