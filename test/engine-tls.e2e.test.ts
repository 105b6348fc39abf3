/**
 * Engines over TLS, end to end: the real agent and `foreman check` reach the host's engine through a
 * TLS front that requires a client certificate, as `dockerd --tlsverify` does. Certificates are made
 * here with openssl; everything listens on 127.0.0.1 and is taken down at the end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { testJobImage } from './support/image.ts';
import { readLog, spawnStack } from './support/agents.ts';
import { docker } from './support/containers.ts';
import { repoRoot } from './support/paths.ts';
import { job } from './support/reports.ts';
import { FakeControlServer } from './support/servers.ts';

const CLIENT_CN = 'foreman-test-client';
/** The engine the TLS front forwards to: the socket the other tests use. */
const engineSocket = process.env.FOREMAN_DOCKER_URL?.startsWith('unix://') ? new URL(process.env.FOREMAN_DOCKER_URL).pathname : '/var/run/docker.sock';

interface Pki {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** The client certificate the test CA signed, and its key. */
  readonly cert: string;
  readonly key: string;
  /** A second, unrelated CA (self-signed), also used as a client certificate the engine does not trust. */
  readonly otherCa: string;
  readonly otherKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an unrelated CA. */
function makePki(dir: string): Pki {
  const path = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const sign = (csr: string, out: string, ext: string): void => {
    writeFileSync(path(`${out}.ext`), ext);
    openssl('x509', '-req', '-in', csr, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', out, '-days', '1', '-extfile', `${out}.ext`);
  };
  openssl('req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=foreman-test-ca');
  openssl('req', '-x509', ...ec, '-keyout', 'other-key.pem', '-out', 'other-ca.pem', '-days', '1', '-subj', '/CN=unrelated-ca');
  openssl('req', ...ec, '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost');
  sign('server.csr', 'server.pem', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('req', ...ec, '-keyout', 'key.pem', '-out', 'client.csr', '-subj', `/CN=${CLIENT_CN}`);
  sign('client.csr', 'cert.pem', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: path('ca.pem'),
    serverCert: path('server.pem'),
    serverKey: path('server-key.pem'),
    cert: path('cert.pem'),
    key: path('key.pem'),
    otherCa: path('other-ca.pem'),
    otherKey: path('other-key.pem'),
  };
}

/** A TLS front for the engine's socket that, like dockerd --tlsverify, accepts only client certificates of the test CA. */
class TlsEngineFront {
  /** The client certificate's CN of every connection let through. */
  readonly clients: string[] = [];
  /** Request lines seen inside those connections, e.g. "POST /v1.41/containers/create". */
  readonly requests: string[] = [];
  private readonly sockets = new Set<Socket>();
  private server: TlsServer | undefined;
  port = 0;

  async start(pki: Pki): Promise<this> {
    const read = (file: string): Buffer => readFileSync(file);
    this.server = createTlsServer(
      { key: read(pki.serverKey), cert: read(pki.serverCert), ca: read(pki.ca), requestCert: true, rejectUnauthorized: true },
      (client: TLSSocket) => {
        this.clients.push(String((client.getPeerCertificate().subject as { CN?: string } | undefined)?.CN));
        const engine = connect(engineSocket);
        this.sockets.add(engine);
        client.on('data', (chunk: Buffer) => {
          const line = /^(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP\/1\.1\r\n/.exec(chunk.toString('latin1'));
          if (line) this.requests.push(`${line[1]} ${line[2]}`);
        });
        client.pipe(engine).pipe(client);
        client.on('error', () => engine.destroy());
        engine.on('error', () => client.destroy());
        client.on('close', () => engine.destroy());
        engine.on('close', () => {
          this.sockets.delete(engine);
          client.destroy();
        });
      },
    );
    // Raw connections, refused handshakes included, so that close() leaves none open.
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server.on('tlsClientError', () => undefined);
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/foreman.js with only `env` (HOME and cwd a temp dir), killed after 30 s so a hang fails rather than stalls. */
async function runCli(dir: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  const config = join(dir, 'foreman.toml');
  writeFileSync(config, '# settings come from FOREMAN_* variables\n');
  const child = spawn(process.execPath, [join(repoRoot, 'bin/foreman.js'), ...args, '--config', config], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function assertNoStackTrace(result: CliResult): void {
  assert.doesNotMatch(result.stderr, /^\s+at /m, `stack trace leaked:\n${result.stderr}`);
  assert.doesNotMatch(result.stdout, /^\s+at /m, `stack trace leaked:\n${result.stdout}`);
}

/** The check lines about the engine ("Docker engine …"), as printed. */
function engineLines(result: CliResult): string[] {
  return result.stdout.split('\n').filter((line) => /^ {2}(ok|FAIL) +(no )?Docker engine/.test(line));
}

describe('engines over TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-tls-'));
  let pki: Pki;
  let front: TlsEngineFront;
  let control: FakeControlServer;
  let engineUrl = '';

  before(async () => {
    pki = makePki(dir);
    front = await new TlsEngineFront().start(pki);
    control = await new FakeControlServer().start();
    engineUrl = `tcp://127.0.0.1:${front.port}`;
  });

  after(async () => {
    await front?.close();
    await control?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** `foreman check` against the TLS front with these FOREMAN_DOCKER_* settings. */
  const check = (tls: Record<string, string>): Promise<CliResult> =>
    runCli(dir, ['check'], {
      FOREMAN_CORE_URL: control.url,
      FOREMAN_CORE_TOKEN: 'test-token',
      FOREMAN_CORE_DATA_DIR: join(dir, 'check-data'),
      FOREMAN_CORE_NETWORK_NAME: 'foreman-tls-check-absent',
      FOREMAN_DOCKER_URL: engineUrl,
      ...tls,
    });

  test('the agent runs a job on an engine it reaches over TLS with a client certificate', async () => {
    await testJobImage();
    // A control server of its own, which close() closes.
    const s = await spawnStack({ FOREMAN_DOCKER_URL: engineUrl, FOREMAN_DOCKER_CA: pki.ca, FOREMAN_DOCKER_CERT: pki.cert, FOREMAN_DOCKER_KEY: pki.key });
    try {
      s.control.reply([job('tls-1', s.callbacks.url(), { values: [1, 2, 3] })]);
      const done = await s.callbacks.waitForCompletion('tls-1');
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 6 });
      assert.match(readLog(s.agent.logFile), new RegExp(`"engine":"tcp://127\\.0\\.0\\.1:${front.port}".*connected to the Docker engine`));
      // The container was made, and exits watched, through the TLS front with the test's client certificate.
      assert.ok(front.clients.length > 0 && front.clients.every((cn) => cn === CLIENT_CN), JSON.stringify(front.clients));
      assert.ok(
        front.requests.some((r) => /^POST (\/v[\d.]+)?\/containers\/create\?/.test(r)),
        JSON.stringify(front.requests),
      );
      assert.ok(
        front.requests.some((r) => /^GET (\/v[\d.]+)?\/events\?/.test(r)),
        JSON.stringify(front.requests),
      );
    } finally {
      await s.close();
    }
  });

  test('foreman check with the right CA and client certificate: the engine line says TLS (exit 0)', async () => {
    const seen = front.clients.length;
    const { Version, ApiVersion } = await docker.version();
    const result = await check({ FOREMAN_DOCKER_CA: pki.ca, FOREMAN_DOCKER_CERT: pki.cert, FOREMAN_DOCKER_KEY: pki.key });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.deepEqual(engineLines(result), [
      `  ok    Docker engine ${Version} (API ${ApiVersion}) at ${engineUrl} over TLS (engine certificate checked against docker.ca ${pki.ca}; client certificate docker.cert ${pki.cert})`,
    ]);
    assert.ok(front.clients.length > seen, 'check did not go through the TLS front');
    assert.equal(result.stderr, '');
  });

  test('foreman check with an unrelated CA: one line naming docker.ca (exit 1)', async () => {
    const result = await check({ FOREMAN_DOCKER_CA: pki.otherCa, FOREMAN_DOCKER_CERT: pki.cert, FOREMAN_DOCKER_KEY: pki.key });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.deepEqual(engineLines(result), [`  FAIL  Docker engine at ${engineUrl}: the engine's TLS certificate is not signed by docker.ca (${pki.otherCa})`]);
    assert.equal(result.stdout.split('\n').filter((line) => line.startsWith('  FAIL')).length, 1, result.stdout);
    assert.equal(result.stderr, '');
    assertNoStackTrace(result);
  });

  test('foreman check without a client certificate, or with one the engine does not trust (exit 1)', async () => {
    const none = await check({ FOREMAN_DOCKER_CA: pki.ca });
    assert.equal(none.code, 1, none.stdout + none.stderr);
    assert.deepEqual(engineLines(none), [
      `  FAIL  Docker engine at ${engineUrl}: the engine requires a client certificate: set docker.cert and docker.key (TLS alert "certificate required")`,
    ]);
    assertNoStackTrace(none);

    // Node's TLS server (this front) closes the connection without an alert; dockerd sends "bad certificate".
    const untrusted = await check({ FOREMAN_DOCKER_CA: pki.ca, FOREMAN_DOCKER_CERT: pki.otherCa, FOREMAN_DOCKER_KEY: pki.otherKey });
    assert.equal(untrusted.code, 1, untrusted.stdout + untrusted.stderr);
    assert.deepEqual(engineLines(untrusted), [
      `  FAIL  Docker engine at ${engineUrl}: the engine closed the connection during the TLS exchange: it may have refused the client certificate docker.cert (${pki.otherCa})`,
    ]);
    assertNoStackTrace(untrusted);
  });

  test('the agent with a missing docker.ca file exits 1 with one line naming it', async () => {
    const missing = join(dir, 'no-such-ca.pem');
    const result = await runCli(dir, ['run'], {
      FOREMAN_CORE_URL: control.url,
      FOREMAN_CORE_TOKEN: 'test-token',
      FOREMAN_CORE_DATA_DIR: join(dir, 'agent-data'),
      FOREMAN_DOCKER_URL: engineUrl,
      FOREMAN_DOCKER_CA: missing,
      FOREMAN_DOCKER_CERT: pki.cert,
      FOREMAN_DOCKER_KEY: pki.key,
    });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.equal(result.stderr, `foreman: docker.ca ${missing} cannot be read: no such file\n`);
    assertNoStackTrace(result);
  });
});
