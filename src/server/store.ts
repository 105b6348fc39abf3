// The control server's state, on either database (db.ts): each operation one transaction, so a job goes to exactly
// one agent and each delivery is applied once, with several instances on one PostgreSQL database as with one
// SQLite file.
import { randomUUID } from 'node:crypto';
import { decideCallback } from '../../packages/control-server-kit/index.ts';
import type { Database, Param, Sql } from './db.ts';
import { JobLogs } from './logs.ts';
import { newSecret, secretMatches } from './secrets.ts';
import { FINAL_STATUSES, toAgentView, toAssignedJob, toJobView } from './rows.ts';
import type { AgentRow, AgentView, AssignedJob, JobRow, JobStatus, JobView } from './rows.ts';

export type { AgentView, AssignedJob, JobStatus, JobView } from './rows.ts';

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
}

export interface CallbackUpdate {
  jobId: string;
  /** The secret the callback URL carried; undefined when it carried none. */
  secret: string | undefined;
  /** x-foreman-agent-id of the delivery; undefined for clients that do not send it. */
  agentId: string | undefined;
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
  /** The URL's secret is missing or wrong: nothing is looked at further. */
  | { kind: 'forbidden' }
  /** `cancel`: the copy that sent this update should stop (answer with x-foreman-cancel). */
  | { kind: 'duplicate' | 'stale' | 'already-completed' | 'other-agent'; cancel: boolean }
  | { kind: 'applied'; job: JobView; cancel: boolean };

export type CancelResult =
  | { kind: 'unknown-job' }
  | { kind: 'already-ended'; job: JobView }
  /** `canceled`: ended at once (it was queued); `requested`: its agent is asked to cancel it. */
  | { kind: 'canceled' | 'requested'; job: JobView };

export type CreateResult = { kind: 'created'; job: JobView } | { kind: 'exists' } | { kind: 'queue-full'; queued: number };

export interface PollInput {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | undefined;
}

export interface PollResult {
  agent: AgentView;
  /** The jobs to hand out (without their URLs: the server adds them) with each one's secret. */
  assigned: Array<{ job: AssignedJob; secret: string | null }>;
  /** Jobs this agent holds that should be canceled, oldest request first. */
  cancel: string[];
}

export interface SweepResult {
  /** Agents found lost by this sweep. */
  agents: AgentView[];
  /** Jobs taken back from lost agents (requeued, or canceled when a cancel was pending). */
  jobs: JobView[];
}

export interface JobFilter {
  /** At most this many, newest first. */
  limit: number;
  /** Only jobs older than this cursor (from a previous page). */
  before?: number | undefined;
  status?: readonly JobStatus[] | undefined;
  /** Only jobs requiring all of these labels, with these values. */
  labels?: Record<string, string> | undefined;
  agentId?: string | undefined;
}

export interface JobPage {
  jobs: JobView[];
  /** The cursor of the next (older) page; undefined when this one is the last. */
  next: number | undefined;
}

const HELD = "('assigned', 'running')";
const FINAL = "('completed', 'canceled')";

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

export class Store {
  readonly #db: Database;
  /** Live job logs, in the same database. */
  readonly logs: JobLogs;

  constructor(db: Database) {
    this.#db = db;
    this.logs = new JobLogs(db);
  }

  get db(): Database {
    return this.#db;
  }

  async createJob(input: NewJob, options: { maxQueued: number }, now = Date.now()): Promise<CreateResult> {
    const id = input.id ?? randomUUID();
    const run = Object.fromEntries(
      (['timeout', 'stallTimeout', 'cancelGracePeriod', 'resources'] as const).flatMap((field) => (input[field] === undefined ? [] : [[field, input[field]]])),
    );
    return this.#db.tx(async (sql) => {
      const queued = (await sql.get<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'"))?.n ?? 0;
      if (Number(queued) >= options.maxQueued) return { kind: 'queue-full', queued: Number(queued) } as const;
      const inserted = await sql.run(
        `INSERT INTO jobs (id, image, command, env, body, labels, always_pull, run_options, status, secret, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
        [
          id,
          input.image,
          input.command === undefined ? null : JSON.stringify(input.command),
          input.env === undefined ? null : JSON.stringify(input.env),
          JSON.stringify(input.body ?? null),
          JSON.stringify(input.labels ?? {}),
          input.alwaysPull === undefined ? null : input.alwaysPull ? 1 : 0,
          Object.keys(run).length === 0 ? null : JSON.stringify(run),
          newSecret(),
          now,
          now,
        ],
      );
      if (inserted === 0) return { kind: 'exists' } as const;
      await sql.notify({ kind: 'job', id });
      return { kind: 'created', job: toJobView((await row(sql, id))!) } as const;
    });
  }

  async getJob(id: string): Promise<JobView | undefined> {
    const found = await row(this.#db, id);
    return found === undefined ? undefined : toJobView(found);
  }

  /** The secret a job's URLs carry; undefined for an unknown job, null for one made before secrets. */
  async jobSecret(id: string): Promise<string | null | undefined> {
    return (await this.#db.get<{ secret: string | null }>('SELECT secret FROM jobs WHERE id = ?', [id]))?.secret;
  }

  /** Newest first, a page at a time. */
  async listJobs(filter: JobFilter): Promise<JobPage> {
    const where: string[] = [];
    const params: Param[] = [];
    if (filter.before !== undefined) {
      where.push('seq < ?');
      params.push(filter.before);
    }
    if (filter.status !== undefined && filter.status.length > 0) {
      where.push(`status IN (${filter.status.map(() => '?').join(', ')})`);
      params.push(...filter.status);
    }
    if (filter.agentId !== undefined) {
      where.push('agent_id = ?');
      params.push(filter.agentId);
    }
    if (filter.labels !== undefined && Object.keys(filter.labels).length > 0) {
      where.push(this.#db.dialect.labelsInclude);
      params.push(JSON.stringify(filter.labels));
    }
    const rows = await this.#db.all<JobRow>(`SELECT * FROM jobs ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`} ORDER BY seq DESC LIMIT ?`, [
      ...params,
      filter.limit + 1,
    ]);
    const page = rows.slice(0, filter.limit);
    return { jobs: page.map(toJobView), next: rows.length > filter.limit ? page.at(-1)?.seq : undefined };
  }

  async listAgents(): Promise<AgentView[]> {
    return (await this.#db.all<AgentRow>('SELECT * FROM agents ORDER BY last_poll_at DESC')).map(toAgentView);
  }

  async getAgent(id: string): Promise<AgentView | undefined> {
    const found = await this.#db.get<AgentRow>('SELECT * FROM agents WHERE id = ?', [id]);
    return found === undefined ? undefined : toAgentView(found);
  }

  /**
   * Records the poll; hands out up to `capacity` jobs, oldest first: jobs this agent was handed and has not reported
   * on since (the reply may have been lost with an instance; an agent ignores an id it has), again after
   * `redeliverAfterMs`, then 4, 9, 16… times that; then matching queued jobs, each taken in this transaction (SKIP
   * LOCKED on PostgreSQL, so instances polling at once never take one job twice); and lists the agent's jobs with a
   * pending cancel.
   */
  async poll(agent: PollInput, options: { redeliverAfterMs: number }, now = Date.now()): Promise<PollResult> {
    const { dialect } = this.#db;
    return this.#db.tx(async (sql) => {
      await sql.run(
        `INSERT INTO agents (id, labels, capacity, user_agent, last_poll_at, first_seen_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, capacity = excluded.capacity,
           user_agent = excluded.user_agent, last_poll_at = excluded.last_poll_at, lost_at = NULL`,
        [agent.id, JSON.stringify(agent.labels), agent.capacity, agent.userAgent ?? null, now, now],
      );
      await sql.notify({ kind: 'agent', id: agent.id });
      const picked: JobRow[] = [];
      if (agent.capacity > 0 && options.redeliverAfterMs > 0) {
        // The casts: next to the INTEGER column PostgreSQL would take the times for 32-bit integers and refuse them.
        picked.push(
          ...(await sql.all<JobRow>(
            `SELECT * FROM jobs WHERE agent_id = ? AND status = 'assigned' AND assigned_at <= CAST(? AS BIGINT) - CAST(? AS BIGINT) * handouts * handouts ORDER BY seq LIMIT ?${dialect.skipLocked}`,
            [agent.id, now, options.redeliverAfterMs, agent.capacity],
          )),
        );
      }
      const fresh =
        agent.capacity > picked.length
          ? await sql.all<JobRow>(
              `SELECT * FROM jobs WHERE status = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM ended_copies WHERE job_id = jobs.id AND agent_id = ?)
                 AND ${dialect.labelsWithin}
               ORDER BY seq LIMIT ?${dialect.skipLocked}`,
              [agent.id, JSON.stringify(agent.labels), agent.capacity - picked.length],
            )
          : [];
      for (const job of [...picked, ...fresh]) {
        await sql.run("UPDATE jobs SET status = 'assigned', agent_id = ?, assigned_at = ?, handouts = handouts + 1, updated_at = ? WHERE seq = ?", [
          agent.id,
          now,
          now,
          job.seq,
        ]);
        if (job.log_agent_id !== null && job.log_agent_id !== agent.id) {
          await this.logs.clear(sql, job.seq);
          await sql.notify({ kind: 'log-reset', id: job.id });
        }
        await sql.notify({ kind: 'job', id: job.id });
      }
      const cancel = (
        await sql.all<{ id: string }>(
          `SELECT id FROM jobs WHERE agent_id = ? AND status IN ${HELD} AND cancel_requested_at IS NOT NULL
           ORDER BY cancel_requested_at, seq`,
          [agent.id],
        )
      ).map((held) => held.id);
      const agentRow = (await sql.get<AgentRow>('SELECT * FROM agents WHERE id = ?', [agent.id]))!;
      return {
        agent: toAgentView(agentRow),
        assigned: [...picked, ...fresh].map((job) => ({ job: toAssignedJob(job), secret: job.secret })),
        cancel,
      };
    });
  }

  /** Applies one callback delivery; idempotent on deliveryId and deliverySeq, ordered by deliverySeq. */
  async applyCallback(update: CallbackUpdate, now = Date.now()): Promise<CallbackResult> {
    return this.#db.tx(async (sql) => {
      const current = await row(sql, update.jobId, this.#db.dialect.forUpdate);
      if (current === undefined) return { kind: 'unknown-job' };
      if (!secretMatches(current.secret, update.secret)) return { kind: 'forbidden' };
      // A queued job is claimed by whichever agent reports on it: typically the agent it was taken from, back
      // after a pause, whose copy still runs. Any other agent's report is a copy the job no longer needs.
      if (update.agentId !== undefined && current.status !== 'queued' && current.agent_id !== update.agentId) {
        if (update.status === 'completed') {
          await sql.run('INSERT INTO ended_copies (job_id, agent_id) VALUES (?, ?) ON CONFLICT DO NOTHING', [current.id, update.agentId]);
        }
        return { kind: 'other-agent', cancel: copyUnwanted(current, update) };
      }
      const final = FINAL_STATUSES.includes(current.status);
      const seen = async (deliveryId: string) => (await sql.get('SELECT 1 AS found FROM deliveries WHERE delivery_id = ?', [deliveryId])) !== undefined;
      const duplicate = update.deliveryId !== undefined && (await seen(update.deliveryId));
      const decision = decideCallback({ lastSeq: current.last_seq, final, seen: () => duplicate }, update);
      if (decision === 'duplicate') return { kind: 'duplicate', cancel: copyUnwanted(current, update) };
      if (decision === 'stale') return { kind: 'stale', cancel: copyUnwanted(current, update) };
      if (update.deliveryId !== undefined) {
        await sql.run('INSERT INTO deliveries (delivery_id, job_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING', [
          update.deliveryId,
          update.jobId,
          now,
        ]);
      }
      const lastSeq = Math.max(current.last_seq, update.deliverySeq ?? 0);
      if (decision === 'after-final') {
        await sql.run('UPDATE jobs SET last_seq = ? WHERE seq = ?', [lastSeq, current.seq]);
        return { kind: 'already-completed', cancel: copyUnwanted(current, update) };
      }
      const completed = update.status === 'completed';
      const outcome = completed ? (update.outcome ?? 'succeeded') : null;
      // A success without a progress header reads as 100% on the dashboard.
      const progress = update.progress ?? (outcome === 'succeeded' ? 1 : current.progress);
      const result = update.result === undefined ? current.result : JSON.stringify(update.result);
      await sql.run(
        'UPDATE jobs SET status = ?, progress = ?, outcome = ?, result = ?, last_seq = ?, agent_id = ?, updated_at = ?, ended_at = ? WHERE seq = ?',
        [update.status, progress, outcome, result, lastSeq, update.agentId ?? current.agent_id, now, completed ? now : null, current.seq],
      );
      await sql.notify({ kind: 'job', id: current.id });
      const after = (await row(sql, current.id))!;
      return { kind: 'applied', job: toJobView(after), cancel: copyUnwanted(after, update) };
    });
  }

  /** Ends a queued job at once, or marks a handed-out one for its agent to cancel. */
  async cancelJob(id: string, now = Date.now()): Promise<CancelResult> {
    return this.#db.tx(async (sql) => {
      const current = await row(sql, id, this.#db.dialect.forUpdate);
      if (current === undefined) return { kind: 'unknown-job' };
      if (FINAL_STATUSES.includes(current.status)) return { kind: 'already-ended', job: toJobView(current) };
      if (current.status === 'queued') {
        await sql.run(
          `UPDATE jobs SET status = 'canceled', outcome = 'canceled', cancel_requested_at = ?, result = ?, updated_at = ?, ended_at = ? WHERE seq = ?`,
          [now, serverReport('cancel', 'canceled before an agent took it'), now, now, current.seq],
        );
        await sql.notify({ kind: 'job', id });
        return { kind: 'canceled', job: toJobView((await row(sql, id))!) };
      }
      // A repeated request keeps the first timestamp: the cancel has been pending since then.
      if (current.cancel_requested_at === null) {
        await sql.run('UPDATE jobs SET cancel_requested_at = ?, updated_at = ? WHERE seq = ?', [now, now, current.seq]);
        await sql.notify({ kind: 'job', id });
      }
      return { kind: 'requested', job: toJobView((await row(sql, id))!) };
    });
  }

  /**
   * Marks agents with no poll since `cutoff` as lost and takes their unfinished jobs back: requeued, or canceled
   * when a cancel was pending. `floor` (the server's start) counts as a poll, so agents are not judged by the time
   * the server itself was down. With several instances, one runs it at a time (undefined for the others).
   */
  async sweepLostAgents(cutoff: number, floor: number, now = Date.now()): Promise<SweepResult | undefined> {
    return this.#db.exclusive('lost-agents', async (sql) => {
      const silent = 'CASE WHEN last_poll_at > ? THEN last_poll_at ELSE ? END < ?';
      const newlyLost = await sql.all<AgentRow>(`SELECT * FROM agents WHERE lost_at IS NULL AND ${silent}`, [floor, floor, cutoff]);
      for (const agent of newlyLost) {
        await sql.run('UPDATE agents SET lost_at = ? WHERE id = ?', [now, agent.id]);
        await sql.notify({ kind: 'agent', id: agent.id });
      }
      // Every silent agent, not only newly lost ones: a lost agent's report may have claimed a job since.
      const orphans = await sql.all<JobRow>(
        `SELECT * FROM jobs WHERE status IN ${HELD} AND agent_id IN (SELECT id FROM agents WHERE ${silent}) ORDER BY seq${this.#db.dialect.forUpdate}`,
        [floor, floor, cutoff],
      );
      for (const job of orphans) {
        if (job.cancel_requested_at !== null) {
          await sql.run(`UPDATE jobs SET status = 'canceled', outcome = 'canceled', result = ?, updated_at = ?, ended_at = ? WHERE seq = ?`, [
            serverReport('agent-lost', `agent ${job.agent_id ?? ''} stopped polling before it reported the cancel`),
            now,
            now,
            job.seq,
          ]);
        } else {
          // The next agent starts its delivery-seq at 1 again, so the old agent's sequence is forgotten.
          await sql.run(
            `UPDATE jobs SET status = 'queued', agent_id = NULL, assigned_at = NULL, handouts = 0, progress = NULL, result = NULL, last_seq = 0,
               requeues = requeues + 1, updated_at = ? WHERE seq = ?`,
            [now, job.seq],
          );
        }
        await sql.notify({ kind: 'job', id: job.id });
      }
      const jobs: JobView[] = [];
      for (const job of orphans) jobs.push(toJobView((await row(sql, job.id))!));
      return { agents: newlyLost.map((agent) => toAgentView({ ...agent, lost_at: now })), jobs };
    });
  }

  /** Ended jobs, oldest end first, that ended before `cutoff`: what retention prunes next. */
  async prunable(cutoff: number, limit: number): Promise<Array<Pick<JobRow, 'seq' | 'id'>>> {
    return this.#db.all(`SELECT seq, id FROM jobs WHERE ended_at < ? AND status IN ${FINAL} ORDER BY ended_at LIMIT ?`, [cutoff, limit]);
  }

  /**
   * Deletes one ended job (its log must be gone already, see JobLogs.deleteSome), its delivery ids and ended copies;
   * under the retention lock, so only one instance prunes at a time. False when another instance holds it.
   */
  async deleteJob(seq: number): Promise<boolean> {
    const done = await this.#db.exclusive('retention', async (sql) => {
      const found = await sql.get<{ id: string }>(`SELECT id FROM jobs WHERE seq = ? AND status IN ${FINAL}${this.#db.dialect.forUpdate}`, [seq]);
      if (found === undefined) return true;
      await sql.run('DELETE FROM job_logs WHERE job_seq = ?', [seq]);
      await sql.run('DELETE FROM deliveries WHERE job_id = ?', [found.id]);
      await sql.run('DELETE FROM ended_copies WHERE job_id = ?', [found.id]);
      await sql.run('DELETE FROM jobs WHERE seq = ?', [seq]);
      return true;
    });
    return done === true;
  }
}

function row(sql: Sql, id: string, lock = ''): Promise<JobRow | undefined> {
  return sql.get<JobRow>(`SELECT * FROM jobs WHERE id = ?${lock}`, [id]);
}
