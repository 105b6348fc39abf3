// The control server's schema, as migrations both stores run: the same statements for SQLite and PostgreSQL, with
// the few words that differ written as {tokens}. A database records the versions it ran in schema_migrations.
// Add a migration at the end; never change one that has shipped.

export interface Migration {
  readonly version: number;
  readonly description: string;
  /** Statements separated by `;` at the end of a line. */
  readonly sql: string;
}

const TOKENS = {
  sqlite: { serial: 'INTEGER PRIMARY KEY AUTOINCREMENT', withoutRowid: 'WITHOUT ROWID' },
  postgres: { serial: 'BIGSERIAL PRIMARY KEY', withoutRowid: '' },
} as const;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'jobs, deliveries, agents, ended copies, job logs',
    sql: `
CREATE TABLE IF NOT EXISTS jobs (
  seq {serial},
  id TEXT NOT NULL UNIQUE,
  image TEXT NOT NULL,
  command TEXT,
  env TEXT,
  body TEXT NOT NULL,
  labels TEXT NOT NULL,
  always_pull INTEGER,
  run_options TEXT,
  status TEXT NOT NULL,
  progress DOUBLE PRECISION,
  outcome TEXT,
  result TEXT,
  agent_id TEXT,
  last_seq BIGINT NOT NULL DEFAULT 0,
  cancel_requested_at BIGINT,
  requeues INTEGER NOT NULL DEFAULT 0,
  log_lines BIGINT NOT NULL DEFAULT 0,
  log_total BIGINT,
  log_agent_id TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_agent ON jobs (agent_id, status);
CREATE TABLE IF NOT EXISTS deliveries (
  delivery_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  labels TEXT NOT NULL,
  capacity INTEGER NOT NULL,
  user_agent TEXT,
  last_poll_at BIGINT NOT NULL,
  first_seen_at BIGINT NOT NULL,
  lost_at BIGINT
);
CREATE TABLE IF NOT EXISTS ended_copies (
  job_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  PRIMARY KEY (job_id, agent_id)
);
CREATE TABLE IF NOT EXISTS job_logs (
  job_seq BIGINT NOT NULL,
  i BIGINT NOT NULL,
  ts TEXT NOT NULL,
  stream TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_seq, i)
) {withoutRowid};
`,
  },
  {
    version: 2,
    description: 'per-job secrets in callback and logs URLs, hand-out and end times, pruning and paging',
    sql: `
ALTER TABLE jobs ADD COLUMN secret TEXT;
ALTER TABLE jobs ADD COLUMN assigned_at BIGINT;
ALTER TABLE jobs ADD COLUMN handouts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN ended_at BIGINT;
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (ended_at);
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (job_id);
UPDATE jobs SET ended_at = updated_at WHERE status IN ('completed', 'canceled');
`,
  },
  {
    version: 3,
    description: "trace context (issue 30); agents' host facts and images, a job's usage (issue 29)",
    sql: `
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
ALTER TABLE jobs ADD COLUMN tracestate TEXT;
ALTER TABLE jobs ADD COLUMN report_traceparent TEXT;
ALTER TABLE jobs ADD COLUMN usage TEXT;
ALTER TABLE agents ADD COLUMN attributes TEXT;
ALTER TABLE agents ADD COLUMN images TEXT;
CREATE TABLE IF NOT EXISTS agent_images (
  agent_id TEXT NOT NULL,
  image TEXT NOT NULL,
  PRIMARY KEY (agent_id, image)
);
CREATE INDEX IF NOT EXISTS agent_images_by_image ON agent_images (image);
`,
  },
];

/** A migration's statements for one dialect. */
export function statements(migration: Migration, dialect: 'sqlite' | 'postgres'): string[] {
  const tokens = TOKENS[dialect];
  return migration.sql
    .replaceAll('{serial}', tokens.serial)
    .replaceAll('{withoutRowid}', tokens.withoutRowid)
    .split(/;\s*\n/)
    .map((statement) => statement.trim())
    .filter((statement) => statement !== '');
}

export const SCHEMA_TABLE = 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)';
