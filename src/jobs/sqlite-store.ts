import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { JobSpec } from '../shared/job-spec.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { onRejected, transition, type JobState } from './state.ts';
import type { Delivery, ImageRecord, JobRecord, JobStore, NewDelivery, TraceIds, TransitionPatch } from './store.ts';
import type { ImageInfo } from '../shared/engine-facts.ts';
import { systemClock, type Clock, type Timer } from '../shared/clock.ts';
import { statementCache } from '../shared/statements.ts';
import { sqliteOptions } from '../shared/sqlite-binding.ts';
import { WalSync, type FileSync } from '../shared/wal-sync.ts';
import { jobFromRow, migrations, toDelivery, type DeliveryRow, type JobRow } from './sqlite-schema.ts';

export interface SqliteStoreOptions {
  readonly dataDir: string;
  readonly log: Logger;
  /** Timestamps and the delivered marks' commit timer; the system clock by default. */
  readonly clock?: Pick<Clock, 'now' | 'after'>;
  /** How long a write waits for a lock held by another connection before failing. */
  readonly busyTimeoutMs?: number;
  /** Flushes a file to disk off the event loop; tests pass a slow one. */
  readonly fsync?: FileSync;
}

/** How long a delivered mark waits for a batch to commit with before it commits alone. */
const SETTLE_DELAY_MS = 100;

/**
 * JobStore on SQLite (WAL) in `<dataDir>/foreman.db`. Every write commits at once on this thread
 * without a disk sync, so a killed agent keeps it; `durable()` and `batch()` resolve once it is
 * synced too, by one sync off the event loop for whatever committed meanwhile (see WalSync).
 */
export class SqliteStore implements JobStore {
  readonly agentId: string;
  private readonly db: Database.Database;
  private readonly log: Logger;
  private closed = false;
  /** Statements are compiled once and reused. */
  private readonly stmt: ReturnType<typeof statementCache>;
  /** Parsed specs of jobs not yet removed: a spec never changes, and the job API reads it on every request. */
  private readonly specs = new Map<string, JobSpec>();
  /** One reusable wrapper: runs `work` in a transaction, or a savepoint when already inside one. */
  private readonly transactional: <T>(work: () => T) => T;
  /** Set while a batched item runs: its own savepoint already makes it atomic. */
  private inBatchItem = false;
  private batched: Array<{ work: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];
  private flushQueued = false;
  /** Delivered marks not yet committed: they ride along with the next batch, or commit on their own. */
  private settled: Array<{ id: string; resolve: () => void; reject: (error: unknown) => void }> = [];
  private settleTimer: Timer | undefined;
  private readonly clock: Pick<Clock, 'now' | 'after'>;
  /** Group commit: every disk sync of this database, off the event loop. */
  private readonly wal: WalSync;

  /** Opens (creating when needed) the store; throws DataDirInUseError when another agent has it. */
  static open(options: SqliteStoreOptions): SqliteStore {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    const unlock = lockDataDir(options.dataDir);
    try {
      const path = join(options.dataDir, 'foreman.db');
      return new SqliteStore(new Database(path, sqliteOptions()), path, options, unlock);
    } catch (err) {
      unlock();
      throw err;
    }
  }

  private readonly unlock: () => void;

  private constructor(db: Database.Database, path: string, options: SqliteStoreOptions, unlock: () => void) {
    this.db = db;
    this.stmt = statementCache(db);
    this.unlock = unlock;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 1000}`);
    // Migrations and the agent id are synced as they commit: nothing is served yet.
    this.migrate();
    const wrapper = db.transaction((work: () => unknown) => work());
    this.transactional = <T>(work: () => T): T => wrapper(work) as T;
    this.agentId = this.loadAgentId();
    this.wal = new WalSync(db, {
      path,
      fsync: options.fsync,
      onError: (err) =>
        this.log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'a background checkpoint of the store failed; retrying later'),
    });
  }

  durable(): Promise<void> {
    return this.wal.durable();
  }

  private toJob(row: JobRow): JobRecord {
    let spec = this.specs.get(row.id);
    if (!spec) {
      spec = JSON.parse(row.spec) as JobSpec;
      if (row.state !== 'removed') this.specs.set(row.id, spec);
    }
    if (row.state === 'removed') this.specs.delete(row.id);
    return jobFromRow(row, spec);
  }

  /** Runs `work` atomically; inside a batched item it needs no savepoint of its own. */
  private inTransaction<T>(work: () => T): T {
    return this.inBatchItem ? work() : this.transactional(work);
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (let version = current; version < migrations.length; version++) {
      this.db.transaction(() => {
        this.db.exec(migrations[version] ?? '');
        this.db.pragma(`user_version = ${version + 1}`);
      })();
    }
  }

  private loadAgentId(): string {
    const row = this.stmt<{ value: string }>("SELECT value FROM meta WHERE key = 'agent_id'").get();
    if (row) return row.value;
    const id = randomUUID();
    this.stmt("INSERT INTO meta (key, value) VALUES ('agent_id', ?)").run(id);
    return id;
  }

  admit(spec: JobSpec, secret: string, containerName: string): boolean {
    const now = this.clock.now();
    const result = this.stmt(
      `INSERT INTO jobs (id, spec, secret, state, container_name, received_at, updated_at)
         VALUES (?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    ).run(spec.id, JSON.stringify(spec), secret, containerName, now, now);
    if (result.changes === 1) this.log.info({ jobId: spec.id, to: 'pending' }, 'job received');
    return result.changes === 1;
  }

  rememberRejected(id: string, delivery: NewDelivery | undefined): { delivery: Delivery | undefined } | undefined {
    const decision = onRejected();
    return this.inTransaction(() => {
      const now = this.clock.now();
      // Stored as pending and moved through the table like any other ending, in one transaction.
      const inserted = this.stmt(
        `INSERT INTO jobs (id, spec, secret, state, container_name, received_at, updated_at)
           VALUES (?, '{}', '', 'pending', '', ?, ?) ON CONFLICT (id) DO NOTHING`,
      ).run(id, now, now);
      if (inserted.changes === 0) return undefined;
      this.applyTransition(id, decision.to, { outcome: decision.outcome });
      return { delivery: delivery ? this.insertDelivery(id, delivery, now) : undefined };
    });
  }

  get(id: string): JobRecord | undefined {
    const row = this.stmt<JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
    return row ? this.toJob(row) : undefined;
  }

  listActive(): JobRecord[] {
    return this.stmt<JobRow>("SELECT * FROM jobs WHERE state != 'removed' ORDER BY received_at, rowid")
      .all()
      .map((row) => this.toJob(row));
  }

  transition(id: string, to: JobState, patch: TransitionPatch = {}): JobRecord {
    return this.inTransaction(() => this.applyTransition(id, to, patch));
  }

  recordUpdate(id: string, delivery: NewDelivery, to?: JobState, patch: TransitionPatch = {}): { job: JobRecord; delivery: Delivery } {
    return this.inTransaction(() => {
      const job = to ? this.applyTransition(id, to, patch) : this.mustGet(id);
      const stored = this.insertDelivery(id, delivery, this.clock.now(), patch.lastUpdateAt);
      return { job: patch.lastUpdateAt === undefined ? job : { ...job, lastUpdateAt: patch.lastUpdateAt }, delivery: stored };
    });
  }

  useImage(ref: string, info: ImageInfo, pulled: boolean, at: number): void {
    this.stmt(
      `INSERT INTO images (ref, image_id, digest, size, pulled, last_used_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (ref) DO UPDATE SET image_id = excluded.image_id, digest = excluded.digest, size = excluded.size,
         pulled = MAX(pulled, excluded.pulled), last_used_at = MAX(last_used_at, excluded.last_used_at)`,
    ).run(ref, info.id, info.digest ?? null, info.sizeBytes, pulled ? 1 : 0, at);
  }

  images(): ImageRecord[] {
    return this.stmt<{ ref: string; image_id: string; digest: string | null; size: number; pulled: number; last_used_at: number }>(
      'SELECT * FROM images ORDER BY last_used_at DESC, ref',
    )
      .all()
      .map((r) => ({ ref: r.ref, id: r.image_id, digest: r.digest ?? undefined, sizeBytes: r.size, pulled: r.pulled !== 0, lastUsedAt: r.last_used_at }));
  }

  forgetImage(ref: string): void {
    this.stmt('DELETE FROM images WHERE ref = ?').run(ref);
  }

  recordStart(id: string, startedAt: number): JobRecord | undefined {
    const changed = this.stmt("UPDATE jobs SET started_at = ?, updated_at = ? WHERE id = ? AND state IN ('started', 'running')").run(
      startedAt,
      this.clock.now(),
      id,
    ).changes;
    return changed === 0 ? undefined : this.mustGet(id);
  }

  requestCancel(id: string): JobRecord | undefined {
    return this.inTransaction(() => {
      const now = this.clock.now();
      const changed = this.stmt(
        `UPDATE jobs SET cancel_requested_at = ?, updated_at = ?
           WHERE id = ? AND cancel_requested_at IS NULL AND state IN ('pending', 'creating', 'started', 'running')`,
      ).run(now, now, id).changes;
      if (changed === 0) return undefined;
      const job = this.mustGet(id);
      this.log.info({ jobId: id, state: job.state }, 'cancel requested by the control server');
      return job;
    });
  }

  recordTrace(id: string, trace: TraceIds): void {
    this.stmt('UPDATE jobs SET trace = ? WHERE id = ?').run(JSON.stringify(trace), id);
  }

  private mustGet(id: string): JobRecord {
    const row = this.stmt<JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
    if (!row) throw new Error(`job ${id} is not in the store`);
    return this.toJob(row);
  }

  private applyTransition(id: string, to: JobState, patch: TransitionPatch): JobRecord {
    const current = this.mustGet(id);
    transition(id, current.state, to);
    const now = this.clock.now();
    this.stmt(
      `UPDATE jobs SET state = ?, updated_at = ?,
           container_id = COALESCE(?, container_id),
           outcome = COALESCE(?, outcome),
           started_at = COALESCE(?, started_at),
           stopped_at = CASE WHEN ? = 'stopped' THEN ? ELSE stopped_at END,
           exit_code = COALESCE(?, exit_code), post_hook_due = MAX(post_hook_due, ?)
         WHERE id = ?`,
    ).run(to, now, patch.containerId ?? null, patch.outcome ?? null, patch.startedAt ?? null, to, now, patch.exitCode ?? null, patch.postHookDue ? 1 : 0, id);
    const next = this.mustGet(id);
    this.log.info({ jobId: id, from: current.state, to, ...(patch.outcome ? { outcome: patch.outcome } : {}) }, 'job state');
    return next;
  }

  private insertDelivery(jobId: string, delivery: NewDelivery, now: number, lastUpdateAt?: number): Delivery {
    // One statement: the seq, and the stall clock when a container's update is recorded.
    const { last_seq } = this.stmt<{ last_seq: number }>(
      'UPDATE jobs SET last_seq = last_seq + 1, last_update_at = COALESCE(?, last_update_at) WHERE id = ? RETURNING last_seq',
    ).get(lastUpdateAt ?? null, jobId) ?? { last_seq: 1 };
    const id = randomUUID();
    this.stmt('INSERT INTO deliveries (id, job_id, seq, url, headers, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      id,
      jobId,
      last_seq,
      delivery.url,
      JSON.stringify(delivery.headers),
      delivery.body,
      now,
    );
    return { id, jobId, seq: last_seq, url: delivery.url, headers: delivery.headers, body: delivery.body, createdAt: now, attempts: 0 };
  }

  pendingDeliveries(): Delivery[] {
    return this.stmt<DeliveryRow>('SELECT * FROM deliveries ORDER BY job_id, seq').all().map(toDelivery);
  }

  batch<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) {
        reject(new Error('the store is closed'));
        return;
      }
      this.batched.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushQueued) {
        this.flushQueued = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Commits the queued batch and delivered marks in one transaction. Batched work resolves once it is
   * on disk (one sync off the event loop for all of it, see WalSync); marks once committed: losing one
   * to a power cut only repeats a delivery, which at-least-once allows.
   */
  private flush(): void {
    this.flushQueued = false;
    this.settleTimer?.cancel();
    this.settleTimer = undefined;
    const items = this.batched.splice(0);
    const settled = this.settled.splice(0);
    if (items.length === 0 && settled.length === 0) return;
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.transactional(() => {
        for (const mark of settled) this.stmt('DELETE FROM deliveries WHERE id = ?').run(mark.id);
        for (const item of items) {
          this.inBatchItem = true;
          try {
            // A nested transaction is a savepoint: a failure undoes this item only.
            results.push({ ok: true, value: this.transactional(item.work) });
          } catch (error) {
            results.push({ ok: false, error });
          } finally {
            this.inBatchItem = false;
          }
        }
      });
    } catch (error) {
      for (const item of [...settled, ...items]) item.reject(error);
      return;
    }
    for (const mark of settled) mark.resolve();
    if (items.length === 0) {
      this.wal.maybeCheckpoint();
      return;
    }
    const settle = (): void =>
      items.forEach((item, i) => {
        const result = results[i];
        if (result?.ok) item.resolve(result.value);
        else item.reject(result?.error);
      });
    this.wal.durable().then(settle, (error: unknown) => {
      // Committed but not known to be on disk: the caller must not say it is.
      for (const item of items) item.reject(error);
    });
  }

  /** Waits up to SETTLE_DELAY_MS for a batch to ride along with, so an update costs one disk sync, not two. */
  completeDelivery(id: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.closed) {
        reject(new Error('the store is closed'));
        return;
      }
      this.settled.push({ id, resolve, reject });
      this.settleTimer ??= this.clock.after(SETTLE_DELAY_MS, () => this.flush());
    });
  }

  recordAttempt(id: string, attempts: number, error: string): void {
    this.stmt('UPDATE deliveries SET attempts = ?, last_error = ? WHERE id = ?').run(attempts, error, id);
  }

  markRedacting(id: string): void {
    this.stmt('UPDATE jobs SET redacting = 1 WHERE id = ?').run(id);
  }

  recordPostHook(id: string, at: number, result?: string): void {
    if (result === undefined) this.stmt('UPDATE jobs SET post_hook_started_at = ?, post_hook_ended_at = NULL WHERE id = ?').run(at, id);
    else this.stmt('UPDATE jobs SET post_hook_ended_at = ?, post_hook_result = ? WHERE id = ?').run(at, result, id);
  }

  postHooksOwed(): JobRecord[] {
    return this.stmt<JobRow>('SELECT * FROM jobs WHERE post_hook_due = 1 AND stopped_at IS NOT NULL AND post_hook_ended_at IS NULL ORDER BY stopped_at')
      .all()
      .map((row) => this.toJob(row));
  }

  purgeRemoved(before: number): number {
    return this.stmt(
      `DELETE FROM jobs WHERE state = 'removed' AND updated_at < ?
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = jobs.id)`,
    ).run(before).changes;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    try {
      // SQLite's own synced checkpoint: the agent is stopping, so a blocking sync harms no one.
      this.wal.closeNow();
    } finally {
      this.db.close();
      this.unlock();
    }
  }
}
