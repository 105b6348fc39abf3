import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
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

/** Paths of the PEM files for an engine over TLS (`docker.ca`, `docker.cert`, `docker.key`), as DOCKER_CERT_PATH's ca.pem, cert.pem, key.pem. */
export interface EngineTls {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

/** `docker.url` or `docker.ca`/`cert`/`key` cannot make a client; the message is one line naming the key. */
export class EngineSettingError extends Error {
  override readonly name = 'EngineSettingError';
}

/**
 * Builds a dockerode client from a `unix://`, `tcp://`, `http://` or `https://` engine URL. With TLS
 * files, `tcp://` means TLS on port 2376 by default, as for the docker CLI with DOCKER_TLS_VERIFY.
 * The files are read and checked here, so a wrong one stops the agent at start with one line.
 */
export function createDockerClient(engineUrl: string, tls: EngineTls = {}): Docker {
  const url = new URL(engineUrl);
  const set = (['ca', 'cert', 'key'] as const).filter((name) => tls[name]);
  const plain = (scheme: string): EngineSettingError =>
    new EngineSettingError(
      `${set.map((name) => `docker.${name}`).join(', ')} ${set.length === 1 ? 'is' : 'are'} set, but docker.url uses ${scheme}, which has no TLS: use tcp://host:2376 or https://host:2376, or unset ${set.length === 1 ? 'it' : 'them'}`,
    );
  switch (url.protocol) {
    case 'unix:':
      if (set.length > 0) throw plain('unix://');
      return new Docker({ socketPath: url.pathname });
    case 'http:':
      if (set.length > 0) throw plain('http://');
      return new Docker({ protocol: 'http', host: url.hostname, port: Number(url.port || 2375) });
    case 'tcp:':
      if (set.length === 0) return new Docker({ protocol: 'http', host: url.hostname, port: Number(url.port || 2375) });
      return new Docker({ protocol: 'https', host: url.hostname, port: Number(url.port || 2376), ...readTlsFiles(tls) });
    case 'https:':
      // Without docker.ca the engine's certificate is checked against the system's CAs.
      return new Docker({ protocol: 'https', host: url.hostname, port: Number(url.port || 2376), ...readTlsFiles(tls) });
    default:
      throw new Error(`unsupported docker.url scheme "${url.protocol}" (expected unix://, tcp://, http:// or https://)`);
  }
}

/** The PEM contents for dockerode (docker-modem passes them to https.request), checked for what is sure to fail later. */
function readTlsFiles(tls: EngineTls): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    const [given, missing] = tls.cert ? ['cert', 'key'] : ['key', 'cert'];
    throw new EngineSettingError(`docker.${given} is set but docker.${missing} is not: a client certificate needs both`);
  }
  const files: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (tls.ca) files.ca = readPem('ca', tls.ca, /-----BEGIN CERTIFICATE-----/, 'no PEM certificate');
  if (tls.cert && tls.key) {
    const cert = readPem('cert', tls.cert, /-----BEGIN CERTIFICATE-----/, 'no PEM certificate');
    const key = readPem('key', tls.key, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'no PEM private key');
    try {
      // Node would only find out at the first request, as an error on every call to the engine.
      createSecureContext({ cert, key });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH') throw new EngineSettingError(`docker.key ${tls.key} is not the private key of docker.cert ${tls.cert}`);
      throw new EngineSettingError(`docker.cert ${tls.cert} with docker.key ${tls.key} cannot be used: ${err instanceof Error ? err.message : String(err)}`);
    }
    files.cert = cert;
    files.key = key;
  }
  return files;
}

function readPem(name: keyof EngineTls, path: string, marker: RegExp, missing: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    throw new EngineSettingError(`docker.${name} ${path} cannot be read: ${fileProblem(err)}`);
  }
  if (!marker.test(pem.toString('latin1'))) throw new EngineSettingError(`docker.${name} ${path} holds ${missing}`);
  return pem;
}

function fileProblem(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}

/** One line saying why the engine did not answer, for logs and `foreman check`. */
export function describeEngineError(engineUrl: string, err: unknown, tls: EngineTls = {}): string {
  if (err instanceof EngineSettingError) return `Docker engine at ${engineUrl}: ${err.message}`;
  const usesTls = engineUrl.startsWith('https:') || Boolean(tls.ca || tls.cert || tls.key);
  const tlsReason = usesTls ? describeTlsFailure(err, tls) : undefined;
  if (tlsReason) return `Docker engine at ${engineUrl}: ${tlsReason}`;
  const reason = err instanceof Error ? err.message : String(err);
  return `no Docker engine at ${engineUrl}: start Docker or set docker.url (${reason})`;
}

/** OpenSSL's verify results (Node's err.code) for a certificate chain that leads to no CA trusted here. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/**
 * Alerts an engine sends when it rejects the client's certificate or its absence: Go's TLS (dockerd)
 * sends "certificate required" (TLS 1.3) or "bad certificate", OpenSSL "unknown ca" or "handshake failure".
 */
const CLIENT_CERT_ALERTS = new Set([
  'certificate required',
  'bad certificate',
  'unknown ca',
  'certificate unknown',
  'unsupported certificate',
  'certificate expired',
  'certificate revoked',
  'access denied',
  'handshake failure',
]);

/** Why a TLS connection to the engine failed, in terms of docker.ca/cert/key; undefined when it is no TLS failure. */
function describeTlsFailure(err: unknown, tls: EngineTls): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const { code, reason, host } = err as { code?: unknown; reason?: unknown; host?: unknown };
  const ca = tls.ca ? `docker.ca (${tls.ca})` : undefined;
  const cert = tls.cert ? `docker.cert (${tls.cert})` : undefined;
  if (typeof code === 'string' && UNTRUSTED.has(code)) {
    return ca ? `the engine's TLS certificate is not signed by ${ca}` : "the engine's TLS certificate is not signed by a CA this system trusts: set docker.ca";
  }
  if (code === 'CERT_HAS_EXPIRED') return "the engine's TLS certificate has expired";
  if (code === 'CERT_NOT_YET_VALID') return "the engine's TLS certificate is not valid yet";
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the engine's TLS certificate is not made out to ${typeof host === 'string' ? host : 'the host in docker.url'} (${typeof reason === 'string' ? reason : err.message})`;
  }
  // Node gives an alert as code ERR_SSL_<VERSION>_ALERT_<NAME>, or (TLS 1.2, on write) as EPROTO with the name in the message.
  const alert = /alert ([a-z ]+?)(?::|$)/m.exec(typeof reason === 'string' ? reason : err.message)?.[1];
  if (alert && CLIENT_CERT_ALERTS.has(alert)) {
    return cert
      ? `the engine refused the client certificate ${cert} (TLS alert "${alert}")`
      : `the engine requires a client certificate: set docker.cert and docker.key (TLS alert "${alert}")`;
  }
  if (alert) return `the TLS handshake with the engine failed (TLS alert "${alert}")`;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/.test(err.message)) {
    return 'the engine did not answer in TLS: docker.url may name a plain-HTTP port (such as 2375) rather than its TLS port (2376)';
  }
  // A Node TLS server that rejects a client certificate just closes the connection, with no alert.
  if (code === 'ECONNRESET' && err.message === 'socket hang up') {
    return cert
      ? `the engine closed the connection during the TLS exchange: it may have refused the client certificate ${cert}`
      : 'the engine closed the connection during the TLS exchange: it may require a client certificate (docker.cert and docker.key)';
  }
  return undefined;
}
