import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { Type, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import { parseTraceParent } from '@opentelemetry/core';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { CANCEL_HEADER, formatCancelHeader } from './cancel-header.ts';
import {
  HttpError,
  IdParams,
  MAX_ID_LENGTH,
  callbackResult,
  describeValidation,
  header,
  openEventStream,
  parseAgentId,
  parseCallbackHeaders,
  parseCapacity,
} from './http.ts';
import type { ValidationIssue } from './http.ts';
import { parseLabelsHeader } from './labels.ts';
import { registerLogRoutes } from './log-routes.ts';
import { Store } from './store.ts';
import type { AgentView, JobView } from './store.ts';

export interface ControlServerOptions {
  /** SQLite file; created if missing. */
  dbPath: string;
  /** Bearer tokens agents may present on GET /job. */
  tokens: string[];
  /** Passed to fastify (pino); default off. */
  logger?: FastifyServerOptions['logger'];
  /** Base URL agents use to reach this server, for callbackUrl and logsUrl; default derived from each request's Host. */
  publicUrl?: string;
  /**
   * An agent with no poll for this long is lost and its unfinished jobs are requeued; 0 never.
   * Default 15000: three of the agent's default poll_frequency.
   */
  agentTimeoutMs?: number;
}

export interface ControlServer {
  app: FastifyInstance;
  /** Stops the HTTP server (ending live event streams) and closes the database. */
  close(): Promise<void>;
}

const MAX_CALLBACK_BODY = 16 * 1024 * 1024;
const HEARTBEAT_MS = 15_000;
const DEFAULT_AGENT_TIMEOUT_MS = 15_000;
const MAX_TIMER_MS = 2_147_483_647;

const NewJobSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH })),
    image: Type.String({ minLength: 1 }),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    body: Type.Optional(Type.Unknown()),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    alwaysPull: Type.Optional(Type.Boolean()),
    // Handed to the agent as they are (see the job fields in the README): the agent enforces its own maxima.
    timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS })),
    stallTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS })),
    cancelGracePeriod: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS })),
    // W3C trace context: checked with OpenTelemetry's own parser below; without one the server begins a trace.
    traceparent: Type.Optional(Type.String({ maxLength: 256 })),
    tracestate: Type.Optional(Type.String({ maxLength: 512 })),
    resources: Type.Optional(
      Type.Object(
        {
          cpus: Type.Optional(Type.Number({ minimum: 0.01, maximum: 65_536 })),
          memory: Type.Optional(Type.Integer({ minimum: 6_291_456, maximum: Number.MAX_SAFE_INTEGER })),
          pids: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export async function createControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const tokenDigests = opts.tokens.filter((token) => token !== '').map(digest);
  if (tokenDigests.length === 0) throw new Error('the control server needs at least one non-empty token');
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');
  const agentTimeoutMs = opts.agentTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS;
  if (!Number.isInteger(agentTimeoutMs) || agentTimeoutMs < 0 || agentTimeoutMs > MAX_TIMER_MS) {
    throw new Error(`the agent timeout must be a whole number of ms from 0 to ${MAX_TIMER_MS}`);
  }
  const dashboardHtml = await readFile(new URL('./public/index.html', import.meta.url), 'utf8');

  const store = new Store(opts.dbPath);
  const app = Fastify({ logger: opts.logger ?? false, routerOptions: { maxParamLength: MAX_ID_LENGTH * 9 } });
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  // Live dashboard streams: each gets a snapshot on connect, then every change.
  const streams = new Set<ServerResponse>();
  let heartbeat: NodeJS.Timeout | undefined;
  const sendEvent = (stream: ServerResponse, event: string, data: unknown) => {
    stream.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const broadcastJob = (job: JobView) => streams.forEach((stream) => sendEvent(stream, 'job', job));
  const broadcastAgent = (agent: AgentView) => streams.forEach((stream) => sendEvent(stream, 'agent', agent));
  const scheduleHeartbeat = () => {
    // A comment line keeps proxies from timing out idle streams.
    heartbeat = setTimeout(() => {
      streams.forEach((stream) => stream.write(': ping\n\n'));
      logRoutes.ping();
      scheduleHeartbeat();
    }, HEARTBEAT_MS);
    heartbeat.unref();
  };
  scheduleHeartbeat();

  // Lost agents are looked for on a timer of the server's own, each check scheduled when the last ends.
  const startedAt = Date.now();
  let sweepTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const scheduleSweep = () => {
    if (agentTimeoutMs === 0 || stopped) return;
    sweepTimer = setTimeout(sweep, Math.min(Math.max(Math.floor(agentTimeoutMs / 3), 20), 5_000));
    sweepTimer.unref();
  };
  const sweep = () => {
    try {
      const now = Date.now();
      const swept = store.sweepLostAgents(now - agentTimeoutMs, startedAt, now);
      for (const agent of swept.agents) app.log.warn({ agent: agent.id }, `agent sent no poll for ${agentTimeoutMs} ms; considered lost`);
      for (const job of swept.jobs) app.log.warn({ job: job.id, status: job.status }, 'took the job back from a lost agent');
      swept.agents.forEach(broadcastAgent);
      swept.jobs.forEach(broadcastJob);
    } catch (error) {
      // A busy database (another process holding the lock) is tried again at the next check.
      app.log.error({ err: error }, 'lost-agent check failed');
    }
    scheduleSweep();
  };
  scheduleSweep();

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: ValidationIssue[]; validationContext?: string }, request, reply) => {
    const statusCode = error.statusCode ?? 500;
    if (error.validation !== undefined) {
      return reply.code(400).send({ error: `invalid request: ${describeValidation(error.validationContext ?? 'request', error.validation)}` });
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send({ error: `unsupported content-type ${header(request, 'content-type') ?? '(none)'}: send application/json` });
    }
    if (statusCode >= 400 && statusCode < 500) return reply.code(statusCode).send({ error: error.message });
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ error: 'internal server error' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }));

  // POST /job/<id>/logs (each job's logsUrl), GET /jobs/<id>/logs and its live stream.
  const logRoutes = await registerLogRoutes(app, store.logs, broadcastJob);

  const authenticate = (request: FastifyRequest): string => {
    const match = /^Bearer\s+(.+)$/i.exec(header(request, 'authorization') ?? '');
    const presented = match?.[1]?.trim();
    if (presented !== undefined) {
      const presentedDigest = digest(presented);
      if (tokenDigests.some((known) => timingSafeEqual(known, presentedDigest))) return presented;
    }
    throw new HttpError(401, 'missing or invalid bearer token');
  };

  const baseUrl = (request: FastifyRequest) => publicUrl ?? `${request.protocol}://${request.host}`;

  const setCancelHeader = (reply: FastifyReply, ids: string[]) => {
    const value = formatCancelHeader(ids);
    if (value !== undefined) void reply.header(CANCEL_HEADER, value);
  };

  api.get('/job', (request, reply) => {
    const token = authenticate(request);
    const parsedLabels = parseLabelsHeader(header(request, 'x-foreman-labels'));
    if ('error' in parsedLabels) throw new HttpError(400, parsedLabels.error);
    const capacity = parseCapacity(header(request, 'x-foreman-capacity'));
    const userAgent = header(request, 'user-agent');
    // Never show the token itself: agents without an id are named by a hash of token and user agent.
    const agentId =
      parseAgentId(request) ??
      `anonymous-${createHash('sha256')
        .update(`${token}\0${userAgent ?? ''}`)
        .digest('hex')
        .slice(0, 12)}`;

    const polled = store.poll({ id: agentId, labels: parsedLabels.labels, capacity, userAgent });
    broadcastAgent(polled.agent);
    polled.changed.forEach(broadcastJob);
    polled.logsReset.forEach((id) => logRoutes.reset(id));
    setCancelHeader(reply, polled.cancel);
    const base = baseUrl(request);
    return polled.assigned.map((job) => {
      const url = `${base}/job/${encodeURIComponent(job.id)}`;
      return { ...job, callbackUrl: url, logsUrl: `${url}/logs` };
    });
  });

  // The callback accepts any content type: bodies are forwarded from job containers as-is.
  await app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_CALLBACK_BODY }, (_request, body, parsed) => parsed(null, body));
    scope.withTypeProvider<TypeBoxTypeProvider>().put('/job/:id', { schema: { params: IdParams } }, (request, reply) => {
      const headers = parseCallbackHeaders(request);
      const outcome = store.applyCallback({
        jobId: request.params.id,
        ...headers,
        result: callbackResult(request.body, header(request, 'content-type')),
        traceparent: header(request, 'traceparent'),
      });
      if (outcome.kind === 'unknown-job') throw new HttpError(404, `unknown job ${request.params.id}`);
      if (outcome.cancel) setCancelHeader(reply, [request.params.id]);
      switch (outcome.kind) {
        case 'applied':
          broadcastJob(outcome.job);
          return { ok: true, applied: true };
        default:
          // Duplicates, stale, post-completion and other agents' deliveries are acknowledged so the agent stops retrying.
          return { ok: true, applied: false, reason: outcome.kind };
      }
    });
    done();
  });

  api.post('/jobs', { schema: { body: NewJobSchema } }, (request, reply) => {
    const { id } = request.body;
    // A lone surrogate cannot be percent-encoded into a callbackUrl or x-foreman-cancel.
    if (id !== undefined && /\p{Cs}/u.test(id)) throw new HttpError(400, 'invalid request: body.id must be well-formed Unicode');
    const { traceparent } = request.body;
    if (traceparent !== undefined && !parseTraceParent(traceparent)) {
      throw new HttpError(400, 'invalid request: body.traceparent must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)');
    }
    const job = store.createJob(request.body);
    if (job === undefined) throw new HttpError(409, `job ${id ?? ''} already exists`);
    broadcastJob(job);
    return reply.code(201).send({ id: job.id });
  });

  // A cancel needs no body; whatever a client sends (even an empty "JSON" one) is ignored.
  await app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 }, (_request, _body, parsed) => parsed(null, undefined));
    scope.withTypeProvider<TypeBoxTypeProvider>().post('/jobs/:id/cancel', { schema: { params: IdParams } }, (request, reply) => {
      const result = store.cancelJob(request.params.id);
      switch (result.kind) {
        case 'unknown-job':
          throw new HttpError(404, `unknown job ${request.params.id}`);
        case 'already-ended':
          throw new HttpError(409, `job ${request.params.id} has already ended (${result.job.status}, ${result.job.outcome ?? 'no outcome'})`);
        default:
          broadcastJob(result.job);
          return reply.code(202).send(result.job);
      }
    });
    done();
  });

  api.get('/jobs', () => store.listJobs());

  api.get('/jobs/:id', { schema: { params: IdParams } }, (request) => {
    const job = store.getJob(request.params.id);
    if (job === undefined) throw new HttpError(404, `unknown job ${request.params.id}`);
    return job;
  });

  api.get('/agents', () => store.listAgents());

  api.get('/events', (request, reply: FastifyReply) => {
    const stream = openEventStream(reply);
    sendEvent(stream, 'snapshot', { jobs: store.listJobs(), agents: store.listAgents() });
    streams.add(stream);
    request.raw.on('close', () => streams.delete(stream));
    // A write racing a client disconnect must not become an unhandled 'error' event.
    stream.on('error', () => streams.delete(stream));
  });

  api.get('/', (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
      .send(dashboardHtml),
  );

  // Sockets a client opened but never sent a request on (undici pre-connects) are not "idle"
  // to node's closeIdleConnections, so close() would wait until the client drops them.
  const unusedSockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    unusedSockets.add(socket);
    socket.once('close', () => unusedSockets.delete(socket));
  });
  app.server.on('request', (request: IncomingMessage) => unusedSockets.delete(request.socket));

  app.addHook('preClose', (done) => {
    clearTimeout(heartbeat);
    stopped = true;
    clearTimeout(sweepTimer);
    // Event streams never end by themselves.
    streams.forEach((stream) => stream.destroy());
    streams.clear();
    logRoutes.closeAll();
    unusedSockets.forEach((socket) => socket.destroy());
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    store.close();
    done();
  });

  let closing: Promise<void> | undefined;
  return {
    app,
    close: () => (closing ??= app.close()),
  };
}
