/** The reference control server (src/server/) in a test: started on a temp SQLite file or a given database, with tokens. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { createControlServer } from '../../src/server/app.ts';
import type { ControlServer, ControlServerOptions } from '../../src/server/app.ts';
import { repoRoot } from './paths.ts';

export const AGENT_TOKEN = 'test-token';
export const ADMIN_TOKEN = 'test-admin-token';
export const READ_TOKEN = 'test-read-token';

export interface RunningServer {
  readonly server: ControlServer;
  /** http://127.0.0.1:<port> */
  readonly base: string;
  /** A job's callbackUrl and logsUrl, as a poll hands them out (with the job's secret). */
  urls(id: string): Promise<{ callbackUrl: string; logsUrl: string }>;
  close(): Promise<void>;
}

/** Starts a control server on 127.0.0.1 and a free port; agent token AGENT_TOKEN, admin ADMIN_TOKEN, read-only READ_TOKEN. */
export async function startControlServer(options: Partial<ControlServerOptions> & Pick<ControlServerOptions, 'database'>): Promise<RunningServer> {
  const database = typeof options.database === 'string' ? await testDatabase(options.database) : options.database;
  const server = await createControlServer({ tokens: [AGENT_TOKEN], adminTokens: [ADMIN_TOKEN], readOnlyTokens: [READ_TOKEN], ...options, database });
  try {
    await server.app.listen({ host: '127.0.0.1', port: 0 });
  } catch (error) {
    await server.close();
    throw error;
  }
  const base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  return {
    server,
    base,
    async urls(id) {
      const urls = await server.jobUrls(id, base);
      if (urls === undefined) throw new Error(`no job ${id}`);
      return urls;
    },
    close: () => server.close(),
  };
}

/** fetch that signs in as an operator (an admin token by default) when the request carries no authorization of its own. */
export function operatorFetch(token = ADMIN_TOKEN): typeof fetch {
  return (input, init = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
}

/**
 * The database a test's server uses for `path`: the SQLite file itself, or, when FOREMAN_TEST_POSTGRES_URL names a
 * PostgreSQL instance (test/control-server-postgres.test.ts runs the server's tests again that way), a database of
 * that instance made for this path on first use, so a server restarted on the same path finds its data again.
 */
export async function testDatabase(path: string): Promise<string> {
  const instance = process.env.FOREMAN_TEST_POSTGRES_URL;
  if (instance === undefined || instance === '') return path;
  const name = `t_${createHash('sha256').update(path).digest('hex').slice(0, 20)}`;
  const url = new URL(instance);
  url.pathname = `/${name}`;
  if (!madeDatabases.has(name)) {
    const client = new pg.Client({ connectionString: instance });
    await client.connect();
    try {
      const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    madeDatabases.add(name);
  }
  return url.toString();
}

const madeDatabases = new Set<string>();

/** Whether the server's tests run on PostgreSQL (see testDatabase). */
export const onPostgres = (process.env.FOREMAN_TEST_POSTGRES_URL ?? '') !== '';

export interface SpawnedServer {
  readonly child: ChildProcess;
  /** http(s)://host:port, from the line it prints once it listens. */
  readonly base: string;
  readonly exited: Promise<number | null>;
  /** What it printed on stderr (its log at warn and above). */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `foreman server ARGS` from the sources (tsx) as a process of its own, and waits until it listens. */
export async function spawnServer(args: readonly string[], env: Record<string, string> = {}): Promise<SpawnedServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/support/foreman.ts'), 'server', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  let base: string | undefined;
  while (base === undefined) {
    base = /dashboard: (https?:\/\/\S+?)\/ /.exec(stdout)?.[1];
    if (base !== undefined) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`foreman server did not start (exit ${String(child.exitCode)}): ${stdout}${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child,
    base,
    exited,
    output: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
