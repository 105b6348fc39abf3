import Docker from 'dockerode';
import modemHttp from 'docker-modem/lib/http.js';

/**
 * dockerode's transport follows an engine's redirect with a second request that nothing listens to for
 * errors, and over a unix socket it resolves the new location against no host. The engine redirects
 * any path it would clean (`/images/a//b/json` → 301), so an image reference like `a//b` made the agent
 * dial a host named "images" and die of an unhandled `error` event. The Docker API never needs a
 * redirect: none is followed, and the request fails with the error `isRedirectRefusal` recognises.
 */
modemHttp.maxRedirects = 0;

/** The error a redirect from the engine ends in: the engine answered (3xx), so it is no connection failure. */
export function isRedirectRefusal(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('Max redirects exceeded');
}

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
