import Docker from 'dockerode';

/** Builds a dockerode client from a `unix://` or `tcp://` (or http/https) engine URL. */
export function createDockerClient(engineUrl: string): Docker {
  const url = new URL(engineUrl);
  switch (url.protocol) {
    case 'unix:':
      return new Docker({ socketPath: url.pathname });
    case 'tcp:':
    case 'http:':
      return new Docker({ protocol: 'http', host: url.hostname, port: Number(url.port || 2375) });
    case 'https:':
      return new Docker({ protocol: 'https', host: url.hostname, port: Number(url.port || 2376) });
    default:
      throw new Error(`unsupported docker.url scheme "${url.protocol}" (expected unix://, tcp://, http:// or https://)`);
  }
}

/** One line saying why the engine did not answer, for logs and `foreman check`. */
export function describeEngineError(engineUrl: string, err: unknown): string {
  const reason = err instanceof Error ? err.message : String(err);
  return `no Docker engine at ${engineUrl}: start Docker or set docker.url (${reason})`;
}
