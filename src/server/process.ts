// `foreman server` as a process: starts the control server from its frozen config, prints where it listens, and
// stops on SIGINT or SIGTERM (a second signal exits at once). The command line's one door into src/server/.
import { createControlServer } from './app.ts';
import type { ControlServer } from './app.ts';
import type { ServerConfig } from './config.ts';

export { loadServerConfig, ServerConfigError, KEYS, envName } from './config.ts';
export type { ServerConfig, ServerConfigInput } from './config.ts';

export interface ServerProcessIo {
  write(line: string): void;
  complain(line: string): void;
}

/** Runs until a signal; the exit code. */
export async function runServerProcess(config: ServerConfig, io: ServerProcessIo): Promise<number> {
  let server: ControlServer | undefined;
  try {
    server = await createControlServer({
      database: config.database,
      tokens: config.tokens,
      adminTokens: config.adminTokens,
      readOnlyTokens: config.readOnlyTokens,
      publicUrl: config.publicUrl,
      agentTimeoutMs: config.agentTimeoutMs,
      retentionMs: config.retentionMs,
      redeliverAfterMs: config.redeliverAfterMs,
      imagePreferenceMs: config.imagePreferenceMs,
      maxQueuedJobs: config.maxQueuedJobs,
      maxJobBytes: config.maxJobBytes,
      tls: config.tls,
      logger: {
        level: config.logLevel,
        // A callbackUrl's or logsUrl's secret never reaches the log.
        serializers: {
          req: (request: { method: string; url: string; ip?: string }) => ({
            method: request.method,
            url: redactSecret(request.url),
            remoteAddress: request.ip,
          }),
        },
      },
    });
    await server.app.listen({ port: config.port, host: config.host });
  } catch (error) {
    io.complain(`the control server failed to start: ${(error as Error).message}`);
    await server?.close().catch(() => undefined);
    return 1;
  }
  const listening = server.app.server.address();
  const port = typeof listening === 'object' && listening !== null ? listening.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const store = config.database.startsWith('postgres') ? 'PostgreSQL' : `SQLite ${config.database}`;
  io.write(`dashboard: ${config.tls === undefined ? 'http' : 'https'}://${host}:${port}/ (${store})`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  // A second signal while closing exits at once.
  const force = () => process.exit(1);
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await server.close();
  process.off('SIGINT', force);
  process.off('SIGTERM', force);
  return 0;
}

/** A URL with its `secret=` query value replaced. */
export function redactSecret(url: string): string {
  return url.replace(/([?&]secret=)[^&#]*/gi, '$1[redacted]');
}
