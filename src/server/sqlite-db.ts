// The control server on SQLite: one file (WAL mode), one instance. better-sqlite3 is synchronous, so transactions
// are taken one at a time from a queue: no other request's statement can land inside one while it awaits.
import Database from 'better-sqlite3';
import { MIGRATIONS, SCHEMA_TABLE, statements } from './migrations.ts';
import type { Database as ServerDatabase, Dialect, Param, ServerEvent, Sql } from './db.ts';

const DIALECT: Dialect = {
  name: 'sqlite',
  skipLocked: '',
  forUpdate: '',
  // Every label the job requires is one the agent offers, with the same value.
  labelsWithin: `NOT EXISTS (SELECT 1 FROM json_each(jobs.labels) AS need
      WHERE NOT EXISTS (SELECT 1 FROM json_each(?) AS have WHERE have.key = need.key AND have.value = need.value))`,
  labelsInclude: `NOT EXISTS (SELECT 1 FROM json_each(?) AS want
      WHERE NOT EXISTS (SELECT 1 FROM json_each(jobs.labels) AS have WHERE have.key = want.key AND have.value = want.value))`,
  labelsWithinOther: `NOT EXISTS (SELECT 1 FROM json_each(jobs.labels) AS need
      WHERE NOT EXISTS (SELECT 1 FROM json_each(other.labels) AS have WHERE have.key = need.key AND have.value = need.value))`,
};

/** Columns added to the first releases' file before it had migrations; such a file gains them on open. */
const LEGACY_COLUMNS: Array<[table: string, column: string, definition: string]> = [
  ['jobs', 'cancel_requested_at', 'INTEGER'],
  ['jobs', 'requeues', 'INTEGER NOT NULL DEFAULT 0'],
  ['agents', 'lost_at', 'INTEGER'],
  ['jobs', 'log_lines', 'INTEGER NOT NULL DEFAULT 0'],
  ['jobs', 'log_total', 'INTEGER'],
  ['jobs', 'log_agent_id', 'TEXT'],
  ['jobs', 'run_options', 'TEXT'],
];

export function openSqlite(path: string): ServerDatabase {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // Another process on the same file (a benchmark's second instance) may hold the write lock briefly.
    db.pragma('busy_timeout = 5000');
    migrate(db);
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteDatabase(db);
}

function migrate(db: Database.Database): void {
  const hasTable = (name: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  const legacy = hasTable('jobs') && !hasTable('schema_migrations');
  db.exec(SCHEMA_TABLE);
  if (legacy) {
    // A file from before migrations: bring its tables to version 1, then go on from there.
    for (const [table, column, definition] of LEGACY_COLUMNS) {
      const columns = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`).all();
      if (!columns.some((existing) => existing.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
    }
  }
  const applied = new Set(
    db
      .prepare<[], { version: number }>('SELECT version FROM schema_migrations')
      .all()
      .map((row) => row.version),
  );
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    db.transaction(() => {
      for (const statement of statements(migration, 'sqlite')) db.exec(statement);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, Date.now());
    }).immediate();
  }
}

class SqliteDatabase implements ServerDatabase {
  readonly dialect = DIALECT;
  readonly #db: Database.Database;
  readonly #listeners: Array<(event: ServerEvent) => void> = [];
  /** The tail of the queue of transactions. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  all<T>(sql: string, params: readonly Param[] = []): Promise<T[]> {
    return this.#serial(() => Promise.resolve(this.#db.prepare(sql).all(...params) as T[]));
  }

  get<T>(sql: string, params: readonly Param[] = []): Promise<T | undefined> {
    return this.#serial(() => Promise.resolve(this.#db.prepare(sql).get(...params) as T | undefined));
  }

  run(sql: string, params: readonly Param[] = []): Promise<number> {
    return this.#serial(() => Promise.resolve(this.#db.prepare(sql).run(...params).changes));
  }

  notify(event: ServerEvent): Promise<void> {
    this.#emit([event]);
    return Promise.resolve();
  }

  insertLogLines(jobSeq: number, lines: ReadonlyArray<{ i: number; ts: string; stream: string; text: string }>): Promise<number> {
    return this.#serial(() => Promise.resolve(this.#insertLines(jobSeq, lines)));
  }

  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      const events: ServerEvent[] = [];
      const inner: Sql = {
        all: <R>(sql: string, params: readonly Param[] = []) => Promise.resolve(this.#db.prepare(sql).all(...params) as R[]),
        get: <R>(sql: string, params: readonly Param[] = []) => Promise.resolve(this.#db.prepare(sql).get(...params) as R | undefined),
        run: (sql: string, params: readonly Param[] = []) => Promise.resolve(this.#db.prepare(sql).run(...params).changes),
        notify: (event) => {
          events.push(event);
          return Promise.resolve();
        },
        insertLogLines: (jobSeq, lines) => Promise.resolve(this.#insertLines(jobSeq, lines)),
      };
      this.#db.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = await fn(inner);
        this.#db.exec('COMMIT');
      } catch (error) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw error;
      }
      this.#emit(events);
      return result;
    });
  }

  exclusive<T>(_name: string, fn: (sql: Sql) => Promise<T>): Promise<T | undefined> {
    return this.tx(fn);
  }

  onEvent(listener: (event: ServerEvent) => void): void {
    this.#listeners.push(listener);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    // Whatever is queued runs first.
    const close = () => {
      this.#db.close();
    };
    return this.#queue.then(close, close);
  }

  #insertLines(jobSeq: number, lines: ReadonlyArray<{ i: number; ts: string; stream: string; text: string }>): number {
    const insert = this.#db.prepare('INSERT OR IGNORE INTO job_logs (job_seq, i, ts, stream, text) VALUES (?, ?, ?, ?, ?)');
    let inserted = 0;
    for (const line of lines) inserted += insert.run(jobSeq, line.i, line.ts, line.stream, line.text).changes;
    return inserted;
  }

  #emit(events: readonly ServerEvent[]): void {
    for (const event of events) for (const listener of this.#listeners) listener(event);
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('the database is closed'));
    const result = this.#queue.then(work, work);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}
