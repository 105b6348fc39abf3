// The liveness and readiness probes over HTTP without the metrics: on the agent's Unix socket in data_dir
// (what `foreman ping` asks) and, when `health.address` is set, on a TCP listener of their own. Plain
// node:http, which the agent loads anyway for the job API: serving them costs no module and no fastify.
import { unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';

/** One probe's verdict: undefined when all is well, else why not, in one line. */
export type Probe = () => Promise<string | undefined> | string | undefined;

export interface HealthProbes {
  /** Liveness: the event loop and the store answer. The engine is not asked: an agent rides out engine outages. */
  readonly health: Probe;
  /** Readiness: the engine answers, the last poll succeeded, and the agent is neither draining nor stopping. */
  readonly ready: Probe;
}

/** The Unix socket in data_dir that answers `/healthz` and `/readyz` while the agent runs. */
export const PROBE_SOCKET = 'foreman.sock';

/** The longest path a Unix socket may have on Linux (`sun_path` is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

export function probeSocketPath(dataDir: string): string {
  return join(dataDir, PROBE_SOCKET);
}

/** Why `foreman ping` cannot use this data_dir's socket, or undefined when it can. */
export function socketPathProblem(path: string): string | undefined {
  const bytes = Buffer.byteLength(path);
  return bytes > MAX_SOCKET_PATH_BYTES
    ? `the probe socket ${path} is ${bytes} bytes long, more than a Unix socket path may be (${MAX_SOCKET_PATH_BYTES}); set a shorter core.data_dir`
    : undefined;
}

/** Answers `GET /healthz` and `GET /readyz` (and `HEAD`) with `200 ok` or `503 <reason>`, one line of text; anything else 404. */
export function probeServer(probes: HealthProbes): Server {
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    const probe = path === '/healthz' ? probes.health : path === '/readyz' ? probes.ready : undefined;
    const send = (status: number, text: string): void => {
      response
        .writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
        .end(request.method === 'HEAD' ? '' : `${text}\n`);
    };
    if (!probe || (request.method !== 'GET' && request.method !== 'HEAD')) return send(404, 'not found: GET /healthz or /readyz');
    Promise.resolve()
      .then(probe)
      .then(
        (problem) => send(problem === undefined ? 200 : 503, problem ?? 'ok'),
        (err: unknown) => send(503, `the probe failed: ${err instanceof Error ? err.message : String(err)}`),
      );
  });
  // A probe client that never finishes its request must not hold a connection for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

export interface ProbeListener {
  /** Where it listens: the socket path, or host:port. */
  readonly where: string;
  close(): Promise<void>;
}

/**
 * Serves the probes on the Unix socket at `path`. A socket file left by an agent that was killed is removed
 * first: one agent holds a data_dir (its lock is taken before this), so no other agent listens there.
 */
export async function serveProbesOnSocket(probes: HealthProbes, path: string): Promise<ProbeListener> {
  const tooLong = socketPathProblem(path);
  if (tooLong) throw new Error(tooLong);
  await unlink(path).catch((err: unknown) => {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
  });
  const server = probeServer(probes);
  await listen(server, () => server.listen(path));
  return { where: path, close: closer(server, () => unlink(path).catch(() => undefined)) };
}

/** Serves the probes on `address` (host:port; an empty host is 127.0.0.1). */
export async function serveProbesOnAddress(probes: HealthProbes, address: string): Promise<ProbeListener> {
  const { host, port } = splitAddress(address);
  const server = probeServer(probes);
  await listen(server, () => server.listen(port, host));
  const bound = server.address();
  const actualPort = typeof bound === 'object' && bound ? bound.port : port;
  return { where: `${host.includes(':') ? `[${host}]` : host}:${actualPort}`, close: closer(server) };
}

/** `host:port` (IPv6 in brackets) as the config's `host-port-or-empty` format has it. */
export function splitAddress(address: string): { host: string; port: number } {
  const separator = address.lastIndexOf(':');
  return { host: address.slice(0, separator).replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(address.slice(separator + 1)) };
}

function listen(server: Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    start();
  });
}

/** Closes the server and every connection it holds (probe clients keep theirs alive); safe to call twice. */
function closer(server: Server, after: () => Promise<unknown> = () => Promise.resolve()): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }).then(async () => void (await after())));
}
