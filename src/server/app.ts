// The reference control server (`foreman server`): agents poll it and report to it; operators submit, cancel and
// watch jobs through its API and dashboard. One instance on SQLite, or several on one PostgreSQL database.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import { ProtocolError } from '../../packages/control-server-kit/index.ts';
import { systemClock } from '../shared/clock.ts';
import type { Clock, Timer } from '../shared/clock.ts';
import { registerAgentRoutes, jobUrls } from './agent-routes.ts';
import { registerApiRoutes } from './api-routes.ts';
import { createAuth } from './auth.ts';
import { registerDashboard } from './dashboard.ts';
import { openDatabase } from './open-db.ts';
import type { Database } from './db.ts';
import { createEventHub } from './events.ts';
import { MAX_ID_LENGTH, describeValidation, header } from './http.ts';
import type { ValidationIssue } from './http.ts';
import { registerLogRoutes } from './log-routes.ts';
import { OPENAPI_INFO } from './openapi.ts';
import { Store } from './store.ts';
import { startSweeps } from './sweeps.ts';

export interface ControlServerOptions {
  /** A SQLite file (created if missing) or a postgres:// URL; or an open database. */
  database: string | Database;
  /** Bearer tokens agents may present on GET /job. */
  tokens: readonly string[];
  /** Tokens for operators: submit, cancel, read. */
  adminTokens: readonly string[];
  /** Tokens that may read jobs, agents, logs and events, not submit or cancel. */
  readOnlyTokens?: readonly string[];
  /** Passed to fastify (pino); default off. */
  logger?: FastifyServerOptions['logger'];
  /** Base URL agents use to reach this server, for callbackUrl and logsUrl; default derived from each request's Host. */
  publicUrl?: string | undefined;
  /** An agent with no poll for this long is lost and its unfinished jobs are requeued; 0 never. Default 15000. */
  agentTimeoutMs?: number;
  /** Ended jobs and their logs are deleted this long after they ended; 0 keeps them. Default 30 days. */
  retentionMs?: number;
  /** How often retention runs. Default one hour. */
  retentionIntervalMs?: number;
  /** A job handed out and not reported on for this long is handed again to the same agent (0: never). Default 60 s. */
  redeliverAfterMs?: number;
  /** A job waits this long after it was queued for a live agent that has its image (0: no preference). Default 5 s. */
  imagePreferenceMs?: number;
  /** POST /jobs answers 429 while this many jobs are queued. Default 10000. */
  maxQueuedJobs?: number;
  /** The largest POST /jobs body, in bytes. Default 1 MiB. */
  maxJobBytes?: number;
  /** Serve HTTPS with this certificate chain and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  clock?: Clock;
}

export interface ControlServer {
  app: FastifyInstance;
  store: Store;
  /** A job's callbackUrl and logsUrl under `base` (what a poll hands out); undefined for an unknown job. */
  jobUrls(id: string, base: string): Promise<{ callbackUrl: string; logsUrl: string } | undefined>;
  /** Runs one retention pass now; the number of jobs deleted. */
  prune(): Promise<number>;
  /** Stops the HTTP server (ending live event streams), the timers, and closes the database. Safe twice. */
  close(): Promise<void>;
}

export const DEFAULTS = {
  agentTimeoutMs: 15_000,
  retentionMs: 30 * 86_400_000,
  retentionIntervalMs: 3_600_000,
  redeliverAfterMs: 60_000,
  imagePreferenceMs: 5_000,
  maxQueuedJobs: 10_000,
  maxJobBytes: 1024 * 1024,
} as const;

const HEARTBEAT_MS = 15_000;
const MAX_TIMER_MS = 2_147_483_647;

function checkMs(name: string, value: number, max = MAX_TIMER_MS): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new Error(`${name} must be a whole number of ms from 0 to ${max}`);
  return value;
}

export async function createControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const auth = createAuth({ agent: opts.tokens, admin: opts.adminTokens, readOnly: opts.readOnlyTokens ?? [] });
  if (opts.tokens.every((token) => token === '')) throw new Error('the control server needs at least one agent token');
  if (opts.adminTokens.every((token) => token === '')) throw new Error('the control server needs at least one admin token');
  const clock = opts.clock ?? systemClock;
  const agentTimeoutMs = checkMs('the agent timeout', opts.agentTimeoutMs ?? DEFAULTS.agentTimeoutMs);
  const retentionMs = checkMs('the retention', opts.retentionMs ?? DEFAULTS.retentionMs, Number.MAX_SAFE_INTEGER);
  const retentionIntervalMs = checkMs('the retention interval', opts.retentionIntervalMs ?? DEFAULTS.retentionIntervalMs);
  const redeliverAfterMs = checkMs('the redelivery delay', opts.redeliverAfterMs ?? DEFAULTS.redeliverAfterMs);
  const imagePreferenceMs = checkMs('the image preference', opts.imagePreferenceMs ?? DEFAULTS.imagePreferenceMs);
  const maxQueuedJobs = opts.maxQueuedJobs ?? DEFAULTS.maxQueuedJobs;
  const maxJobBytes = opts.maxJobBytes ?? DEFAULTS.maxJobBytes;
  if (!Number.isSafeInteger(maxQueuedJobs) || maxQueuedJobs < 1) throw new Error('the queued-jobs cap must be a whole number of at least 1');
  if (!Number.isSafeInteger(maxJobBytes) || maxJobBytes < 1024) throw new Error('the job size limit must be at least 1024 bytes');
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');

  const db = typeof opts.database === 'string' ? await openDatabase(opts.database) : opts.database;
  const store = new Store(db);
  const app = Fastify({
    logger: opts.logger ?? false,
    routerOptions: { maxParamLength: MAX_ID_LENGTH * 9 },
    ...(opts.tls === undefined ? {} : { https: { cert: opts.tls.cert, key: opts.tls.key } }),
  }) as unknown as FastifyInstance;
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  await app.register(swagger, { openapi: OPENAPI_INFO });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: ValidationIssue[]; validationContext?: string }, request, reply) => {
    if (error instanceof ProtocolError) return reply.code(error.status).send({ error: error.message });
    const statusCode = error.statusCode ?? 500;
    if (error.validation !== undefined) {
      return reply.code(400).send({ error: `invalid request: ${describeValidation(error.validationContext ?? 'request', error.validation)}` });
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send({ error: `unsupported content-type ${header(request, 'content-type') ?? '(none)'}: send application/json` });
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: `the body is larger than this endpoint takes (${request.routeOptions.bodyLimit ?? 'its limit'} bytes)` });
    }
    if (statusCode >= 400 && statusCode < 500) return reply.code(statusCode).send({ error: error.message });
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ error: 'internal server error' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }));

  const logRoutes = await registerLogRoutes(app, store.logs, auth);
  const hub = createEventHub(
    store,
    (event) => (event.kind === 'log' ? logRoutes.wake(event.id) : logRoutes.reset(event.id)),
    (error) => app.log.error({ err: error }, 'reading a change for the live streams failed'),
  );
  db.onEvent((event) => hub.handle(event));
  await registerAgentRoutes(app, store, auth, {
    publicUrl,
    redeliverAfterMs,
    imagePreferenceMs,
    // An agent that polled within the agent timeout (a few poll intervals) is live for the preference.
    liveWithinMs: agentTimeoutMs === 0 ? DEFAULTS.agentTimeoutMs : agentTimeoutMs,
  });
  await registerApiRoutes(app, store, auth, hub, { maxQueuedJobs, maxJobBytes });
  registerDashboard(app, auth, db);
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());

  // A comment line keeps proxies from timing out idle streams.
  let heartbeat: Timer | undefined;
  const scheduleHeartbeat = () => {
    heartbeat = clock.after(
      HEARTBEAT_MS,
      () => {
        hub.ping();
        logRoutes.ping();
        scheduleHeartbeat();
      },
      { unref: true },
    );
  };
  scheduleHeartbeat();
  const sweeps = startSweeps(store, { agentTimeoutMs, retentionMs, retentionIntervalMs }, clock, {
    warn: (fields, message) => app.log.warn(fields, message),
    info: (fields, message) => app.log.info(fields, message),
    error: (fields, message) => app.log.error(fields, message),
  });

  // Sockets a client opened but never sent a request on (undici pre-connects) are not "idle" to node's
  // closeIdleConnections, so close() would wait until the client drops them.
  const unusedSockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    unusedSockets.add(socket);
    socket.once('close', () => unusedSockets.delete(socket));
  });
  app.server.on('secureConnection', (socket: Socket) => {
    unusedSockets.add(socket);
    socket.once('close', () => unusedSockets.delete(socket));
  });
  app.server.on('request', (request: IncomingMessage) => unusedSockets.delete(request.socket));

  app.addHook('preClose', (done) => {
    heartbeat?.cancel();
    // Event streams never end by themselves.
    hub.closeAll();
    logRoutes.closeAll();
    unusedSockets.forEach((socket) => socket.destroy());
    done();
  });

  let closing: Promise<void> | undefined;
  return {
    app,
    store,
    async jobUrls(id, base) {
      const secret = await store.jobSecret(id);
      return secret === undefined ? undefined : jobUrls(base.replace(/\/+$/, ''), id, secret);
    },
    prune: () => sweeps.prune(),
    close: () =>
      (closing ??= (async () => {
        await sweeps.close();
        await app.close();
        await db.close();
      })()),
  };
}
