// The control server's SQLite schema, its rows, and how rows become the JSON the API shows.
import type Database from 'better-sqlite3';

/** `completed`: the agent reported the end (see outcome). `canceled`: the server ended it without an agent's report. */
export type JobStatus = 'queued' | 'assigned' | 'running' | 'completed' | 'canceled';

export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'canceled'];

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
  cancelRequested: boolean;
  cancelRequestedAt: string | null;
  /** How often the job went back to the queue because its agent was lost. */
  requeues: number;
  /** Log lines stored (POST /job/<id>/logs). */
  logLines: number;
  /** The agent sent the log's end and every line up to it is stored. */
  logComplete: boolean;
  /** The job's trace: the id of its `traceparent` (the submitter's, or one the server began). */
  traceId: string | null;
  /** The `traceparent` of the agent's last report applied: the span of the delivery attempt that carried it. */
  reportTraceparent: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What an agent receives from GET /job (callbackUrl and logsUrl are added by the server). */
export interface AssignedJob {
  id: string;
  image: string;
  command?: string[];
  env?: Record<string, string>;
  body: unknown;
  alwaysPull?: boolean;
  timeout?: number;
  stallTimeout?: number;
  cancelGracePeriod?: number;
  resources?: { cpus?: number; memory?: number; pids?: number };
  /** W3C trace context: the agent's spans of the job continue it, and its container gets it as TRACEPARENT. */
  traceparent?: string;
  tracestate?: string;
}

export interface AgentView {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | null;
  lastPollAt: string;
  firstSeenAt: string;
  /** No poll for the agent timeout: its unfinished jobs were taken back. Cleared by its next poll. */
  lost: boolean;
  lostAt: string | null;
}

export interface JobRow {
  seq: number;
  id: string;
  image: string;
  command: string | null;
  env: string | null;
  body: string;
  labels: string;
  always_pull: number | null;
  /** timeout, stallTimeout, cancelGracePeriod and resources as JSON, when any was given. */
  run_options: string | null;
  status: JobStatus;
  progress: number | null;
  outcome: string | null;
  result: string | null;
  agent_id: string | null;
  last_seq: number;
  cancel_requested_at: number | null;
  requeues: number;
  log_lines: number;
  log_total: number | null;
  log_agent_id: string | null;
  traceparent: string | null;
  tracestate: string | null;
  report_traceparent: string | null;
  created_at: number;
  updated_at: number;
}

export interface AgentRow {
  id: string;
  labels: string;
  capacity: number;
  user_agent: string | null;
  last_poll_at: number;
  first_seen_at: number;
  lost_at: number | null;
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
-- Agents whose copy of a job has ended: a foreman agent never runs a known id again, so such an
-- agent is never handed that job again (it would sit "assigned" forever).
CREATE TABLE IF NOT EXISTS ended_copies (
  job_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  PRIMARY KEY (job_id, agent_id)
);
-- Live job logs, one row per line. Keyed by jobs.seq rather than the id: a log can have a million rows.
CREATE TABLE IF NOT EXISTS job_logs (
  job_seq INTEGER NOT NULL,
  i INTEGER NOT NULL,
  ts TEXT NOT NULL,
  stream TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_seq, i)
) WITHOUT ROWID;
`;

/** Columns added after the first release; a database file from then gains them on open. */
const ADDED_COLUMNS: Array<[table: string, column: string, definition: string]> = [
  ['jobs', 'cancel_requested_at', 'INTEGER'],
  ['jobs', 'requeues', 'INTEGER NOT NULL DEFAULT 0'],
  ['agents', 'lost_at', 'INTEGER'],
  // Lines stored, the total the log's end announced, and the agent whose copy of the job they come from.
  ['jobs', 'log_lines', 'INTEGER NOT NULL DEFAULT 0'],
  ['jobs', 'log_total', 'INTEGER'],
  ['jobs', 'log_agent_id', 'TEXT'],
  // How the agent runs the job: timeout, stallTimeout, cancelGracePeriod, resources (JSON).
  ['jobs', 'run_options', 'TEXT'],
  // The job's trace context, handed out with it, and that of the agent's last report.
  ['jobs', 'traceparent', 'TEXT'],
  ['jobs', 'tracestate', 'TEXT'],
  ['jobs', 'report_traceparent', 'TEXT'],
];

export function migrate(db: Database.Database): void {
  db.exec(SCHEMA);
  for (const [table, column, definition] of ADDED_COLUMNS) {
    const columns = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`).all();
    if (!columns.some((existing) => existing.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
  }
  // Polls look up the jobs of one agent, and the lost-agent check those of lost agents.
  db.exec('CREATE INDEX IF NOT EXISTS jobs_by_agent ON jobs (agent_id, status)');
}

export function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export function toJobView(row: JobRow): JobView {
  return {
    id: row.id,
    image: row.image,
    labels: parseJson(row.labels) as Record<string, string>,
    status: row.status,
    progress: row.progress,
    outcome: row.outcome,
    result: parseJson(row.result),
    agentId: row.agent_id,
    cancelRequested: row.cancel_requested_at !== null,
    cancelRequestedAt: iso(row.cancel_requested_at),
    requeues: row.requeues,
    logLines: row.log_lines,
    // Lines beyond the end are refused, so the count is enough.
    logComplete: row.log_total !== null && row.log_lines === row.log_total,
    traceId: row.traceparent?.split('-')[1] ?? null,
    reportTraceparent: row.report_traceparent,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

export function toAssignedJob(row: JobRow): AssignedJob {
  const job: AssignedJob = { id: row.id, image: row.image, body: parseJson(row.body) };
  if (row.command !== null) job.command = parseJson(row.command) as string[];
  if (row.env !== null) job.env = parseJson(row.env) as Record<string, string>;
  if (row.always_pull !== null) job.alwaysPull = row.always_pull === 1;
  if (row.run_options !== null) Object.assign(job, parseJson(row.run_options));
  if (row.traceparent !== null) job.traceparent = row.traceparent;
  if (row.tracestate !== null) job.tracestate = row.tracestate;
  return job;
}

export function toAgentView(row: AgentRow): AgentView {
  return {
    id: row.id,
    labels: parseJson(row.labels) as Record<string, string>,
    capacity: row.capacity,
    userAgent: row.user_agent,
    lastPollAt: new Date(row.last_poll_at).toISOString(),
    firstSeenAt: new Date(row.first_seen_at).toISOString(),
    lost: row.lost_at !== null,
    lostAt: iso(row.lost_at),
  };
}
