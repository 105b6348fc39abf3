/**
 * A PostgreSQL of the test's own: Debian's `postgresql` binaries (initdb, pg_ctl), a data directory in a temp dir, a
 * free port on 127.0.0.1 and the socket in that dir; run as the `postgres` user when the test runs as root. Stopped
 * (by its postmaster's pid, through pg_ctl) and removed by `stop()`. Nothing of the host's own PostgreSQL is touched.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.ts';

const run = promisify(execFile);

/** The newest installed PostgreSQL's bin directory, or undefined. */
function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((name) => existsSync(join(root, name, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

const BIN = binDir();
const asRoot = userInfo().uid === 0;
const postgresUser = asRoot ? spawnSync('id', ['-u', 'postgres']) : undefined;

/** Why PostgreSQL tests cannot run here, or false. */
export const postgresSkip: string | false =
  BIN === undefined
    ? 'PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)'
    : asRoot && postgresUser?.status !== 0
      ? 'running as root and there is no postgres user to run PostgreSQL as'
      : false;

export interface TestPostgres {
  /** postgres://… for a database of its own (create more with createDatabase). */
  readonly url: string;
  readonly port: number;
  /** A fresh, empty database on this instance; its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** Runs a PostgreSQL binary, as the postgres user when this process is root. */
async function pgCommand(tool: string, args: string[]): Promise<string> {
  const command = asRoot ? ['runuser', '-u', 'postgres', '--', join(BIN!, tool), ...args] : [join(BIN!, tool), ...args];
  const { stdout } = await run(command[0]!, command.slice(1), { maxBuffer: 8 << 20 });
  return stdout;
}

export async function startPostgres(): Promise<TestPostgres> {
  if (postgresSkip) throw new Error(postgresSkip);
  const dir = mkdtempSync(join(tmpdir(), 'foreman-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  const port = await freePort();
  await pgCommand('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  // fsync off: a test database need not survive a power cut, and the disk is shared.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  await pgCommand('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start']);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    url,
    port,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(name)}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // pg_ctl signals the postmaster of this data directory (its pid file), and waits for it.
      await pgCommand('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
