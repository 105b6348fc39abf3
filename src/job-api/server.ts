import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';

export type JobStatus = 'running' | 'completed';

export interface JobUpdate {
  readonly status: JobStatus;
  readonly progress: number;
  /** The container's request headers, lower-cased, as received. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The raw request body, byte for byte. */
  readonly body: Buffer;
}

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

/** What the job API needs from the agent; all job logic lives behind it. */
export interface JobApiBackend {
  /** True when `secret` is the secret of a job this agent tracks. Must not reveal why not. */
  authorize(jobId: string, secret: string): boolean;
  fetchJob(jobId: string): Promise<ApiReply>;
  updateJob(jobId: string, update: JobUpdate): Promise<ApiReply>;
}

export interface JobApiOptions {
  readonly backend: JobApiBackend;
  readonly log: Logger;
  readonly maxBodySize: number;
}

export interface JobApiServer {
  readonly app: FastifyInstance;
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

const StatusHeaders = Type.Object({
  'x-foreman-job-status': Type.Union([Type.Literal('running'), Type.Literal('completed')]),
  'x-foreman-job-progress': Type.Optional(Type.Number()),
});
const Params = Type.Object({ id: Type.String() });
const Query = Type.Object({ token: Type.Optional(Type.String()) });

const notFound = { error: 'no such job' };

function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  const path = first?.instancePath ?? '';
  if (path.includes('x-foreman-job-status') || (first?.keyword === 'required' && String(first.params?.missingProperty).includes('status'))) {
    return 'x-foreman-job-status must be "running" or "completed"';
  }
  if (path.includes('x-foreman-job-progress')) return 'x-foreman-job-progress must be a number';
  return error.message;
}

/**
 * Answers to requests on a connection that also carried bytes that are not HTTP. Node's default
 * (and fastify's) writes a 400 and closes the connection at once, cutting off the answer to a valid
 * request before the bad bytes, one the agent may already have recorded and forwarded. So the 400
 * waits until every request of that connection has been answered.
 */
class ConnectionTracker {
  private readonly open = new WeakMap<Socket, { count: number; then?: () => void }>();

  track(socket: Socket, response: ServerResponse): void {
    const entry = this.open.get(socket) ?? { count: 0 };
    this.open.set(socket, entry);
    entry.count++;
    response.once('close', () => {
      entry.count--;
      if (entry.count === 0) entry.then?.();
    });
  }

  clientError(err: Error & { code?: string }, socket: Duplex): void {
    const close = (): void => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, text] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : [400, 'Bad Request'];
      const body = JSON.stringify({ error: status === 400 ? 'malformed HTTP request' : text.toLowerCase() });
      const answer = `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      if (socket.writable) socket.end(answer, () => socket.destroy());
      else socket.destroy();
    };
    const entry = this.open.get(socket as Socket);
    if (entry && entry.count > 0) entry.then = close;
    else close();
  }
}

/** The HTTP server job containers talk to: `GET /job/<id>` and `PUT /job/<id>`, each with `?token=<secret>`. */
export function createJobApi(options: JobApiOptions): JobApiServer {
  const { backend, log } = options;
  const connections = new ConnectionTracker();
  const app = Fastify({
    logger: false,
    bodyLimit: options.maxBodySize,
    // Job ids may be up to 256 characters once percent-encoded three times over.
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
    clientErrorHandler: (err, socket) => connections.clientError(err, socket),
  }).withTypeProvider<TypeBoxTypeProvider>();
  // First of the hooks, so that every request is counted, those answered 404 by the next one too.
  app.addHook('onRequest', (request, reply, done) => {
    connections.track(request.raw.socket, reply.raw);
    done();
  });

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
      return reply.code(413).send({ error: `request body exceeds ${options.maxBodySize} bytes` });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.message });
    }
    log.error({ err: error.message }, 'job API request failed');
    return reply.code(503).send({ error: 'the agent could not record this request; retry' });
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(notFound));

  app.get('/job/:id', { schema: { params: Params, querystring: Query } }, async (request, reply) => {
    const result = await backend.fetchJob(request.params.id);
    return reply.code(result.status).send(result.body);
  });

  app.put('/job/:id', { schema: { params: Params, querystring: Query, headers: StatusHeaders } }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const result = await backend.updateJob(request.params.id, {
      status: request.headers['x-foreman-job-status'],
      progress: request.headers['x-foreman-job-progress'] ?? 0,
      headers: request.raw.headers,
      body,
    });
    return reply.code(result.status).send(result.body);
  });

  let closed: Promise<void> | undefined;
  return {
    app,
    async listen(host, port) {
      await app.listen({ host, port });
      const address = app.server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      return { host, port: bound };
    },
    close() {
      closed ??= app.close();
      return closed;
    },
  };
}
