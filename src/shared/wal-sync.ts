import Database from 'better-sqlite3';
import { close, fsync, openSync, statSync } from 'node:fs';
import { sqliteOptions } from './sqlite-binding.ts';

/** Flushes a file to disk off the event loop (libuv's thread pool); tests pass a slow one. */
export type FileSync = (fd: number) => Promise<void>;

const threadPoolSync: FileSync = (fd) => new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));

export interface WalSyncOptions {
  /** The database file the connection has open (its WAL is `<path>-wal`). */
  readonly path: string;
  readonly fsync?: FileSync;
  /** Move the WAL into the database file once it is this many bytes (SQLite's own default is about 4 MB). */
  readonly checkpointBytes?: number;
  /** Told of a failed background checkpoint; the next one tries again. */
  readonly onError?: (err: unknown) => void;
}

interface Deferred {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Group commit for a SQLite database in WAL mode, with every disk sync off the event loop.
 *
 * The connection commits without syncing (`synchronous = OFF`, no automatic checkpoints): a commit
 * writes its WAL frames to the page cache, which a killed process keeps. `durable()` then makes them
 * survive a power loss as well: one `fsync` of the WAL in libuv's thread pool covers every commit made
 * before it started, so concurrent callers share a sync (group commit), and a caller whose commit
 * came after a sync began waits for the next one. That is what `synchronous = FULL` does at each
 * commit, only batched and on another thread.
 *
 * Checkpoints move the WAL into the database file in the background, in the order SQLite's own
 * checkpoint keeps (WAL synced, then copied, then the database file synced), while a read
 * transaction on a second connection pins the WAL so that no writer rewinds it before the copy is
 * synced. The copy itself runs on this thread (page-cache writes); the syncs do not.
 */
export class WalSync {
  private readonly db: Database.Database;
  private readonly options: WalSyncOptions;
  private readonly sync: FileSync;
  private readonly changes: Database.Statement<[], { n: number }>;
  private walFd: number | undefined;
  private dbFd: number | undefined;
  /** The connection's change count when the last finished sync started: everything up to it is on disk. */
  private syncedChanges = -1;
  private current: Promise<void> | undefined;
  private next: Deferred | undefined;
  private checkpointing: Promise<void> | undefined;
  /** The WAL's size when the last checkpoint ended: the next begins once it has grown `checkpointBytes` past it. */
  private checkpointedAt = 0;
  /** A connection of its own whose read transaction pins the WAL during a checkpoint; opened at the first one. */
  private pin: { readonly db: Database.Database; readonly begin: () => void; readonly end: () => void } | undefined;
  private closed = false;

  constructor(db: Database.Database, options: WalSyncOptions) {
    this.db = db;
    this.options = options;
    this.sync = options.fsync ?? threadPoolSync;
    db.pragma('synchronous = OFF');
    db.pragma('wal_autocheckpoint = 0');
    // Once rewound after a checkpoint, the WAL file is cut back to this size, so its size tells how much it grew.
    db.pragma(`journal_size_limit = ${this.limit}`);
    this.changes = db.prepare<[], { n: number }>('SELECT total_changes() AS n');
  }

  /** Resolves once every transaction committed so far is on disk. */
  durable(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    if (this.changesNow() <= this.syncedChanges) return Promise.resolve();
    if (!this.current) return this.startSync();
    // The sync under way may have started before this commit: wait for the next one.
    this.next ??= deferred();
    return this.next.promise;
  }

  /** Background checkpoint once the WAL has grown `checkpointBytes` since the last one; never throws. */
  maybeCheckpoint(): void {
    if (this.checkpointing || this.closed) return;
    const size = this.walBytes();
    // Smaller than after the last checkpoint: a writer rewound the WAL and cut it back.
    if (size < this.checkpointedAt) this.checkpointedAt = 0;
    if (size < this.checkpointedAt + this.limit) return;
    this.checkpointing = this.checkpoint()
      .catch((err: unknown) => this.options.onError?.(err))
      .finally(() => {
        this.checkpointedAt = this.walBytes();
        this.checkpointing = undefined;
      });
  }

  private get limit(): number {
    return this.options.checkpointBytes ?? 4 * 1024 * 1024;
  }

  /** Resolves once no sync or checkpoint is under way. */
  async whenIdle(): Promise<void> {
    for (;;) {
      const pending = [this.current, this.next?.promise, this.checkpointing].filter((p) => p !== undefined);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * Moves the whole WAL into the database file with SQLite's own synced checkpoint, on this thread:
   * the store is closing, so a blocking sync harms no one, and everything committed is then on disk
   * (callers still waiting for `durable()` are told so). Safe to call twice; the caller closes the
   * connection afterwards.
   */
  closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    // A checkpoint under way holds the WAL: let go, so the final checkpoint can move all of it.
    this.pin?.end();
    this.finalCheckpoint();
    this.next?.resolve();
    this.next = undefined;
    // A sync may still run in the thread pool on these files: close them once it is done.
    const inFlight = [this.current, this.checkpointing].filter((p) => p !== undefined);
    void Promise.allSettled(inFlight).then(() => this.closeFiles());
  }

  private finalCheckpoint(): void {
    this.db.pragma('synchronous = FULL');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  private changesNow(): number {
    return this.changes.get()?.n ?? 0;
  }

  private startSync(): Promise<void> {
    const covers = this.changesNow();
    const run = (async () => {
      try {
        await this.sync(this.walFile());
        this.syncedChanges = Math.max(this.syncedChanges, covers);
      } finally {
        this.current = undefined;
        const waiting = this.next;
        this.next = undefined;
        if (waiting) this.startSync().then(waiting.resolve, waiting.reject);
        else this.maybeCheckpoint();
      }
    })();
    this.current = run;
    return run;
  }

  private async checkpoint(): Promise<void> {
    // A read transaction on a connection of its own: while it lasts, no writer rewinds the WAL, so the
    // frames being copied stay there until the database file holding the copy is synced.
    const pin = this.pinConnection();
    pin.begin();
    try {
      // Every frame the pin sees is older than this sync: SQLite syncs the WAL before it copies it.
      await this.sync(this.walFile());
      if (this.closed) return;
      this.db.pragma('wal_checkpoint(PASSIVE)');
      await this.sync(this.dbFile());
    } finally {
      pin.end();
    }
  }

  private pinConnection(): NonNullable<WalSync['pin']> {
    if (this.pin) return this.pin;
    const db = new Database(this.options.path, { ...sqliteOptions(), readonly: true, fileMustExist: true });
    const begin = db.prepare('BEGIN');
    const read = db.prepare('SELECT count(*) FROM sqlite_master');
    const commit = db.prepare('COMMIT');
    this.pin = {
      db,
      begin: () => {
        begin.run();
        read.get();
      },
      end: () => {
        if (db.inTransaction) commit.run();
      },
    };
    return this.pin;
  }

  private walBytes(): number {
    try {
      return statSync(`${this.options.path}-wal`).size;
    } catch {
      return 0;
    }
  }

  private walFile(): number {
    this.walFd ??= openSync(`${this.options.path}-wal`, 'r');
    return this.walFd;
  }

  private dbFile(): number {
    this.dbFd ??= openSync(this.options.path, 'r');
    return this.dbFd;
  }

  private closeFiles(): void {
    this.pin?.db.close();
    this.pin = undefined;
    for (const fd of [this.walFd, this.dbFd]) if (fd !== undefined) close(fd, () => undefined);
    this.walFd = undefined;
    this.dbFd = undefined;
  }
}
