import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';

export type JobStatus = 'queued' | 'assigned' | 'running' | 'completed';

export interface NewJob {
  image: string;
  command?: string[] | undefined;
  env?: Record<string, string> | undefined;
  body?: unknown;
  /** Labels an agent must carry (same values) to be handed this job. */
  labels?: Record<string, string> | undefined;
  alwaysPull?: boolean | undefined;
}

/** What GET /jobs and the dashboard see. */
export interface JobView {
  id: string;
  image: string;
  labels: Record<string, string>;
  status: JobStatus;
  progress: number | null;
  outcome: string | null;
  result: unknown;
  agentId: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What an agent receives from GET /job (callbackUrl is added by the server). */
export interface AssignedJob {
  id: string;
  image: string;
  command?: string[];
  env?: Record<string, string>;
  body: unknown;
  alwaysPull?: boolean;
}

export interface AgentView {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | null;
  lastPollAt: string;
  firstSeenAt: string;
}

export interface CallbackUpdate {
  jobId: string;
  status: 'running' | 'completed';
  progress: number | undefined;
  outcome: string | undefined;
  /** undefined when the delivery carried no body (keeps the previous result). */
  result: unknown;
  deliveryId: string | undefined;
  deliverySeq: number | undefined;
}

export type CallbackResult =
  | { kind: 'unknown-job' }
  | { kind: 'duplicate' }
  | { kind: 'stale' }
  | { kind: 'already-completed' }
  | { kind: 'applied'; job: JobView };

interface JobRow {
  seq: number;
  id: string;
  image: string;
  command: string | null;
  env: string | null;
  body: string;
  labels: string;
  always_pull: number | null;
  status: JobStatus;
  progress: number | null;
  outcome: string | null;
  result: string | null;
  agent_id: string | null;
  last_seq: number;
  created_at: number;
  updated_at: number;
}

interface AgentRow {
  id: string;
  labels: string;
  capacity: number;
  user_agent: string | null;
  last_poll_at: number;
  first_seen_at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  image TEXT NOT NULL,
  command TEXT,
  env TEXT,
  body TEXT NOT NULL,
  labels TEXT NOT NULL,
  always_pull INTEGER,
  status TEXT NOT NULL,
  progress REAL,
  outcome TEXT,
  result TEXT,
  agent_id TEXT,
  last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS deliveries (
  delivery_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  labels TEXT NOT NULL,
  capacity INTEGER NOT NULL,
  user_agent TEXT,
  last_poll_at INTEGER NOT NULL,
  first_seen_at INTEGER NOT NULL
);
`;

function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

function toJobView(row: JobRow): JobView {
  return {
    id: row.id,
    image: row.image,
    labels: parseJson(row.labels) as Record<string, string>,
    status: row.status,
    progress: row.progress,
    outcome: row.outcome,
    result: parseJson(row.result),
    agentId: row.agent_id,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

function toAssignedJob(row: JobRow): AssignedJob {
  const job: AssignedJob = { id: row.id, image: row.image, body: parseJson(row.body) };
  if (row.command !== null) job.command = parseJson(row.command) as string[];
  if (row.env !== null) job.env = parseJson(row.env) as Record<string, string>;
  if (row.always_pull !== null) job.alwaysPull = row.always_pull === 1;
  return job;
}

function toAgentView(row: AgentRow): AgentView {
  return {
    id: row.id,
    labels: parseJson(row.labels) as Record<string, string>,
    capacity: row.capacity,
    userAgent: row.user_agent,
    lastPollAt: new Date(row.last_poll_at).toISOString(),
    firstSeenAt: new Date(row.first_seen_at).toISOString(),
  };
}

function labelsMatch(required: Record<string, string>, offered: Record<string, string>): boolean {
  return Object.entries(required).every(([key, value]) => Object.hasOwn(offered, key) && offered[key] === value);
}

interface PollInput {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | undefined;
}

export interface PollResult {
  agent: AgentView;
  assigned: AssignedJob[];
  /** The jobs' new views, for the dashboard. */
  changed: JobView[];
}

/** The control server's SQLite state. Every method is synchronous, so each one is atomic within this process. */
export class Store {
  readonly #db: Database.Database;
  readonly #pollTx: Database.Transaction<(agent: PollInput, now: number) => PollResult>;
  readonly #callbackTx: Database.Transaction<(update: CallbackUpdate, now: number) => CallbackResult>;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    // Another process (e.g. a second server on the same file) may hold the write lock briefly.
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(SCHEMA);
    this.#pollTx = this.#db.transaction((agent: PollInput, now: number) => this.#poll(agent, now));
    this.#callbackTx = this.#db.transaction((update: CallbackUpdate, now: number) => this.#applyCallback(update, now));
  }

  close(): void {
    this.#db.close();
  }

  createJob(input: NewJob, now = Date.now()): JobView {
    const id = randomUUID();
    this.#db
      .prepare(
        `INSERT INTO jobs (id, image, command, env, body, labels, always_pull, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)`,
      )
      .run(
        id,
        input.image,
        input.command === undefined ? null : JSON.stringify(input.command),
        input.env === undefined ? null : JSON.stringify(input.env),
        JSON.stringify(input.body ?? null),
        JSON.stringify(input.labels ?? {}),
        input.alwaysPull === undefined ? null : input.alwaysPull ? 1 : 0,
        now,
        now,
      );
    return this.getJob(id)!;
  }

  getJob(id: string): JobView | undefined {
    const row = this.#db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
    return row === undefined ? undefined : toJobView(row);
  }

  /** Newest first. */
  listJobs(limit = 500): JobView[] {
    return this.#db.prepare<[number], JobRow>('SELECT * FROM jobs ORDER BY seq DESC LIMIT ?').all(limit).map(toJobView);
  }

  listAgents(): AgentView[] {
    return this.#db.prepare<[], AgentRow>('SELECT * FROM agents ORDER BY last_poll_at DESC').all().map(toAgentView);
  }

  /**
   * Records the poll and hands out up to `capacity` matching queued jobs, oldest first.
   * Runs as one IMMEDIATE transaction, so a job goes to exactly one agent even when
   * several processes share the database file.
   */
  poll(agent: PollInput, now = Date.now()): PollResult {
    return this.#pollTx.immediate(agent, now);
  }

  /** Applies one callback delivery; idempotent on deliveryId and ordered by deliverySeq. */
  applyCallback(update: CallbackUpdate, now = Date.now()): CallbackResult {
    return this.#callbackTx.immediate(update, now);
  }

  #poll(agent: PollInput, now: number): PollResult {
    this.#db
      .prepare(
        `INSERT INTO agents (id, labels, capacity, user_agent, last_poll_at, first_seen_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, capacity = excluded.capacity,
           user_agent = excluded.user_agent, last_poll_at = excluded.last_poll_at`,
      )
      .run(agent.id, JSON.stringify(agent.labels), agent.capacity, agent.userAgent ?? null, now, now);
    const picked: JobRow[] = [];
    if (agent.capacity > 0) {
      const queued = this.#db.prepare<[], JobRow>("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq");
      for (const row of queued.iterate()) {
        if (labelsMatch(parseJson(row.labels) as Record<string, string>, agent.labels)) picked.push(row);
        if (picked.length >= agent.capacity) break;
      }
    }
    const assign = this.#db.prepare<[string, number, string], unknown>(
      "UPDATE jobs SET status = 'assigned', agent_id = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
    );
    for (const row of picked) assign.run(agent.id, now, row.id);
    const agentRow = this.#db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?').get(agent.id)!;
    return {
      agent: toAgentView(agentRow),
      assigned: picked.map(toAssignedJob),
      changed: picked.map((row) => this.getJob(row.id)!),
    };
  }

  #applyCallback(update: CallbackUpdate, now: number): CallbackResult {
    const row = this.#db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?').get(update.jobId);
    if (row === undefined) return { kind: 'unknown-job' };
    if (update.deliveryId !== undefined) {
      const inserted = this.#db
        .prepare<[string, string, number], unknown>('INSERT OR IGNORE INTO deliveries (delivery_id, job_id, received_at) VALUES (?, ?, ?)')
        .run(update.deliveryId, update.jobId, now);
      if (inserted.changes === 0) return { kind: 'duplicate' };
    }
    if (update.deliverySeq !== undefined && update.deliverySeq < row.last_seq) return { kind: 'stale' };
    const lastSeq = Math.max(row.last_seq, update.deliverySeq ?? 0);
    if (row.status === 'completed') {
      this.#db.prepare<[number, string], unknown>('UPDATE jobs SET last_seq = ? WHERE id = ?').run(lastSeq, row.id);
      return { kind: 'already-completed' };
    }
    const completed = update.status === 'completed';
    const outcome = completed ? (update.outcome ?? 'succeeded') : null;
    // A success without a progress header reads as 100% on the dashboard.
    const progress = update.progress ?? (outcome === 'succeeded' ? 1 : row.progress);
    const result = update.result === undefined ? row.result : JSON.stringify(update.result);
    this.#db
      .prepare<[string, number | null, string | null, string | null, number, number, string], unknown>(
        'UPDATE jobs SET status = ?, progress = ?, outcome = ?, result = ?, last_seq = ?, updated_at = ? WHERE id = ?',
      )
      .run(update.status, progress, outcome, result, lastSeq, now, row.id);
    return { kind: 'applied', job: this.getJob(row.id)! };
  }
}
