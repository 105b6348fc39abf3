import type { JobSpec } from '../shared/job-spec.ts';
import type { Delivery, NewDelivery } from '../shared/delivery.ts';
import type { ImageInfo, ImageRecord } from '../shared/engine-facts.ts';

export type { ImageRecord };
import type { TraceIds } from '../shared/trace-ids.ts';
import type { JobState, Outcome } from './state.ts';

export type { Delivery, NewDelivery, TraceIds };

export interface JobRecord {
  readonly id: string;
  readonly spec: JobSpec;
  /** Per-job secret the container must present on the job API. */
  readonly secret: string;
  readonly state: JobState;
  readonly containerName: string;
  readonly containerId: string | null;
  readonly outcome: Outcome | null;
  readonly receivedAt: number;
  /** When the container started: the completion timeout runs from here, across restarts. */
  readonly startedAt: number | null;
  /** When the job reached `stopped`: the removal delay runs from here. */
  readonly stoppedAt: number | null;
  /** When the control server's cancel was stored; the grace period runs from here, across restarts. */
  readonly cancelRequestedAt: number | null;
  /** When the container's last update was accepted: the stall timeout runs from here (or from startedAt). */
  readonly lastUpdateAt: number | null;
  /** Its trace's ids, once tracing began it (src/tracing/); null without tracing. */
  readonly trace: TraceIds | null;
  readonly updatedAt: number;
  /** The container's exit code, when the agent ended the job on its exit. */
  readonly exitCode: number | null;
  /** A `post_job` hook is owed once the job is stopped (set at its launch when one is configured). */
  readonly postHookDue: boolean;
  /** When its post_job hook last started and ended: started without an end means it was interrupted. */
  readonly postHookStartedAt: number | null;
  readonly postHookEndedAt: number | null;
  /** The hook's result as `x-foreman-post-job-hook` carries it. */
  readonly postHookResult: string | null;
  /** The job added values to hide through the job API (kept in memory only, like its secrets). */
  readonly redacting: boolean;
}

export interface TransitionPatch {
  readonly containerId?: string;
  readonly outcome?: Outcome;
  readonly startedAt?: number;
  /** When the container's update was accepted; `recordUpdate` stores it with the delivery, also when the state does not change. */
  readonly lastUpdateAt?: number;
  readonly exitCode?: number | null;
  /** Marks the job as owing a post_job hook once it is stopped. */
  readonly postHookDue?: boolean;
}

/**
 * Everything the agent remembers, behind one interface. Every state change goes through
 * `transition` (or `recordUpdate`), which enforces the state machine and logs it.
 * A write is committed when the call returns (a killed agent keeps it) and on disk, safe from a
 * power loss too, once `durable()` resolves after it; `batch` resolves only then. Nothing leaves
 * the host before it is on disk: a container's update is answered, and a delivery sent, after
 * `durable()`. A failed write throws and changes nothing.
 */
export interface JobStore {
  /** Stable id of this agent, created on first use. */
  readonly agentId: string;
  /** Stores a new pending job; false when the id is tracked or remembered already. */
  admit(spec: JobSpec, secret: string, containerName: string): boolean;
  /**
   * Remembers a job id that was rejected on arrival, with an optional report to send.
   * Undefined when the id is known already; otherwise the queued report, if any.
   */
  rememberRejected(id: string, delivery: NewDelivery | undefined): { delivery: Delivery | undefined } | undefined;
  get(id: string): JobRecord | undefined;
  /** Jobs not yet removed, oldest first. */
  listActive(): JobRecord[];
  transition(id: string, to: JobState, patch?: TransitionPatch): JobRecord;
  /**
   * The engine says the job's container runs: its completion and stall clocks count from `startedAt`.
   * The job stays in its state; undefined when it is no longer `started` or `running`.
   */
  recordStart(id: string, startedAt: number): JobRecord | undefined;
  /**
   * Stores a cancel for a job that has not ended. Undefined when there is nothing to cancel (no such
   * job, it ended, or a cancel is stored already); otherwise the job with `cancelRequestedAt` set.
   */
  requestCancel(id: string): JobRecord | undefined;
  /** Keeps the ids of the job's trace with it (committed on return, like every write). */
  recordTrace(id: string, trace: TraceIds): void;
  /** Atomically moves the job (when `to` is given) and queues a delivery. */
  recordUpdate(id: string, delivery: NewDelivery, to?: JobState, patch?: TransitionPatch): { job: JobRecord; delivery: Delivery };
  /**
   * Runs `work` in a transaction shared with every other `batch` call of the same event-loop
   * turn. Resolves once it is on disk, by a sync shared with whatever else committed meanwhile
   * (group commit); a `work` that throws rolls back only its own changes.
   */
  batch<T>(work: () => T): Promise<T>;
  /** Records that a job used the image (`pulled`: this agent pulled it, kept once set). */
  useImage(ref: string, info: ImageInfo, pulled: boolean, at: number): void;
  /** The images jobs used, most recently used first. */
  images(): ImageRecord[];
  forgetImage(ref: string): void;
  /** Resolves once every write made so far is on disk (one shared sync off the event loop). */
  durable(): Promise<void>;
  /** Undelivered callbacks, ordered by job then seq. */
  pendingDeliveries(): Delivery[];
  /** Deletes a settled delivery (batched: losing it to a crash only means a repeat delivery). */
  completeDelivery(id: string): Promise<void>;
  recordAttempt(id: string, attempts: number, error: string): void;
  /** Marks a job as having added values to hide (the values themselves are never stored). */
  markRedacting(id: string): void;
  /** Records a post_job hook's start, or its end with its result. */
  recordPostHook(id: string, at: number, result?: string): void;
  /** Stopped or removed jobs that owe a post_job hook not yet ended (never ran, or interrupted). */
  postHooksOwed(): JobRecord[];
  /** Forgets removed jobs last touched before `before`; returns how many. */
  purgeRemoved(before: number): number;
  close(): void;
}
