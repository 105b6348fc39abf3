// Live job logs in the control server's database: what agents POST to a job's logsUrl, read back in pages.
import type { LogLine } from '../../packages/control-server-kit/index.ts';
import type { Database, Sql } from './db.ts';
import { toJobView } from './rows.ts';
import type { JobRow, JobView } from './rows.ts';
import { secretMatches } from './secrets.ts';

export type { LogLine } from '../../packages/control-server-kit/index.ts';

export interface LogBatch {
  jobId: string;
  /** The secret the logs URL carried; undefined when it carried none. */
  secret: string | undefined;
  /** x-foreman-agent-id; undefined for clients that do not send it. */
  agentId: string | undefined;
  /** Consecutive lines, possibly none. */
  lines: LogLine[];
  /** x-foreman-log-end: the log's total number of lines. */
  end: number | undefined;
}

export type AppendResult =
  | { kind: 'unknown-job' }
  /** The URL's secret is missing or wrong: nothing is stored. */
  | { kind: 'forbidden' }
  /** From a copy of the job whose log is not the one kept (see append). Acknowledged, not stored. */
  | { kind: 'other-agent' }
  /** Contradicts what is stored: a line past the log's end, or a second end with another total. */
  | { kind: 'conflict'; message: string }
  /** `changed`: lines were new or the end was new, so the job's view changed. */
  | { kind: 'stored'; inserted: number; changed: boolean; job: JobView };

export interface LogPage {
  lines: LogLine[];
  /** The first line number not returned: the `from` of the next page. */
  next: number;
  /** From x-foreman-log-end; null until it arrived. */
  total: number | null;
  /** total is known and every line below it is stored. */
  complete: boolean;
}

type LogState = Pick<JobRow, 'seq' | 'log_lines' | 'log_total'>;

/** The log half of the store; shares the Store's database. */
export class JobLogs {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Stores a batch in one transaction, keeping the first copy of each line number, so a batch sent again changes
   * nothing. A job's log is that of one copy of it: a batch is taken from the job's current agent and from the
   * agent whose lines are stored, if any (see clear()).
   */
  append(batch: LogBatch): Promise<AppendResult> {
    return this.#db.tx((sql) => this.#append(sql, batch));
  }

  /** undefined for an unknown job. */
  async read(jobId: string, from: number, limit: number): Promise<LogPage | undefined> {
    const state = await this.state(jobId);
    return state === undefined ? undefined : this.page(state.seq, from, limit);
  }

  /** The job's seq, for page(); undefined for an unknown job. */
  state(jobId: string): Promise<LogState | undefined> {
    return this.#db.get<LogState>('SELECT seq, log_lines, log_total FROM jobs WHERE id = ?', [jobId]);
  }

  /** A page of the log of the job `seq`; an empty, unfinished page once the job is gone (pruned). */
  async page(seq: number, from: number, limit: number): Promise<LogPage> {
    const state = await this.#db.get<LogState>('SELECT seq, log_lines, log_total FROM jobs WHERE seq = ?', [seq]);
    if (state === undefined) return { lines: [], next: from, total: null, complete: false };
    const lines = await this.#db.all<LogLine>('SELECT i, ts, stream, text FROM job_logs WHERE job_seq = ? AND i >= ? ORDER BY i LIMIT ?', [seq, from, limit]);
    return {
      lines: lines.map((line) => ({ ...line, i: Number(line.i) })),
      next: lines.length === 0 ? from : Number(lines[lines.length - 1]!.i) + 1,
      total: state.log_total,
      complete: state.log_total !== null && state.log_lines === state.log_total,
    };
  }

  /**
   * Forgets a job's log when another agent is handed the job: the new copy numbers its lines from 0 again, so they
   * must not be taken for copies of the old ones. Call inside the Store's transaction.
   */
  async clear(sql: Sql, seq: number): Promise<void> {
    await sql.run('DELETE FROM job_logs WHERE job_seq = ?', [seq]);
    await sql.run('UPDATE jobs SET log_lines = 0, log_total = NULL, log_agent_id = NULL WHERE seq = ?', [seq]);
  }

  /**
   * Deletes up to `limit` lines of an ended job's log, for retention, so no transaction deletes a million rows;
   * the number deleted (0 once none is left).
   */
  async deleteSome(seq: number, limit: number): Promise<number> {
    const last = await this.#db.get<{ i: number }>('SELECT i FROM job_logs WHERE job_seq = ? ORDER BY i LIMIT 1 OFFSET ?', [seq, limit - 1]);
    if (last === undefined) return this.#db.run('DELETE FROM job_logs WHERE job_seq = ?', [seq]);
    return this.#db.run('DELETE FROM job_logs WHERE job_seq = ? AND i <= ?', [seq, last.i]);
  }

  async #append(sql: Sql, batch: LogBatch): Promise<AppendResult> {
    const row = await sql.get<JobRow>(`SELECT * FROM jobs WHERE id = ?${this.#db.dialect.forUpdate}`, [batch.jobId]);
    if (row === undefined) return { kind: 'unknown-job' };
    if (!secretMatches(row.secret, batch.secret)) return { kind: 'forbidden' };
    const { agentId } = batch;
    if (agentId !== undefined && ((row.agent_id !== null && row.agent_id !== agentId) || (row.log_agent_id !== null && row.log_agent_id !== agentId))) {
      return { kind: 'other-agent' };
    }
    if (batch.end !== undefined && row.log_total !== null && batch.end !== row.log_total) {
      return { kind: 'conflict', message: `the log already ended at ${row.log_total} lines` };
    }
    const total = batch.end ?? row.log_total;
    if (total !== null) {
      const storedMax = (await sql.get<{ last: number | null }>('SELECT MAX(i) AS last FROM job_logs WHERE job_seq = ?', [row.seq]))?.last ?? null;
      const last = Math.max(batch.lines.at(-1)?.i ?? -1, storedMax === null ? -1 : Number(storedMax));
      if (last >= total) return { kind: 'conflict', message: `line ${last} is past the log's end (${total} lines)` };
    }
    const inserted = await sql.insertLogLines(row.seq, batch.lines);
    await sql.run('UPDATE jobs SET log_lines = log_lines + ?, log_total = ?, log_agent_id = COALESCE(log_agent_id, ?) WHERE seq = ?', [
      inserted,
      total,
      agentId ?? null,
      row.seq,
    ]);
    const changed = inserted > 0 || total !== row.log_total;
    if (changed) {
      await sql.notify({ kind: 'job', id: row.id });
      await sql.notify({ kind: 'log', id: row.id });
    }
    const after = (await sql.get<JobRow>('SELECT * FROM jobs WHERE seq = ?', [row.seq]))!;
    return { kind: 'stored', inserted, changed, job: toJobView(after) };
  }
}
