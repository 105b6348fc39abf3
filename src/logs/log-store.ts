import Database from 'better-sqlite3';
import type { LogLine } from '../shared/log-line.ts';
import { statementCache } from '../shared/statements.ts';
import { sqliteOptions } from '../shared/sqlite-binding.ts';
import { WalSync } from '../shared/wal-sync.ts';
import type { LogCursor } from './lines.ts';

/** How a job's log stream ended: every line accepted and the end sent, refused (4xx), or given up on. */
export type LogSettlement = 'ended' | 'rejected' | 'abandoned';

/** One job's log stream as stored. */
export interface LogStream {
  readonly jobId: string;
  readonly url: string;
  /** The number the next stored line gets: the lines so far. */
  readonly nextLine: number;
  /** Lines below this number were accepted by the logs server (and are deleted here). */
  readonly acked: number;
  /** Bytes of text stored so far, for `max_log_bytes`. */
  readonly bytes: number;
  readonly truncated: boolean;
  readonly cursor: LogCursor;
  /** The container's output was read to its end. */
  readonly followed: boolean;
  readonly settled: LogSettlement | null;
}

export interface StoredLine extends LogLine {
  readonly i: number;
}

interface StreamRow {
  job_id: string;
  url: string;
  next_line: number;
  acked: number;
  bytes: number;
  truncated: number;
  cursor_since: string | null;
  cursor_count: number;
  followed: number;
  settled: LogSettlement | null;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS log_streams (
    job_id TEXT PRIMARY KEY, url TEXT NOT NULL,
    next_line INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0,
    cursor_since TEXT, cursor_count INTEGER NOT NULL DEFAULT 0,
    followed INTEGER NOT NULL DEFAULT 0, settled TEXT, updated_at INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS log_lines (
    job_id TEXT NOT NULL, i INTEGER NOT NULL, ts TEXT NOT NULL, stream INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (job_id, i)
  ) WITHOUT ROWID;
`;

/**
 * Job logs on disk (`logs.db` in `data_dir`), apart from the job store so that a chatty job's
 * writes never queue behind, or slow, the sync of a status update. Lines commit without a disk sync,
 * a read chunk at a time: a killed agent loses nothing committed; a lost machine may lose the last
 * lines, which the engine still holds and the next start reads again from the stored cursor. The
 * WAL moves into the database file in the background, its syncs off the event loop (WalSync).
 */
export class LogStore {
  private readonly db: Database.Database;
  private readonly now: () => number;
  /** Statements are compiled once and reused. */
  private readonly stmt: ReturnType<typeof statementCache>;
  private closed = false;
  /** Background checkpoints of a file store, their syncs off the event loop; none in memory. */
  private readonly wal: WalSync | undefined;

  constructor(path: string, now: () => number = Date.now) {
    this.db = new Database(path, sqliteOptions());
    this.stmt = statementCache(this.db);
    this.now = now;
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 1000');
    this.db.exec(SCHEMA);
    // Writes commit without a sync, and checkpoints run in the background (see WalSync).
    this.wal = path === ':memory:' ? undefined : new WalSync(this.db, { path });
  }

  /** Starts a job's stream; one that exists is kept as it is. */
  open(jobId: string, url: string): LogStream {
    this.stmt('INSERT OR IGNORE INTO log_streams (job_id, url, updated_at) VALUES (?, ?, ?)').run(jobId, url, this.now());
    const stream = this.get(jobId);
    if (!stream) throw new Error(`log stream of job ${jobId} was not stored`);
    return stream;
  }

  get(jobId: string): LogStream | undefined {
    const row = this.stmt<StreamRow>('SELECT * FROM log_streams WHERE job_id = ?').get(jobId);
    return row ? toStream(row) : undefined;
  }

  /** Streams not yet settled, e.g. left by a previous run. */
  unsettled(): LogStream[] {
    return this.stmt<StreamRow>('SELECT * FROM log_streams WHERE settled IS NULL ORDER BY rowid').all().map(toStream);
  }

  /**
   * Stores lines read up to `cursor` in one transaction, numbering them on from the stream's
   * last. False when the stream is settled (or gone): nothing more is kept for it.
   */
  append(jobId: string, lines: readonly LogLine[], cursor: LogCursor, change: { bytes: number; truncated: boolean }): boolean {
    const appended = this.db.transaction(() => {
      const row = this.stmt<{ next_line: number }>('SELECT next_line FROM log_streams WHERE job_id = ? AND settled IS NULL').get(jobId);
      if (!row) return false;
      const insert = this.stmt('INSERT INTO log_lines (job_id, i, ts, stream, text) VALUES (?, ?, ?, ?, ?)');
      let i = row.next_line;
      for (const line of lines) insert.run(jobId, i++, line.ts, line.stream === 'stderr' ? 2 : 1, line.text);
      this.stmt(
        'UPDATE log_streams SET next_line = ?, bytes = bytes + ?, truncated = truncated OR ?, cursor_since = ?, cursor_count = ?, updated_at = ? WHERE job_id = ?',
      ).run(i, change.bytes, change.truncated ? 1 : 0, cursor.since, cursor.count, this.now(), jobId);
      return true;
    })();
    this.wal?.maybeCheckpoint();
    return appended;
  }

  /** The container's output was read to its end (or its container is gone). */
  markFollowed(jobId: string): void {
    this.stmt('UPDATE log_streams SET followed = 1, updated_at = ? WHERE job_id = ?').run(this.now(), jobId);
  }

  /** Lines from number `from`, in order, up to `limit`. */
  read(jobId: string, from: number, limit: number): StoredLine[] {
    return [...this.lines(jobId, from, limit)];
  }

  /**
   * `read`, one line at a time: rows are fetched only as far as the caller goes, so a batch that
   * fills up after a few long lines does not read (and drop) thousands more. Use it up, or stop,
   * before any other call on this store.
   */
  *lines(jobId: string, from: number, limit: number): Generator<StoredLine, void, undefined> {
    const rows = this.stmt<{ i: number; ts: string; stream: number; text: string }>(
      'SELECT i, ts, stream, text FROM log_lines WHERE job_id = ? AND i >= ? ORDER BY i LIMIT ?',
    ).iterate(jobId, from, limit);
    for (const r of rows) yield { i: r.i, ts: r.ts, stream: r.stream === 2 ? 'stderr' : 'stdout', text: r.text };
  }

  /** Approximate bytes of the lines waiting to be sent. */
  waitingBytes(jobId: string, from: number): number {
    const row = this.stmt<{ n: number | null }>('SELECT SUM(LENGTH(CAST(text AS BLOB))) + 64 * COUNT(*) AS n FROM log_lines WHERE job_id = ? AND i >= ?').get(
      jobId,
      from,
    );
    return row?.n ?? 0;
  }

  /** The logs server accepted every line below `upTo`: they are deleted. */
  ack(jobId: string, upTo: number): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM log_lines WHERE job_id = ? AND i < ?').run(jobId, upTo);
      this.stmt('UPDATE log_streams SET acked = MAX(acked, ?), updated_at = ? WHERE job_id = ?').run(upTo, this.now(), jobId);
    })();
  }

  /** The stream is over: its lines are deleted; the row stays, so the job's log is never sent again. */
  settle(jobId: string, how: LogSettlement): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM log_lines WHERE job_id = ?').run(jobId);
      this.stmt('UPDATE log_streams SET settled = ?, followed = 1, updated_at = ? WHERE job_id = ?').run(how, this.now(), jobId);
    })();
  }

  /** Forgets settled streams last touched before `before` (as the job store forgets finished jobs). */
  purge(before: number): number {
    return this.stmt('DELETE FROM log_streams WHERE settled IS NOT NULL AND updated_at < ?').run(before).changes;
  }

  /** Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.wal?.closeNow();
    } finally {
      this.db.close();
    }
  }
}

function toStream(row: StreamRow): LogStream {
  return {
    jobId: row.job_id,
    url: row.url,
    nextLine: row.next_line,
    acked: row.acked,
    bytes: row.bytes,
    truncated: row.truncated !== 0,
    cursor: { since: row.cursor_since, count: row.cursor_count },
    followed: row.followed !== 0,
    settled: row.settled,
  };
}
