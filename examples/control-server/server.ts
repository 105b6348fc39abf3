import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { Type, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { parseLabelsHeader } from './labels.ts';
import { Store } from './store.ts';
import type { AgentView, JobView } from './store.ts';

export interface ControlServerOptions {
  /** SQLite file; created if missing. */
  dbPath: string;
  /** Bearer tokens agents may present on GET /job. */
  tokens: string[];
  /** Passed to fastify (pino); default off. */
  logger?: FastifyServerOptions['logger'];
  /** Base URL agents use to reach this server, for callbackUrl; default derived from each request's Host. */
  publicUrl?: string;
}

export interface ControlServer {
  app: FastifyInstance;
  /** Stops the HTTP server (ending live event streams) and closes the database. */
  close(): Promise<void>;
}

const MAX_ID_LENGTH = 256;
const MAX_CALLBACK_BODY = 16 * 1024 * 1024;
const HEARTBEAT_MS = 15_000;

const NewJobSchema = Type.Object(
  {
    image: Type.String({ minLength: 1 }),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    body: Type.Optional(Type.Unknown()),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    alwaysPull: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }) });

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** One value for a header node may have joined or split; undefined when absent. */
function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (Array.isArray(value)) return value.join(', ');
  return value;
}

function parseCapacity(raw: string | undefined): number {
  if (raw === undefined) return 1;
  if (!/^\s*\d{1,9}\s*$/.test(raw)) throw new HttpError(400, 'x-foreman-capacity must be a non-negative integer');
  return Number(raw);
}

function isJsonContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType.trim());
}

/** The callback body as stored: parsed JSON when declared JSON and parseable, otherwise the text. */
function callbackResult(body: unknown, contentType: string | undefined): unknown {
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

function parseCallbackHeaders(request: FastifyRequest) {
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
  return { status, progress, outcome, deliveryId, deliverySeq } as const;
}

interface ValidationIssue {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** One readable sentence from TypeBox's error list, e.g. `body.env.a must be string`. */
function describeValidation(context: string, issues: ValidationIssue[]): string {
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

export async function createControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const tokenDigests = opts.tokens.filter((token) => token !== '').map(digest);
  if (tokenDigests.length === 0) throw new Error('the control server needs at least one non-empty token');
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');
  const dashboardHtml = await readFile(new URL('./public/index.html', import.meta.url), 'utf8');

  const store = new Store(opts.dbPath);
  const app = Fastify({ logger: opts.logger ?? false, routerOptions: { maxParamLength: MAX_ID_LENGTH + 44 } });
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
      scheduleHeartbeat();
    }, HEARTBEAT_MS);
    heartbeat.unref();
  };
  scheduleHeartbeat();

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

  api.get('/job', (request) => {
    const token = authenticate(request);
    const parsedLabels = parseLabelsHeader(header(request, 'x-foreman-labels'));
    if ('error' in parsedLabels) throw new HttpError(400, parsedLabels.error);
    const capacity = parseCapacity(header(request, 'x-foreman-capacity'));
    const userAgent = header(request, 'user-agent');
    const agentIdHeader = header(request, 'x-foreman-agent-id')?.trim();
    if (agentIdHeader !== undefined && agentIdHeader.length > MAX_ID_LENGTH) throw new HttpError(400, 'x-foreman-agent-id is too long');
    // Never show the token itself: agents without an id are named by a hash of token and user agent.
    const agentId = agentIdHeader || `anonymous-${createHash('sha256').update(`${token}\0${userAgent ?? ''}`).digest('hex').slice(0, 12)}`;

    const polled = store.poll({ id: agentId, labels: parsedLabels.labels, capacity, userAgent });
    broadcastAgent(polled.agent);
    polled.changed.forEach(broadcastJob);
    const base = baseUrl(request);
    return polled.assigned.map((job) => ({ ...job, callbackUrl: `${base}/job/${encodeURIComponent(job.id)}` }));
  });

  // The callback accepts any content type: bodies are forwarded from job containers as-is.
  await app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_CALLBACK_BODY }, (_request, body, parsed) => parsed(null, body));
    scope.withTypeProvider<TypeBoxTypeProvider>().put('/job/:id', { schema: { params: IdParams } }, (request) => {
      const headers = parseCallbackHeaders(request);
      const outcome = store.applyCallback({
        jobId: request.params.id,
        ...headers,
        result: callbackResult(request.body, header(request, 'content-type')),
      });
      switch (outcome.kind) {
        case 'unknown-job':
          throw new HttpError(404, `unknown job ${request.params.id}`);
        case 'applied':
          broadcastJob(outcome.job);
          return { ok: true, applied: true };
        default:
          // Duplicates, stale and post-completion deliveries are acknowledged so the agent stops retrying.
          return { ok: true, applied: false, reason: outcome.kind };
      }
    });
    done();
  });

  api.post('/jobs', { schema: { body: NewJobSchema } }, (request, reply) => {
    const job = store.createJob(request.body);
    broadcastJob(job);
    return reply.code(201).send({ id: job.id });
  });

  api.get('/jobs', () => store.listJobs());

  api.get('/jobs/:id', { schema: { params: IdParams } }, (request) => {
    const job = store.getJob(request.params.id);
    if (job === undefined) throw new HttpError(404, `unknown job ${request.params.id}`);
    return job;
  });

  api.get('/agents', () => store.listAgents());

  api.get('/events', (request, reply: FastifyReply) => {
    reply.hijack();
    const stream = reply.raw;
    stream.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
    });
    stream.write('retry: 2000\n\n');
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
    // Event streams never end by themselves.
    streams.forEach((stream) => stream.destroy());
    streams.clear();
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
