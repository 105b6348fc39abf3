// The control server's database, whichever it is: SQLite (one instance, one file) or PostgreSQL (several instances).
// The store (store.ts, logs.ts, sweeps.ts) writes its SQL once, with `?` placeholders, against this interface;
// what differs between the two is asked of the dialect.

export type Param = string | number | null;

/** Statements inside or outside a transaction. */
export interface Sql {
  all<T>(sql: string, params?: readonly Param[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly Param[]): Promise<T | undefined>;
  /** The number of rows changed. */
  run(sql: string, params?: readonly Param[]): Promise<number>;
  /**
   * Tells every instance's listeners (onEvent) once this transaction commits; outside a transaction, at once.
   * PostgreSQL: NOTIFY, so browsers connected to any instance see the change.
   */
  notify(event: ServerEvent): Promise<void>;
  /** Stores a log batch's lines, keeping the first copy of each line number; the number stored. */
  insertLogLines(jobSeq: number, lines: ReadonlyArray<{ i: number; ts: string; stream: string; text: string }>): Promise<number>;
}

export interface Dialect {
  readonly name: 'sqlite' | 'postgres';
  /** ` FOR UPDATE SKIP LOCKED` (PostgreSQL) or nothing: appended to the hand-out's SELECT. */
  readonly skipLocked: string;
  /** ` FOR UPDATE` (PostgreSQL) or nothing: appended to a SELECT of a row the transaction will change. */
  readonly forUpdate: string;
  /** A condition: the job's labels (a JSON object, column `labels`) are all in the JSON object bound at `?`. */
  readonly labelsWithin: string;
  /** A condition: the job's labels include every key and value of the JSON object bound at `?`. */
  readonly labelsInclude: string;
  /** A condition: the job's labels are all in those of the agents row aliased `other`. */
  readonly labelsWithinOther: string;
}

export interface Database extends Sql {
  readonly dialect: Dialect;
  /**
   * Runs `fn` in one transaction (SQLite: BEGIN IMMEDIATE, one at a time; PostgreSQL: READ COMMITTED with row
   * locks, retried on a deadlock or serialization failure).
   */
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a transaction only if no other instance is running the job `name` (a PostgreSQL advisory lock held
   * until commit); undefined when another one is. SQLite: one instance, so always.
   */
  exclusive<T>(name: string, fn: (sql: Sql) => Promise<T>): Promise<T | undefined>;
  /** Listens for every instance's events (including this one's). */
  onEvent(listener: (event: ServerEvent) => void): void;
  close(): Promise<void>;
}

/** A change other instances' browsers should see: they read the job or agent again. */
export type ServerEvent =
  | { kind: 'job'; id: string }
  | { kind: 'agent'; id: string }
  /** A job's log gained lines (or its end): wake its followers. */
  | { kind: 'log'; id: string }
  /** A job's log was cleared (another agent was handed the job): its followers start again from 0. */
  | { kind: 'log-reset'; id: string };

export function isServerEvent(value: unknown): value is ServerEvent {
  if (typeof value !== 'object' || value === null) return false;
  const { kind, id } = value as { kind?: unknown; id?: unknown };
  return typeof id === 'string' && (kind === 'job' || kind === 'agent' || kind === 'log' || kind === 'log-reset');
}

/** Whether `location` names a PostgreSQL database (a postgres:// or postgresql:// URL) rather than a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}
