import Database from 'better-sqlite3';
import type { LogLine } from '../shared/log-line.ts';
import { statementCache } from '../shared/statements.ts';
import { sqliteOptions } from '../shared/sqlite-binding.ts';
import { WalSync } from '../shared/wal-sync.ts';
import { encodeLogLine } from '../protocol/wire.ts';
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

/** Stored lines from a number on, as one NDJSON body ready to send. */
export interface LogBatch {
  readonly body: Buffer;
  /** Lines in the body (numbered from the `from` asked for). */
  readonly count: number;
  readonly bytes: number;
  /** More is stored: the next chunk did not fit. */
  readonly full: boolean;
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
  CREATE TABLE IF NOT EXISTS log_chunks (
    job_id TEXT NOT NULL, first INTEGER NOT NULL, count INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (job_id, first)
  ) WITHOUT ROWID;
`;

/** Lines per chunk when lines stored one per row by an earlier version are moved into chunks. */
const MIGRATED_CHUNK_LINES = 1000;

/** One line as the logs server receives it (the log-batch format of src/protocol/wire.ts). */
export function encodeLine(i: number, line: LogLine): string {
  return encodeLogLine(i, line);
}

/**
 * Job logs on disk (`logs.db` in `data_dir`), apart from the job store so that a chatty job's
 * writes never queue behind, or slow, the sync of a status update. Lines are stored a read chunk at
 * a time, as one row of NDJSON encoded once (what the shipper sends as it is), and commit without a
 * disk sync: a killed agent loses nothing committed; a lost machine may lose the last
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
    this.migrate();
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
   * last: one row for the chunk. False when the stream is settled (or gone): nothing more is kept for it.
   */
  append(jobId: string, lines: readonly LogLine[], cursor: LogCursor, change: { bytes: number; truncated: boolean }): boolean {
    const appended = this.db.transaction(() => {
      const row = this.stmt<{ next_line: number }>('SELECT next_line FROM log_streams WHERE job_id = ? AND settled IS NULL').get(jobId);
      if (!row) return false;
      const first = row.next_line;
      if (lines.length > 0) {
        let body = '';
        for (let n = 0; n < lines.length; n++) body += encodeLine(first + n, lines[n] as LogLine);
        this.stmt('INSERT INTO log_chunks (job_id, first, count, body) VALUES (?, ?, ?, ?)').run(jobId, first, lines.length, Buffer.from(body));
      }
      this.stmt(
        'UPDATE log_streams SET next_line = ?, bytes = bytes + ?, truncated = truncated OR ?, cursor_since = ?, cursor_count = ?, updated_at = ? WHERE job_id = ?',
      ).run(first + lines.length, change.bytes, change.truncated ? 1 : 0, cursor.since, cursor.count, this.now(), jobId);
      return true;
    })();
    this.wal?.maybeCheckpoint();
    return appended;
  }

  /** The container's output was read to its end (or its container is gone). */
  markFollowed(jobId: string): void {
    this.stmt('UPDATE log_streams SET followed = 1, updated_at = ? WHERE job_id = ?').run(this.now(), jobId);
  }

  /**
   * The stored lines from number `from` on, whole chunks up to `maxBytes` (at least one chunk), as the
   * NDJSON body to send: encoded when stored, so sending copies bytes and encodes nothing.
   */
  nextBatch(jobId: string, from: number, maxBytes: number): LogBatch {
    const parts: Buffer[] = [];
    let bytes = 0;
    let count = 0;
    let full = false;
    for (const chunk of this.chunksFrom(jobId, from)) {
      if (parts.length > 0 && bytes + chunk.body.length > maxBytes) {
        full = true;
        break;
      }
      parts.push(chunk.body);
      bytes += chunk.body.length;
      count += chunk.count;
    }
    return { body: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts), count, bytes, full };
  }

  /** Lines from number `from`, in order, up to `limit`, decoded (for inspection and tests; the shipper sends `nextBatch`). */
  read(jobId: string, from: number, limit: number): StoredLine[] {
    const out: StoredLine[] = [];
    for (const chunk of this.chunksFrom(jobId, from)) {
      for (const text of chunk.body.toString('utf8').split('\n')) {
        if (text === '' || out.length >= limit) continue;
        out.push(JSON.parse(text) as StoredLine);
      }
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The stored chunks holding lines from `from` on; the first cut to start at `from` when it holds earlier lines. */
  private *chunksFrom(jobId: string, from: number): Generator<{ count: number; body: Buffer }, void, undefined> {
    const rows = this.stmt<{ first: number; count: number; body: Buffer }>(
      'SELECT first, count, body FROM log_chunks WHERE job_id = ? AND first + count > ? ORDER BY first',
    ).iterate(jobId, from);
    for (const row of rows) {
      if (row.first >= from) {
        yield { count: row.count, body: row.body };
        continue;
      }
      // Partly accepted (by an earlier version, which acknowledged line by line): from its line `from` on.
      let at = 0;
      for (let skip = from - row.first; skip > 0; skip--) at = row.body.indexOf(0x0a, at) + 1;
      yield { count: row.count - (from - row.first), body: row.body.subarray(at) };
    }
  }

  /** Bytes of the batches waiting to be sent from line `from` on. */
  waitingBytes(jobId: string, from: number): number {
    const row = this.stmt<{ n: number | null }>('SELECT SUM(LENGTH(body)) AS n FROM log_chunks WHERE job_id = ? AND first + count > ?').get(jobId, from);
    return row?.n ?? 0;
  }

  /** The logs server accepted every line below `upTo`: they are deleted. */
  ack(jobId: string, upTo: number): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM log_chunks WHERE job_id = ? AND first + count <= ?').run(jobId, upTo);
      this.stmt('UPDATE log_streams SET acked = MAX(acked, ?), updated_at = ? WHERE job_id = ?').run(upTo, this.now(), jobId);
    })();
  }

  /** The stream is over: its lines are deleted; the row stays, so the job's log is never sent again. */
  settle(jobId: string, how: LogSettlement): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM log_chunks WHERE job_id = ?').run(jobId);
      this.stmt('UPDATE log_streams SET settled = ?, followed = 1, updated_at = ? WHERE job_id = ?').run(how, this.now(), jobId);
    })();
  }

  /** Forgets settled streams last touched before `before` (as the job store forgets finished jobs). */
  purge(before: number): number {
    return this.stmt('DELETE FROM log_streams WHERE settled IS NOT NULL AND updated_at < ?').run(before).changes;
  }

  /**
   * Version 1 keeps lines in chunks (`log_chunks`); version 0 kept a row per line (`log_lines`). Lines an
   * earlier version stored and did not send yet are moved into chunks, in order, so they still go out.
   */
  private migrate(): void {
    if ((this.db.pragma('user_version', { simple: true }) as number) >= 1) return;
    this.db.transaction(() => {
      const legacy = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_lines'").get();
      if (legacy) {
        // A page at a time: better-sqlite3 runs no statement while another one iterates.
        const page = this.db.prepare<[string, number], { job_id: string; i: number; ts: string; stream: number; text: string }>(
          'SELECT job_id, i, ts, stream, text FROM log_lines WHERE (job_id, i) > (?, ?) ORDER BY job_id, i LIMIT 1000',
        );
        const insert = this.db.prepare('INSERT INTO log_chunks (job_id, first, count, body) VALUES (?, ?, ?, ?)');
        let chunk: { jobId: string; first: number; count: number; body: string } | undefined;
        const flush = (): void => {
          if (chunk) insert.run(chunk.jobId, chunk.first, chunk.count, Buffer.from(chunk.body));
          chunk = undefined;
        };
        for (let after: [string, number] = ['', -1]; ;) {
          const rows = page.all(...after);
          if (rows.length === 0) break;
          for (const row of rows) {
            if (chunk && (chunk.jobId !== row.job_id || chunk.first + chunk.count !== row.i || chunk.count >= MIGRATED_CHUNK_LINES)) flush();
            chunk ??= { jobId: row.job_id, first: row.i, count: 0, body: '' };
            chunk.body += encodeLine(row.i, { ts: row.ts, stream: row.stream === 2 ? 'stderr' : 'stdout', text: row.text });
            chunk.count++;
            after = [row.job_id, row.i];
          }
        }
        flush();
        this.db.exec('DROP TABLE log_lines');
      }
      this.db.pragma('user_version = 1');
    })();
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
