// The store's tables: migrations, and how their rows map to records.
import type { JobState, Outcome } from './state.ts';
import type { Delivery, JobRecord, TraceIds } from './store.ts';
import type { JobSpec } from '../shared/job-spec.ts';

/** Numbered, append-only: never edit a shipped migration, add the next one. */
export const migrations: readonly string[] = [
  /* 1 */ `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    secret TEXT NOT NULL,
    state TEXT NOT NULL,
    container_name TEXT NOT NULL,
    container_id TEXT,
    outcome TEXT,
    received_at INTEGER NOT NULL,
    started_at INTEGER,
    stopped_at INTEGER,
    updated_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX jobs_state ON jobs (state, updated_at);
  CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    url TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (job_id, seq)
  );
  `,
  /* 2 */ `
  ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;
  ALTER TABLE jobs ADD COLUMN last_update_at INTEGER;
  `,
  /* 3: the images jobs used, for x-foreman-images and the image cache */ `
  CREATE TABLE images (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    digest TEXT,
    size INTEGER NOT NULL,
    pulled INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
  );
  `,
  /* 4: the job's trace ids (TraceIds as JSON), so its spans go on in the same trace after a restart */ `
  ALTER TABLE jobs ADD COLUMN trace TEXT;
  `,
  /* 5: hooks: the post_job hook a job owes, its start and end (so an interrupted one runs again), and the exit code it is told */ `
  ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
  ALTER TABLE jobs ADD COLUMN post_hook_due INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE jobs ADD COLUMN post_hook_started_at INTEGER;
  ALTER TABLE jobs ADD COLUMN post_hook_ended_at INTEGER;
  ALTER TABLE jobs ADD COLUMN post_hook_result TEXT;
  ALTER TABLE jobs ADD COLUMN redacting INTEGER NOT NULL DEFAULT 0;
  `,
];

export interface JobRow {
  id: string;
  spec: string;
  secret: string;
  state: JobState;
  container_name: string;
  container_id: string | null;
  outcome: Outcome | null;
  received_at: number;
  started_at: number | null;
  stopped_at: number | null;
  updated_at: number;
  cancel_requested_at: number | null;
  last_update_at: number | null;
  trace: string | null;
  exit_code: number | null;
  post_hook_due: number;
  post_hook_started_at: number | null;
  post_hook_ended_at: number | null;
  post_hook_result: string | null;
  redacting: number;
}

export interface DeliveryRow {
  id: string;
  job_id: string;
  seq: number;
  url: string;
  headers: string;
  body: Buffer;
  created_at: number;
  attempts: number;
}

export function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    jobId: row.job_id,
    seq: row.seq,
    url: row.url,
    headers: JSON.parse(row.headers) as Record<string, string>,
    body: row.body,
    createdAt: row.created_at,
    attempts: row.attempts,
  };
}

/** A stored job as the agent's parts see it; `spec` parsed once and kept by the store. */
export function jobFromRow(row: JobRow, spec: JobSpec): JobRecord {
  return {
    id: row.id,
    spec,
    secret: row.secret,
    state: row.state,
    containerName: row.container_name,
    containerId: row.container_id,
    outcome: row.outcome,
    receivedAt: row.received_at,
    startedAt: row.started_at,
    stoppedAt: row.stopped_at,
    updatedAt: row.updated_at,
    cancelRequestedAt: row.cancel_requested_at,
    lastUpdateAt: row.last_update_at,
    trace: row.trace === null ? null : (JSON.parse(row.trace) as TraceIds),
    exitCode: row.exit_code,
    postHookDue: row.post_hook_due !== 0,
    postHookStartedAt: row.post_hook_started_at,
    postHookEndedAt: row.post_hook_ended_at,
    postHookResult: row.post_hook_result,
    redacting: row.redacting !== 0,
  };
}
