/**
 * A JobStore in memory, for unit tests of the scheduler, the runner and the supervisor. It keeps
 * the same contract as the SQLite store (the same transition table, per-job seq, rollback of a
 * failed write) but nothing survives the process. `failWrites` makes every write throw, as a
 * full or locked disk would.
 */
import { randomUUID } from 'node:crypto';
import type { JobSpec } from '../shared/job-spec.ts';
import { onRejected, transition, type JobState } from './state.ts';
import type { Delivery, ImageRecord, JobRecord, JobStore, NewDelivery, TraceIds, TransitionPatch } from './store.ts';
import type { ImageInfo } from '../shared/engine-facts.ts';

interface Snapshot {
  readonly jobs: Map<string, JobRecord>;
  readonly seqs: Map<string, number>;
  readonly deliveries: Map<string, Delivery>;
}

export class MemoryStore implements JobStore {
  readonly agentId: string;
  /** Every state change, as `id from→to`, in order. */
  readonly transitions: string[] = [];
  failWrites = false;
  private jobs = new Map<string, JobRecord>();
  private seqs = new Map<string, number>();
  private deliveries = new Map<string, Delivery>();
  private readonly now: () => number;
  private closed = false;

  constructor(options: { agentId?: string; now?: () => number } = {}) {
    this.agentId = options.agentId ?? 'memory-agent';
    this.now = options.now ?? Date.now;
  }

  /** Runs `work` atomically: a throw restores everything it changed. */
  private write<T>(work: () => T): T {
    if (this.closed) throw new Error('the store is closed');
    if (this.failWrites) throw new Error('SQLITE_FULL: database or disk is full');
    const before: Snapshot = { jobs: new Map(this.jobs), seqs: new Map(this.seqs), deliveries: new Map(this.deliveries) };
    const seen = this.transitions.length;
    try {
      return work();
    } catch (err) {
      ({ jobs: this.jobs, seqs: this.seqs, deliveries: this.deliveries } = before);
      this.transitions.length = seen;
      throw err;
    }
  }

  admit(spec: JobSpec, secret: string, containerName: string): boolean {
    return this.write(() => {
      if (this.jobs.has(spec.id)) return false;
      const now = this.now();
      this.jobs.set(spec.id, {
        id: spec.id,
        spec,
        secret,
        state: 'pending',
        containerName,
        containerId: null,
        outcome: null,
        receivedAt: now,
        startedAt: null,
        stoppedAt: null,
        updatedAt: now,
        cancelRequestedAt: null,
        lastUpdateAt: null,
        trace: null,
        exitCode: null,
        postHookDue: false,
        postHookStartedAt: null,
        postHookEndedAt: null,
        postHookResult: null,
        redacting: false,
      });
      return true;
    });
  }

  rememberRejected(id: string, delivery: NewDelivery | undefined): { delivery: Delivery | undefined } | undefined {
    if (this.jobs.has(id)) return undefined;
    return this.write(() => {
      this.admit({ id, image: '', body: null, callbackUrl: '' }, '', '');
      const decision = onRejected();
      this.apply(id, decision.to, { outcome: decision.outcome });
      return { delivery: delivery ? this.insertDelivery(id, delivery) : undefined };
    });
  }

  get(id: string): JobRecord | undefined {
    return this.jobs.get(id);
  }

  listActive(): JobRecord[] {
    return [...this.jobs.values()].filter((j) => j.state !== 'removed');
  }

  transition(id: string, to: JobState, patch: TransitionPatch = {}): JobRecord {
    return this.write(() => this.apply(id, to, patch));
  }

  recordUpdate(id: string, delivery: NewDelivery, to?: JobState, patch: TransitionPatch = {}): { job: JobRecord; delivery: Delivery } {
    return this.write(() => {
      let job = to ? this.apply(id, to, patch) : this.mustGet(id);
      if (patch.lastUpdateAt !== undefined) {
        job = { ...job, lastUpdateAt: patch.lastUpdateAt };
        this.jobs.set(id, job);
      }
      return { job, delivery: this.insertDelivery(id, delivery) };
    });
  }

  private readonly imageRecords = new Map<string, ImageRecord>();

  useImage(ref: string, info: ImageInfo, pulled: boolean, at: number): void {
    const known = this.imageRecords.get(ref);
    this.imageRecords.set(ref, { ref, ...info, pulled: pulled || (known?.pulled ?? false), lastUsedAt: Math.max(at, known?.lastUsedAt ?? 0) });
  }

  images(): ImageRecord[] {
    return [...this.imageRecords.values()].sort((a, b) => b.lastUsedAt - a.lastUsedAt || (a.ref < b.ref ? -1 : 1));
  }

  forgetImage(ref: string): void {
    this.imageRecords.delete(ref);
  }

  durable(): Promise<void> {
    return this.closed ? Promise.reject(new Error('the store is closed')) : Promise.resolve();
  }

  recordStart(id: string, startedAt: number): JobRecord | undefined {
    const job = this.jobs.get(id);
    if (!job || (job.state !== 'started' && job.state !== 'running')) return undefined;
    const next = { ...job, startedAt, updatedAt: this.now() };
    this.jobs.set(id, next);
    return next;
  }

  recordTrace(id: string, trace: TraceIds): void {
    this.write(() => {
      const job = this.mustGet(id);
      this.jobs.set(id, { ...job, trace });
    });
  }

  requestCancel(id: string): JobRecord | undefined {
    return this.write(() => {
      const job = this.jobs.get(id);
      if (!job || job.cancelRequestedAt !== null || !['pending', 'creating', 'started', 'running'].includes(job.state)) return undefined;
      const next = { ...job, cancelRequestedAt: this.now(), updatedAt: this.now() };
      this.jobs.set(id, next);
      return next;
    });
  }

  async batch<T>(work: () => T): Promise<T> {
    // Like the SQLite store, the write happens on a later turn of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.write(work);
  }

  pendingDeliveries(): Delivery[] {
    return [...this.deliveries.values()].sort((a, b) => (a.jobId === b.jobId ? a.seq - b.seq : a.jobId < b.jobId ? -1 : 1));
  }

  completeDelivery(id: string): Promise<void> {
    return this.batch(() => void this.deliveries.delete(id));
  }

  recordAttempt(id: string, attempts: number): void {
    const d = this.deliveries.get(id);
    if (d) this.deliveries.set(id, { ...d, attempts });
  }

  markRedacting(id: string): void {
    const job = this.jobs.get(id);
    if (job) this.jobs.set(id, { ...job, redacting: true });
  }

  recordPostHook(id: string, at: number, result?: string): void {
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.set(
      id,
      result === undefined ? { ...job, postHookStartedAt: at, postHookEndedAt: null } : { ...job, postHookEndedAt: at, postHookResult: result },
    );
  }

  postHooksOwed(): JobRecord[] {
    return [...this.jobs.values()].filter((job) => job.postHookDue && job.stoppedAt !== null && job.postHookEndedAt === null);
  }

  purgeRemoved(before: number): number {
    let purged = 0;
    const waiting = new Set([...this.deliveries.values()].map((d) => d.jobId));
    for (const job of [...this.jobs.values()]) {
      if (job.state === 'removed' && job.updatedAt < before && !waiting.has(job.id)) {
        this.jobs.delete(job.id);
        purged++;
      }
    }
    return purged;
  }

  close(): void {
    this.closed = true;
  }

  private mustGet(id: string): JobRecord {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`job ${id} is not in the store`);
    return job;
  }

  private apply(id: string, to: JobState, patch: TransitionPatch): JobRecord {
    const current = this.mustGet(id);
    transition(id, current.state, to);
    const now = this.now();
    const next: JobRecord = {
      ...current,
      state: to,
      updatedAt: now,
      containerId: patch.containerId ?? current.containerId,
      outcome: patch.outcome ?? current.outcome,
      startedAt: patch.startedAt ?? current.startedAt,
      stoppedAt: to === 'stopped' ? now : current.stoppedAt,
      exitCode: patch.exitCode ?? current.exitCode,
      postHookDue: current.postHookDue || patch.postHookDue === true,
    };
    this.jobs.set(id, next);
    this.transitions.push(`${id} ${current.state}→${to}`);
    return next;
  }

  private insertDelivery(jobId: string, delivery: NewDelivery): Delivery {
    const seq = (this.seqs.get(jobId) ?? 0) + 1;
    this.seqs.set(jobId, seq);
    const stored: Delivery = {
      id: randomUUID(),
      jobId,
      seq,
      url: delivery.url,
      headers: delivery.headers,
      body: delivery.body,
      createdAt: this.now(),
      attempts: 0,
    };
    this.deliveries.set(stored.id, stored);
    return stored;
  }
}
