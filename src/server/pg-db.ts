// The control server on PostgreSQL, for several instances behind a load balancer: hand-out with FOR UPDATE SKIP
// LOCKED, each sweep run by one instance at a time (an advisory lock), and every change sent to every instance
// with LISTEN/NOTIFY, so each one's browsers see it.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { systemClock } from '../shared/clock.ts';
import type { Timer } from '../shared/clock.ts';
import { MIGRATIONS, SCHEMA_TABLE, statements } from './migrations.ts';
import { isServerEvent } from './db.ts';
import type { Database, Dialect, Param, ServerEvent, Sql } from './db.ts';

const CHANNEL = 'foreman_server_events';
/** The advisory lock migrations run under, so instances starting together migrate once. */
const MIGRATION_LOCK = lockKey('migrations');
/** Deadlock and serialization failure: the transaction is tried again. */
const RETRIED_CODES = new Set(['40P01', '40001']);
const MAX_TRIES = 5;

const DIALECT: Dialect = {
  name: 'postgres',
  skipLocked: ' FOR UPDATE SKIP LOCKED',
  forUpdate: ' FOR UPDATE',
  labelsWithin: 'jobs.labels::jsonb <@ ?::jsonb',
  labelsInclude: 'jobs.labels::jsonb @> ?::jsonb',
  labelsWithinOther: 'jobs.labels::jsonb <@ other.labels::jsonb',
};

/** A 64-bit advisory lock key from a name. */
function lockKey(name: string): string {
  return createHash('sha256').update(`foreman-server:${name}`).digest().readBigInt64BE(0).toString();
}

/** `?` placeholders as PostgreSQL's `$1`, `$2`… (the store's SQL has no `?` inside strings). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** BIGINT columns (milliseconds, counts) as numbers: every one the store keeps is well below 2^53. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === 20) return (value: string) => Number(value);
    const parser = pg.types.getTypeParser(oid, format ?? 'text') as (value: string) => unknown;
    return parser;
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export async function openPostgres(url: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: 10, types, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  // An idle client's error (the server went away) must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  try {
    await migrate(pool);
  } catch (error) {
    await pool.end();
    throw error;
  }
  const db = new PostgresDatabase(pool, url);
  await db.listen();
  return db;
}

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(SCHEMA_TABLE);
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((row) => row.version));
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      for (const statement of statements(migration, 'postgres')) await client.query(statement);
      await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [migration.version, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

type Queryable = Pick<pg.PoolClient, 'query'>;

function sqlOn(client: Queryable): Sql {
  return {
    all: async <T>(sql: string, params: readonly Param[] = []) => (await client.query(numbered(sql), params as Param[])).rows as T[],
    get: async <T>(sql: string, params: readonly Param[] = []) => (await client.query(numbered(sql), params as Param[])).rows[0] as T | undefined,
    run: async (sql: string, params: readonly Param[] = []) => (await client.query(numbered(sql), params as Param[])).rowCount ?? 0,
    notify: async (event) => {
      // Delivered when the transaction commits, to every listening instance, this one included.
      await client.query('SELECT pg_notify($1, $2)', [CHANNEL, JSON.stringify(event)]);
    },
    insertLogLines: async (jobSeq, lines) => {
      if (lines.length === 0) return 0;
      const result = await client.query(
        `INSERT INTO job_logs (job_seq, i, ts, stream, text)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT DO NOTHING`,
        [jobSeq, lines.map((line) => line.i), lines.map((line) => line.ts), lines.map((line) => line.stream), lines.map((line) => line.text)],
      );
      return result.rowCount ?? 0;
    },
  };
}

class PostgresDatabase implements Database {
  readonly dialect = DIALECT;
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #listeners: Array<(event: ServerEvent) => void> = [];
  readonly #outside: Sql;
  #listener: pg.Client | undefined;
  #closed = false;
  #relisten: Timer | undefined;

  constructor(pool: pg.Pool, url: string) {
    this.#pool = pool;
    this.#url = url;
    this.#outside = sqlOn(pool);
  }

  all<T>(sql: string, params?: readonly Param[]): Promise<T[]> {
    return this.#outside.all<T>(sql, params);
  }

  get<T>(sql: string, params?: readonly Param[]): Promise<T | undefined> {
    return this.#outside.get<T>(sql, params);
  }

  run(sql: string, params?: readonly Param[]): Promise<number> {
    return this.#outside.run(sql, params);
  }

  notify(event: ServerEvent): Promise<void> {
    return this.#outside.notify(event);
  }

  insertLogLines(jobSeq: number, lines: ReadonlyArray<{ i: number; ts: string; stream: string; text: string }>): Promise<number> {
    return this.#outside.insertLogLines(jobSeq, lines);
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.#pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await fn(sqlOn(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => (broken = true));
        const code = (error as { code?: unknown }).code;
        if (attempt < MAX_TRIES && typeof code === 'string' && RETRIED_CODES.has(code)) continue;
        throw error;
      } finally {
        client.release(broken);
      }
    }
  }

  exclusive<T>(name: string, fn: (sql: Sql) => Promise<T>): Promise<T | undefined> {
    return this.tx(async (sql) => {
      const locked = await sql.get<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock(?) AS locked', [lockKey(name)]);
      if (locked?.locked !== true) return undefined;
      return fn(sql);
    });
  }

  onEvent(listener: (event: ServerEvent) => void): void {
    this.#listeners.push(listener);
  }

  /** A connection of its own that LISTENs; when it drops, another is opened. */
  async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, types });
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || message.payload === undefined) return;
      let event: unknown;
      try {
        event = JSON.parse(message.payload);
      } catch {
        return;
      }
      if (isServerEvent(event)) for (const listener of this.#listeners) listener(event);
    });
    client.on('error', () => this.#lost(client));
    client.on('end', () => this.#lost(client));
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.#listener = client;
  }

  #lost(client: pg.Client): void {
    if (this.#listener !== client || this.#closed) return;
    this.#listener = undefined;
    client.end().catch(() => undefined);
    const retry = () => {
      this.#relisten = undefined;
      if (this.#closed) return;
      this.listen().catch(() => {
        this.#relisten = systemClock.after(1000, retry, { unref: true });
      });
    };
    retry();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#relisten?.cancel();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.#pool.end();
  }
}
