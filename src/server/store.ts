// The control server's state, on either database (db.ts): each operation one transaction, so a job goes to exactly
// one agent and each delivery is applied once, with several instances on one PostgreSQL database as with one
// SQLite file.
import { randomUUID } from 'node:crypto';
import { decideCallback } from '../../packages/control-server-kit/index.ts';
import type { Database, Param, Sql } from './db.ts';
import { JobLogs } from './logs.ts';
import { newTraceparent } from './agent-facts.ts';
import { newSecret, secretMatches } from './secrets.ts';
import { FINAL_STATUSES, toAgentView, toAssignedJob, toJobView } from './rows.ts';
import type { AgentRow, AgentView, JobRow, JobView } from './rows.ts';
import type {
  CallbackResult,
  CallbackUpdate,
  CancelResult,
  CreateResult,
  JobFilter,
  JobPage,
  NewJob,
  PollInput,
  PollOptions,
  PollResult,
  SweepResult,
} from './store-types.ts';

export type { AgentView, AssignedJob, JobStatus, JobView } from './rows.ts';
export type * from './store-types.ts';

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
        `INSERT INTO jobs (id, image, command, env, body, labels, always_pull, run_options, traceparent, tracestate, status, secret, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
        [
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
   * pending cancel. A queued job whose image another live agent with free slots has (PollOptions.imagePreferenceMs)
   * waits for it, up to that long after it was queued.
   */
  async poll(agent: PollInput, options: PollOptions, now = Date.now()): Promise<PollResult> {
    const { dialect } = this.#db;
    return this.#db.tx(async (sql) => {
      const images = JSON.stringify(agent.images ?? []);
      const before = await sql.get<{ images: string | null }>('SELECT images FROM agents WHERE id = ?', [agent.id]);
      await sql.run(
        `INSERT INTO agents (id, labels, capacity, user_agent, last_poll_at, first_seen_at, attributes, images) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, capacity = excluded.capacity,
           user_agent = excluded.user_agent, last_poll_at = excluded.last_poll_at, lost_at = NULL,
           attributes = COALESCE(excluded.attributes, agents.attributes), images = excluded.images`,
        [
          agent.id,
          JSON.stringify(agent.labels),
          agent.capacity,
          agent.userAgent ?? null,
          now,
          now,
          agent.attributes === undefined ? null : JSON.stringify(agent.attributes),
          images,
        ],
      );
      // Rewritten only when the list changed: most polls carry the same images as the one before.
      if ((before?.images ?? '[]') !== images) {
        await sql.run('DELETE FROM agent_images WHERE agent_id = ?', [agent.id]);
        for (const image of agent.images ?? []) {
          await sql.run('INSERT INTO agent_images (agent_id, image) VALUES (?, ?) ON CONFLICT DO NOTHING', [agent.id, image]);
        }
      }
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
      const prefer = options.imagePreferenceMs > 0;
      // Held back from this agent: a job younger than the window whose image it lacks and another live agent, with
      // free slots and the job's labels, has.
      const preference = `AND (jobs.created_at <= CAST(? AS BIGINT)
          OR EXISTS (SELECT 1 FROM agent_images WHERE agent_id = ? AND image = jobs.image)
          OR NOT EXISTS (SELECT 1 FROM agent_images AS held JOIN agents AS other ON other.id = held.agent_id
            WHERE held.image = jobs.image AND other.id <> ? AND other.lost_at IS NULL AND other.capacity > 0
              AND other.last_poll_at >= CAST(? AS BIGINT) AND ${dialect.labelsWithinOther}))`;
      const fresh =
        agent.capacity > picked.length
          ? await sql.all<JobRow>(
              `SELECT * FROM jobs WHERE status = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM ended_copies WHERE job_id = jobs.id AND agent_id = ?)
                 AND ${dialect.labelsWithin} ${prefer ? preference : ''}
               ORDER BY seq LIMIT ?${dialect.skipLocked}`,
              [
                agent.id,
                JSON.stringify(agent.labels),
                ...(prefer ? [now - options.imagePreferenceMs, agent.id, agent.id, now - options.liveWithinMs] : []),
                agent.capacity - picked.length,
              ],
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
        `UPDATE jobs SET status = ?, progress = ?, outcome = ?, result = ?, last_seq = ?, agent_id = ?, updated_at = ?, ended_at = ?,
           report_traceparent = ?, usage = ? WHERE seq = ?`,
        [
          update.status,
          progress,
          outcome,
          result,
          lastSeq,
          update.agentId ?? current.agent_id,
          now,
          completed ? now : null,
          update.traceparent ?? current.report_traceparent,
          update.usage ?? current.usage,
          current.seq,
        ],
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
