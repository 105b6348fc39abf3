import { randomBytes, randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { JobLogs } from './logs.ts';
import { FINAL_STATUSES, migrate, parseJson, toAgentView, toAssignedJob, toJobView } from './rows.ts';
import type { AgentRow, AgentView, AssignedJob, JobRow, JobView } from './rows.ts';

export type { AgentView, AssignedJob, JobStatus, JobView } from './rows.ts';

/** A new trace for a job submitted without one: a sampled root, as the submission's own span. */
function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

export interface NewJob {
  /** Default: a random UUID. */
  id?: string | undefined;
  image: string;
  command?: string[] | undefined;
  env?: Record<string, string> | undefined;
  body?: unknown;
  /** Labels an agent must carry (same values) to be handed this job. */
  labels?: Record<string, string> | undefined;
  alwaysPull?: boolean | undefined;
  /** How the agent runs it (ms, and the container's limits): handed out as they are. */
  timeout?: number | undefined;
  stallTimeout?: number | undefined;
  cancelGracePeriod?: number | undefined;
  resources?: { cpus?: number | undefined; memory?: number | undefined; pids?: number | undefined } | undefined;
  /** The job's W3C trace context (checked by the server); when none is given the server begins a trace. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

export interface CallbackUpdate {
  jobId: string;
  /** x-foreman-agent-id of the delivery; undefined for clients that do not send it. */
  agentId: string | undefined;
  status: 'running' | 'completed';
  progress: number | undefined;
  outcome: string | undefined;
  /** undefined when the delivery carried no body (keeps the previous result). */
  result: unknown;
  deliveryId: string | undefined;
  deliverySeq: number | undefined;
  /** The delivery's `traceparent` header: where the agent's report sits in the job's trace. */
  traceparent?: string | undefined;
}

export type CallbackResult =
  | { kind: 'unknown-job' }
  /** `cancel`: the copy that sent this update should stop (answer with x-foreman-cancel). */
  | { kind: 'duplicate' | 'stale' | 'already-completed' | 'other-agent'; cancel: boolean }
  | { kind: 'applied'; job: JobView; cancel: boolean };

export type CancelResult =
  | { kind: 'unknown-job' }
  | { kind: 'already-ended'; job: JobView }
  /** `canceled`: ended at once (it was queued); `requested`: its agent is asked to cancel it. */
  | { kind: 'canceled' | 'requested'; job: JobView };

interface PollInput {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | undefined;
}

export interface PollResult {
  agent: AgentView;
  assigned: AssignedJob[];
  /** Jobs this agent holds that should be canceled, oldest request first. */
  cancel: string[];
  /** The jobs' new views, for the dashboard. */
  changed: JobView[];
  /** Jobs whose log, from another agent's copy, was cleared when this agent was handed them. */
  logsReset: string[];
}

export interface SweepResult {
  /** Agents found lost by this sweep. */
  agents: AgentView[];
  /** Jobs taken back from lost agents (requeued, or canceled when a cancel was pending). */
  jobs: JobView[];
}

const HELD = "('assigned', 'running')";

function labelsMatch(required: Record<string, string>, offered: Record<string, string>): boolean {
  return Object.entries(required).every(([key, value]) => Object.hasOwn(offered, key) && offered[key] === value);
}

function serverReport(reason: string, message: string): string {
  // The same shape as an agent's own report, so clients read one format.
  return JSON.stringify({ outcome: 'canceled', reason, message });
}

/** Whether the copy of a job that sent a `running` update should be told to stop. */
function copyUnwanted(row: JobRow, update: CallbackUpdate): boolean {
  if (update.status !== 'running') return false;
  if (update.agentId !== undefined && row.agent_id !== update.agentId) return true;
  if (row.status === 'canceled') return true;
  return row.cancel_requested_at !== null && row.status !== 'completed';
}

/** The control server's SQLite state. Every method is synchronous, so each one is atomic within this process. */
export class Store {
  readonly #db: Database.Database;
  readonly #pollTx: Database.Transaction<(agent: PollInput, now: number) => PollResult>;
  readonly #callbackTx: Database.Transaction<(update: CallbackUpdate, now: number) => CallbackResult>;
  readonly #cancelTx: Database.Transaction<(id: string, now: number) => CancelResult>;
  readonly #sweepTx: Database.Transaction<(cutoff: number, floor: number, now: number) => SweepResult>;
  /** Live job logs, in the same database. */
  readonly logs: JobLogs;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    // Another process (e.g. a second server on the same file) may hold the write lock briefly.
    this.#db.pragma('busy_timeout = 5000');
    migrate(this.#db);
    this.logs = new JobLogs(this.#db);
    this.#pollTx = this.#db.transaction((agent: PollInput, now: number) => this.#poll(agent, now));
    this.#callbackTx = this.#db.transaction((update: CallbackUpdate, now: number) => this.#applyCallback(update, now));
    this.#cancelTx = this.#db.transaction((id: string, now: number) => this.#cancel(id, now));
    this.#sweepTx = this.#db.transaction((cutoff: number, floor: number, now: number) => this.#sweep(cutoff, floor, now));
  }

  close(): void {
    this.#db.close();
  }

  /** undefined when a job with the requested id already exists. */
  createJob(input: NewJob, now = Date.now()): JobView | undefined {
    const id = input.id ?? randomUUID();
    const run = Object.fromEntries(
      (['timeout', 'stallTimeout', 'cancelGracePeriod', 'resources'] as const).flatMap((field) => (input[field] === undefined ? [] : [[field, input[field]]])),
    );
    const inserted = this.#db
      .prepare(
        `INSERT OR IGNORE INTO jobs (id, image, command, env, body, labels, always_pull, run_options, traceparent, tracestate, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)`,
      )
      .run(
        id,
        input.image,
        input.command === undefined ? null : JSON.stringify(input.command),
        input.env === undefined ? null : JSON.stringify(input.env),
        JSON.stringify(input.body ?? null),
        JSON.stringify(input.labels ?? {}),
        input.alwaysPull === undefined ? null : input.alwaysPull ? 1 : 0,
        Object.keys(run).length === 0 ? null : JSON.stringify(run),
        input.traceparent ?? newTraceparent(),
        input.tracestate ?? null,
        now,
        now,
      );
    return inserted.changes === 0 ? undefined : this.getJob(id);
  }

  getJob(id: string): JobView | undefined {
    const row = this.#row(id);
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
   * Records the poll, hands out up to `capacity` matching queued jobs, oldest first, and lists the
   * agent's jobs with a pending cancel. Runs as one IMMEDIATE transaction, so a job goes to exactly
   * one agent even when several processes share the database file.
   */
  poll(agent: PollInput, now = Date.now()): PollResult {
    return this.#pollTx.immediate(agent, now);
  }

  /** Applies one callback delivery; idempotent on deliveryId and ordered by deliverySeq. */
  applyCallback(update: CallbackUpdate, now = Date.now()): CallbackResult {
    return this.#callbackTx.immediate(update, now);
  }

  /** Ends a queued job at once, or marks a handed-out one for its agent to cancel. */
  cancelJob(id: string, now = Date.now()): CancelResult {
    return this.#cancelTx.immediate(id, now);
  }

  /**
   * Marks agents with no poll since `cutoff` as lost and takes their unfinished jobs back: requeued,
   * or canceled when a cancel was pending. `floor` (the server's start) counts as a poll, so agents
   * are not judged by the time the server itself was down.
   */
  sweepLostAgents(cutoff: number, floor: number, now = Date.now()): SweepResult {
    return this.#sweepTx.immediate(cutoff, floor, now);
  }

  #row(id: string): JobRow | undefined {
    return this.#db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
  }

  #poll(agent: PollInput, now: number): PollResult {
    this.#db
      .prepare(
        `INSERT INTO agents (id, labels, capacity, user_agent, last_poll_at, first_seen_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, capacity = excluded.capacity,
           user_agent = excluded.user_agent, last_poll_at = excluded.last_poll_at, lost_at = NULL`,
      )
      .run(agent.id, JSON.stringify(agent.labels), agent.capacity, agent.userAgent ?? null, now, now);
    const picked: JobRow[] = [];
    if (agent.capacity > 0) {
      const queued = this.#db.prepare<[string], JobRow>(
        `SELECT * FROM jobs WHERE status = 'queued'
           AND NOT EXISTS (SELECT 1 FROM ended_copies WHERE job_id = jobs.id AND agent_id = ?)
         ORDER BY seq`,
      );
      for (const row of queued.iterate(agent.id)) {
        if (labelsMatch(parseJson(row.labels) as Record<string, string>, agent.labels)) picked.push(row);
        if (picked.length >= agent.capacity) break;
      }
    }
    const assign = this.#db.prepare<[string, number, string], unknown>(
      "UPDATE jobs SET status = 'assigned', agent_id = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
    );
    const logsReset: string[] = [];
    for (const row of picked) {
      assign.run(agent.id, now, row.id);
      if (row.log_agent_id !== null && row.log_agent_id !== agent.id) {
        this.logs.clear(row.seq);
        logsReset.push(row.id);
      }
    }
    const cancel = this.#db
      .prepare<[string], { id: string }>(
        `SELECT id FROM jobs WHERE agent_id = ? AND status IN ${HELD} AND cancel_requested_at IS NOT NULL
         ORDER BY cancel_requested_at, seq`,
      )
      .all(agent.id)
      .map((row) => row.id);
    const agentRow = this.#db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?').get(agent.id)!;
    return {
      agent: toAgentView(agentRow),
      assigned: picked.map(toAssignedJob),
      cancel,
      changed: picked.map((row) => this.getJob(row.id)!),
      logsReset,
    };
  }

  #applyCallback(update: CallbackUpdate, now: number): CallbackResult {
    const row = this.#row(update.jobId);
    if (row === undefined) return { kind: 'unknown-job' };
    // A queued job is claimed by whichever agent reports on it: typically the agent it was taken from,
    // back after a pause, whose copy still runs. Any other agent's report is a copy the job no longer needs.
    if (update.agentId !== undefined && row.status !== 'queued' && row.agent_id !== update.agentId) {
      if (update.status === 'completed') {
        this.#db.prepare('INSERT OR IGNORE INTO ended_copies (job_id, agent_id) VALUES (?, ?)').run(row.id, update.agentId);
      }
      return { kind: 'other-agent', cancel: copyUnwanted(row, update) };
    }
    if (update.deliveryId !== undefined) {
      const inserted = this.#db
        .prepare<[string, string, number], unknown>('INSERT OR IGNORE INTO deliveries (delivery_id, job_id, received_at) VALUES (?, ?, ?)')
        .run(update.deliveryId, update.jobId, now);
      if (inserted.changes === 0) return { kind: 'duplicate', cancel: copyUnwanted(row, update) };
    }
    if (update.deliverySeq !== undefined && update.deliverySeq < row.last_seq) return { kind: 'stale', cancel: copyUnwanted(row, update) };
    const lastSeq = Math.max(row.last_seq, update.deliverySeq ?? 0);
    if (FINAL_STATUSES.includes(row.status)) {
      this.#db.prepare<[number, string], unknown>('UPDATE jobs SET last_seq = ? WHERE id = ?').run(lastSeq, row.id);
      return { kind: 'already-completed', cancel: copyUnwanted(row, update) };
    }
    const completed = update.status === 'completed';
    const outcome = completed ? (update.outcome ?? 'succeeded') : null;
    // A success without a progress header reads as 100% on the dashboard.
    const progress = update.progress ?? (outcome === 'succeeded' ? 1 : row.progress);
    const result = update.result === undefined ? row.result : JSON.stringify(update.result);
    const agentId = update.agentId ?? row.agent_id;
    this.#db
      .prepare<[string, number | null, string | null, string | null, number, string | null, number, string], unknown>(
        'UPDATE jobs SET status = ?, progress = ?, outcome = ?, result = ?, last_seq = ?, agent_id = ?, updated_at = ? WHERE id = ?',
      )
      .run(update.status, progress, outcome, result, lastSeq, agentId, now, row.id);
    if (update.traceparent !== undefined) this.#db.prepare('UPDATE jobs SET report_traceparent = ? WHERE id = ?').run(update.traceparent, row.id);
    const after = this.#row(row.id)!;
    return { kind: 'applied', job: toJobView(after), cancel: copyUnwanted(after, update) };
  }

  #cancel(id: string, now: number): CancelResult {
    const row = this.#row(id);
    if (row === undefined) return { kind: 'unknown-job' };
    if (FINAL_STATUSES.includes(row.status)) return { kind: 'already-ended', job: toJobView(row) };
    if (row.status === 'queued') {
      this.#db
        .prepare<[number, string, number, string], unknown>(
          `UPDATE jobs SET status = 'canceled', outcome = 'canceled', cancel_requested_at = ?, result = ?, updated_at = ? WHERE id = ?`,
        )
        .run(now, serverReport('cancel', 'canceled before an agent took it'), now, id);
      return { kind: 'canceled', job: this.getJob(id)! };
    }
    // A repeated request keeps the first timestamp: the cancel has been pending since then.
    this.#db
      .prepare<[number, number, string], unknown>('UPDATE jobs SET cancel_requested_at = ?, updated_at = ? WHERE id = ? AND cancel_requested_at IS NULL')
      .run(now, now, id);
    return { kind: 'requested', job: this.getJob(id)! };
  }

  #sweep(cutoff: number, floor: number, now: number): SweepResult {
    const silent = 'MAX(last_poll_at, ?) < ?';
    const newlyLost = this.#db.prepare<[number, number], AgentRow>(`SELECT * FROM agents WHERE lost_at IS NULL AND ${silent}`).all(floor, cutoff);
    const markLost = this.#db.prepare<[number, string], unknown>('UPDATE agents SET lost_at = ? WHERE id = ?');
    for (const agent of newlyLost) markLost.run(now, agent.id);
    // Every silent agent, not only newly lost ones: a lost agent's report may have claimed a job since.
    const orphans = this.#db
      .prepare<[number, number], JobRow>(`SELECT * FROM jobs WHERE status IN ${HELD} AND agent_id IN (SELECT id FROM agents WHERE ${silent}) ORDER BY seq`)
      .all(floor, cutoff);
    const cancel = this.#db.prepare<[string, number, string], unknown>(
      `UPDATE jobs SET status = 'canceled', outcome = 'canceled', result = ?, updated_at = ? WHERE id = ?`,
    );
    // The next agent starts its delivery-seq at 1 again, so the old agent's sequence is forgotten.
    const requeue = this.#db.prepare<[number, string], unknown>(
      `UPDATE jobs SET status = 'queued', agent_id = NULL, progress = NULL, result = NULL, last_seq = 0,
         requeues = requeues + 1, updated_at = ? WHERE id = ?`,
    );
    for (const job of orphans) {
      if (job.cancel_requested_at !== null) {
        cancel.run(serverReport('agent-lost', `agent ${job.agent_id ?? ''} stopped polling before it reported the cancel`), now, job.id);
      } else {
        requeue.run(now, job.id);
      }
    }
    return {
      agents: newlyLost.map((agent) => toAgentView({ ...agent, lost_at: now })),
      jobs: orphans.map((job) => this.getJob(job.id)!),
    };
  }
}
