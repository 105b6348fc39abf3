import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { JobApp } from './app.ts';
import type { JobApiOptions } from './types.ts';

export type { ApiReply, JobApiBackend, JobApiOptions, JobStatus, JobUpdate } from './types.ts';

export interface JobApiServer {
  /** The fastify app behind the server, built on first use; tests inject requests through it. */
  app(): Promise<FastifyInstance>;
  /** Starts loading the routes ahead of the first request (about 0.1 s), when a job is on its way. */
  prepare(): void;
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

/** fastify's own keep-alive default, which the job API kept when fastify still made its server. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

function unavailable(response: ServerResponse): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(503, { 'content-type': 'application/json', connection: 'close' });
  response.end(JSON.stringify({ error: 'the agent could not take this request; retry' }));
}

/**
 * Answers to requests on a connection that also carried bytes that are not HTTP. Node's default
 * (and fastify's) writes a 400 and closes the connection at once, cutting off the answer to a valid
 * request before the bad bytes, one the agent may already have recorded and forwarded. So the 400
 * waits until every request of that connection that arrived whole has been answered. A request whose
 * body is what broke (a chunk size that is not hex, say) will never arrive whole: it is not waited for,
 * nothing of it reaches the routes, and the 400 answers it.
 */
class ConnectionTracker {
  private readonly open = new WeakMap<Socket, { readonly pending: Map<IncomingMessage, ServerResponse>; then?: () => void }>();

  track(socket: Socket, request: IncomingMessage, response: ServerResponse): void {
    let entry = this.open.get(socket);
    if (!entry) {
      entry = { pending: new Map() };
      this.open.set(socket, entry);
    }
    const tracked = entry;
    tracked.pending.set(request, response);
    response.once('close', () => {
      if (!tracked.pending.delete(request)) return;
      if (tracked.pending.size === 0) tracked.then?.();
    });
  }

  clientError(err: Error & { code?: string }, socket: Duplex): void {
    const close = (): void => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, text] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large']
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout']
            : [400, 'Bad Request'];
      const body = JSON.stringify({ error: status === 400 ? 'malformed HTTP request' : text.toLowerCase() });
      const answer = `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      if (socket.writable) socket.end(answer, () => socket.destroy());
      else socket.destroy();
    };
    const entry = this.open.get(socket as Socket);
    // The request still being read is the one the bad bytes broke: its body can never end, so its
    // answer is this 400, not one from the routes (which never see it whole, so record nothing).
    for (const [request] of entry?.pending ?? []) if (!request.complete) entry?.pending.delete(request);
    if (entry && entry.pending.size > 0) entry.then = close;
    else close();
  }
}

/**
 * The HTTP server job containers talk to: `GET /job/<id>` and `PUT /job/<id>`, each with `?token=<secret>`.
 *
 * The server itself (node:http, which the agent loads anyway) binds at start, so a taken port is an
 * error at start. The routes (fastify with its router and schema compiler, app.ts) are loaded when
 * a job arrives (`prepare`) or with the first request: an idle agent never pays for them.
 */
export function createJobApi(options: JobApiOptions): JobApiServer {
  const { log } = options;
  const connections = new ConnectionTracker();
  const server = createServer();
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.requestTimeout = 0;
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => connections.clientError(err, socket));

  let built: Promise<JobApp> | undefined;
  let closing = false;
  const build = (): Promise<JobApp> =>
    (built ??= import('./app.ts')
      .then(({ buildJobApp }) => buildJobApp(options, server))
      .catch((err: unknown) => {
        built = undefined; // the next request tries again
        throw err;
      }));

  const dispatch = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (closing && !built) return unavailable(response);
    try {
      (await build()).handle(request, response);
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'job API could not start its routes');
      unavailable(response);
    }
  };
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    // Counted here rather than in fastify, so requests that arrive while it loads are counted too.
    connections.track(request.socket, request, response);
    void dispatch(request, response);
  });

  let closed: Promise<void> | undefined;
  return {
    app: () => build().then((b) => b.app),
    prepare() {
      // A failure here is reported by the request that meets it.
      if (!closing) build().catch(() => undefined);
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          // Later errors (accept failing when out of file descriptors) are logged, not thrown.
          server.on('error', (err) => log.error({ err: err.message }, 'job API server error'));
          const address = server.address();
          resolve({ host, port: typeof address === 'object' && address ? address.port : port });
        });
      });
    },
    close() {
      closed ??= (async () => {
        closing = true;
        // fastify first: from now on it answers 503 with `connection: close`; then the server stops
        // accepting connections, closes idle ones and waits for the requests in flight.
        const app = await built?.then((b) => b.app).catch(() => undefined);
        await app?.close();
        if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closed;
    },
  };
}
