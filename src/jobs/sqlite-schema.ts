// The store's tables: migrations, and how their rows map to records.
import type { JobState, Outcome } from './state.ts';
import type { Delivery } from './store.ts';

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
  /* 4: hooks: the post_job hook a job owes, its start and end (so an interrupted one runs again), and the exit code it is told */ `
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
