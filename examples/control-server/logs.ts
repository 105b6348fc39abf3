// Live job logs in the control server's SQLite file: what agents POST to a job's logsUrl, read back in pages.
import type Database from 'better-sqlite3';
import { HttpError } from './http.ts';
import { toJobView } from './rows.ts';
import type { JobRow, JobView } from './rows.ts';

export interface LogLine {
  /** Line number, from 0. */
  i: number;
  /** RFC 3339, as the engine stamped it. */
  ts: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface LogBatch {
  jobId: string;
  /** x-foreman-agent-id; undefined for clients that do not send it. */
  agentId: string | undefined;
  /** Consecutive lines, possibly none. */
  lines: LogLine[];
  /** x-foreman-log-end: the log's total number of lines. */
  end: number | undefined;
}

export type AppendResult =
  | { kind: 'unknown-job' }
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

const MAX_TS_LENGTH = 64;

/**
 * Parses an NDJSON batch body: one `{i, ts, stream, text}` object per line, numbered consecutively
 * from `offset` when it is given. Throws a 400 naming the first bad line; other fields are ignored.
 */
export function parseLogLines(body: Buffer | undefined, offset: number | undefined): LogLine[] {
  if (body === undefined || body.length === 0) return [];
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new HttpError(400, 'the body is not valid UTF-8');
  }
  const lines: LogLine[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    if (raw.trim() === '') continue;
    const where = `body line ${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new HttpError(400, `${where} is not valid JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, `${where} is not a JSON object`);
    const { i, ts, stream, text: lineText } = value as Record<string, unknown>;
    if (typeof i !== 'number' || !Number.isSafeInteger(i) || i < 0) throw new HttpError(400, `${where}: "i" must be a non-negative integer`);
    if (typeof ts !== 'string' || ts === '' || ts.length > MAX_TS_LENGTH) throw new HttpError(400, `${where}: "ts" must be a timestamp string`);
    if (stream !== 'stdout' && stream !== 'stderr') throw new HttpError(400, `${where}: "stream" must be "stdout" or "stderr"`);
    if (typeof lineText !== 'string') throw new HttpError(400, `${where}: "text" must be a string`);
    const expected = lines.length === 0 ? (offset ?? i) : lines[0]!.i + lines.length;
    if (i !== expected) {
      const rule = lines.length === 0 ? 'x-foreman-log-offset' : 'the previous line + 1';
      throw new HttpError(400, `${where}: "i" is ${i}, expected ${expected} (${rule})`);
    }
    lines.push({ i, ts, stream, text: lineText });
  }
  return lines;
}

/** The log half of the store; shares the Store's database connection. */
export class JobLogs {
  readonly #db: Database.Database;
  readonly #appendTx: Database.Transaction<(batch: LogBatch) => AppendResult>;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#appendTx = db.transaction((batch: LogBatch) => this.#append(batch));
  }

  /**
   * Stores a batch in one transaction, keeping the first copy of each line number, so a batch sent
   * again changes nothing. A job's log is that of one copy of it: a batch is taken from the job's
   * current agent and from the agent whose lines are stored, if any (see clear()).
   */
  append(batch: LogBatch): AppendResult {
    return this.#appendTx.immediate(batch);
  }

  /** undefined for an unknown job. */
  read(jobId: string, from: number, limit: number): LogPage | undefined {
    const state = this.state(jobId);
    return state === undefined ? undefined : this.page(state.seq, from, limit);
  }

  /** The job's seq, for page(); undefined for an unknown job. */
  state(jobId: string): LogState | undefined {
    return this.#db.prepare<[string], LogState>('SELECT seq, log_lines, log_total FROM jobs WHERE id = ?').get(jobId);
  }

  page(seq: number, from: number, limit: number): LogPage {
    const state = this.#db.prepare<[number], LogState>('SELECT seq, log_lines, log_total FROM jobs WHERE seq = ?').get(seq)!;
    const lines = this.#db
      .prepare<[number, number, number], LogLine>('SELECT i, ts, stream, text FROM job_logs WHERE job_seq = ? AND i >= ? ORDER BY i LIMIT ?')
      .all(seq, from, limit);
    return {
      lines,
      next: lines.length === 0 ? from : lines[lines.length - 1]!.i + 1,
      total: state.log_total,
      complete: state.log_total !== null && state.log_lines === state.log_total,
    };
  }

  /**
   * Forgets a job's log when another agent is handed the job: the new copy numbers its lines from 0
   * again, so they must not be taken for copies of the old ones. Call inside the Store's transaction.
   */
  clear(seq: number): void {
    this.#db.prepare('DELETE FROM job_logs WHERE job_seq = ?').run(seq);
    this.#db.prepare('UPDATE jobs SET log_lines = 0, log_total = NULL, log_agent_id = NULL WHERE seq = ?').run(seq);
  }

  #append(batch: LogBatch): AppendResult {
    const row = this.#db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?').get(batch.jobId);
    if (row === undefined) return { kind: 'unknown-job' };
    const { agentId } = batch;
    if (agentId !== undefined && ((row.agent_id !== null && row.agent_id !== agentId) || (row.log_agent_id !== null && row.log_agent_id !== agentId))) {
      return { kind: 'other-agent' };
    }
    if (batch.end !== undefined && row.log_total !== null && batch.end !== row.log_total) {
      return { kind: 'conflict', message: `the log already ended at ${row.log_total} lines` };
    }
    const total = batch.end ?? row.log_total;
    if (total !== null) {
      const storedMax = this.#db.prepare<[number], { last: number | null }>('SELECT MAX(i) AS last FROM job_logs WHERE job_seq = ?').get(row.seq)!.last;
      const last = Math.max(batch.lines.at(-1)?.i ?? -1, storedMax ?? -1);
      if (last >= total) return { kind: 'conflict', message: `line ${last} is past the log's end (${total} lines)` };
    }
    const insert = this.#db.prepare<[number, number, string, string, string], unknown>(
      'INSERT OR IGNORE INTO job_logs (job_seq, i, ts, stream, text) VALUES (?, ?, ?, ?, ?)',
    );
    let inserted = 0;
    for (const line of batch.lines) inserted += insert.run(row.seq, line.i, line.ts, line.stream, line.text).changes;
    this.#db
      .prepare<[number, number | null, string | null, number], unknown>(
        'UPDATE jobs SET log_lines = log_lines + ?, log_total = ?, log_agent_id = COALESCE(log_agent_id, ?) WHERE seq = ?',
      )
      .run(inserted, total, agentId ?? null, row.seq);
    const after = this.#db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE seq = ?').get(row.seq)!;
    return { kind: 'stored', inserted, changed: inserted > 0 || total !== row.log_total, job: toJobView(after) };
  }
}
