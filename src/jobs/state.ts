import type { Outcome } from '../protocol/wire.ts';

/**
 * The life of one job on this agent.
 *
 *   pending    received and stored; waiting for a free slot
 *   creating   holds a slot; the image is being pulled and the container created and started
 *   started    the container is running but has not fetched its job yet
 *   running    the container fetched its job (GET) or reported `running`
 *   completed  the container reported `completed`; it is being stopped
 *   stopped    the container is stopped (or never ran); removal is scheduled
 *   removed    nothing is left in the engine; the id is remembered for the retention window
 *
 * A slot is held from `creating` until `stopped`. Failure paths skip ahead: a job that cannot
 * start, exits, times out or is stopped at shutdown goes straight to `stopped` with an outcome.
 *
 * The table of legal moves and the decisions below (which event leads where) live together
 * here; the runner carries them out and the store enforces the table on every write.
 */
export type JobState = 'pending' | 'creating' | 'started' | 'running' | 'completed' | 'stopped' | 'removed';

/** How a job ended (the protocol's `OUTCOMES`). `succeeded` is the container's own `completed`; the others are reported by the agent. */
export type { Outcome } from '../protocol/wire.ts';

const allowed: Readonly<Record<JobState, readonly JobState[]>> = {
  // pending → removed: the job is dropped before it ever ran (shutdown, or invalid on arrival)
  pending: ['creating', 'removed'],
  // creating → pending: recovery found no container, so the job never ran and may start again
  creating: ['started', 'stopped', 'pending'],
  started: ['running', 'completed', 'stopped'],
  running: ['completed', 'stopped'],
  completed: ['stopped'],
  stopped: ['removed'],
  removed: [],
};

export class IllegalTransitionError extends Error {
  constructor(
    readonly jobId: string,
    readonly from: JobState,
    readonly to: JobState,
  ) {
    super(`job ${jobId}: illegal transition ${from} → ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

/** The one transition function: returns `to` when the move is legal, throws otherwise. */
export function transition(jobId: string, from: JobState, to: JobState): JobState {
  if (!allowed[from].includes(to)) throw new IllegalTransitionError(jobId, from, to);
  return to;
}

/** States in which the job holds one of `max_concurrent_jobs` slots. */
export function holdsSlot(state: JobState): boolean {
  return state === 'creating' || state === 'started' || state === 'running' || state === 'completed';
}

/** States after which the container may no longer report. */
export function hasEnded(state: JobState): boolean {
  return state === 'completed' || state === 'stopped' || state === 'removed';
}

// ---- decisions: event → what happens next ------------------------------------------------

/** What the agent does about an event, given the job's state. */
export type Decision =
  /** Nothing: the event came too late or does not apply. */
  | { readonly kind: 'ignore' }
  /** Move to `to`; no report. */
  | { readonly kind: 'move'; readonly to: JobState }
  /** The container reported `completed` and is being stopped: finish that (stop it, then `stopped`). */
  | { readonly kind: 'finish-stop' }
  /** The agent ends the job: report `outcome`, move to `to` (`stopped`, or `removed` before it ran), stop the container. */
  | { readonly kind: 'end'; readonly outcome: Outcome; readonly to: 'stopped' | 'removed' }
  /** Put the job back in the queue: it never ran. */
  | { readonly kind: 'requeue' }
  /** Nothing of the job is left in the engine: move on to `removed` without a report. */
  | { readonly kind: 'forget' }
  /** Canceled while its container runs: send the stop signal now, kill after the grace period; the exit ends it `canceled`. */
  | { readonly kind: 'signal-stop' };

const IGNORE: Decision = { kind: 'ignore' };

type EndDecision = Extract<Decision, { kind: 'end' }>;

function end(state: JobState, outcome: Outcome): EndDecision {
  return { kind: 'end', outcome, to: state === 'pending' ? 'removed' : 'stopped' };
}

/** The container exited (or the engine says it is not running). `canceling`: a cancel was requested. */
export function onContainerExited(state: JobState, oomKilled: boolean, canceling = false): Decision {
  if (state === 'completed') return { kind: 'move', to: 'stopped' };
  if (state === 'started' || state === 'running') return end(state, oomKilled ? 'oom-killed' : canceling ? 'canceled' : 'failed');
  return IGNORE;
}

/** The control server canceled the job: a queued or launching one is dropped, a running one stopped. */
export function onCancel(state: JobState): Decision {
  if (state === 'pending' || state === 'creating') return end(state, 'canceled');
  if (state === 'started' || state === 'running') return { kind: 'signal-stop' };
  return IGNORE;
}

/** No update accepted from the container within its stall timeout. */
export function onStall(state: JobState): Decision {
  return state === 'started' || state === 'running' ? end(state, 'stalled') : IGNORE;
}

/** The completion timeout fired: for a job still launching, or one whose container runs. */
export function onTimeout(state: JobState): Decision {
  return state === 'creating' || state === 'started' || state === 'running' ? end(state, 'timed-out') : IGNORE;
}

/** What part of a launch failed: the `pre_job` hook, the pull, or the create or start. */
export type LaunchFailure = 'hook' | 'pull' | 'start';

const LAUNCH_OUTCOMES: Readonly<Record<LaunchFailure, Outcome>> = { hook: 'hook-failed', pull: 'pull-failed', start: 'start-failed' };

/** The pre_job hook, pulling, creating or starting failed for a reason of the job's own (or the engine did not answer). */
export function onLaunchFailed(state: JobState, failed: LaunchFailure): Decision {
  return hasEnded(state) ? IGNORE : end(state, LAUNCH_OUTCOMES[failed]);
}

/** Reconciliation found no container for the job in the engine. */
export function onContainerMissing(state: JobState, canceling = false): Decision {
  switch (state) {
    case 'creating':
      // The container was never made, so the job never ran: it may start again, unless canceled.
      return canceling ? end(state, 'canceled') : { kind: 'requeue' };
    case 'started':
    case 'running':
      return end(state, canceling ? 'canceled' : 'lost');
    case 'completed':
    case 'stopped':
      // Already reported; only the bookkeeping is left.
      return { kind: 'forget' };
    case 'pending':
      return canceling ? end(state, 'canceled') : { kind: 'requeue' };
    case 'removed':
      return IGNORE;
  }
}

/** The agent is shutting down; a job whose cancel is under way ends `canceled` all the same. */
export function onShutdown(state: JobState, canceling = false): Decision {
  if (state === 'completed') return { kind: 'finish-stop' };
  if (state === 'pending' || state === 'creating' || state === 'started' || state === 'running') return end(state, canceling ? 'canceled' : 'agent-shutdown');
  return IGNORE;
}

/**
 * The agent shuts down with `detach_on_terminate`: a job is left as it is, stored, for the next agent
 * to re-adopt; only a completed one finishes stopping, and one being canceled is finished off.
 */
export function onDetach(state: JobState, canceling = false): Decision {
  if (state === 'completed') return { kind: 'finish-stop' };
  if (canceling && (state === 'started' || state === 'running')) return end(state, 'canceled');
  return IGNORE;
}

/** A job that failed validation on arrival: remembered as removed, reported `invalid`. */
export function onRejected(): EndDecision {
  return end('pending', 'invalid');
}

/** What a container's GET of its job does. */
export type FetchDecision = { readonly kind: 'refuse-ended' } | { readonly kind: 'serve'; readonly to?: JobState };

export function onFetch(state: JobState): FetchDecision {
  if (hasEnded(state)) return { kind: 'refuse-ended' };
  // The first fetch marks the job running; later ones change nothing.
  return state === 'started' ? { kind: 'serve', to: 'running' } : { kind: 'serve' };
}

/** What a container's PUT of a status update does. */
export type UpdateDecision =
  { readonly kind: 'refuse-ended' } | { readonly kind: 'refuse-not-running' } | { readonly kind: 'accept'; readonly to?: JobState; readonly outcome?: Outcome };

/** A `completed` during a cancel's grace period is the job's last update, and its outcome is `canceled`. */
export function onUpdate(state: JobState, status: 'running' | 'completed', canceling = false): UpdateDecision {
  if (hasEnded(state)) return { kind: 'refuse-ended' };
  if (state !== 'started' && state !== 'running') return { kind: 'refuse-not-running' };
  if (status === 'completed') return { kind: 'accept', to: 'completed', outcome: canceling ? 'canceled' : 'succeeded' };
  return state === 'started' ? { kind: 'accept', to: 'running' } : { kind: 'accept' };
}

// ---- re-adoption: what a restarted agent (or one back from an engine outage) does with each stored job ----

/** What the engine holds for a job's container: nothing, created but never started, running, or exited. */
export type ContainerPhase = 'missing' | 'created' | 'running' | 'exited';

/** What reconciling does with one stored job. */
export type ReadoptDecision =
  /** Nothing: the job is gone. */
  | { readonly kind: 'ignore' }
  /** It never started: back into the queue. */
  | { readonly kind: 'requeue' }
  /** A cancel stored before the restart, of a job that never started: it ends `canceled` (see `onCancel`). */
  | { readonly kind: 'cancel' }
  /** Its container is gone: `onContainerMissing` says how it ends. */
  | { readonly kind: 'missing' }
  /** Stopped and already reported: remove its container when its time comes. */
  | { readonly kind: 'resume-removal' }
  /** Created and never started (the agent stopped between the two): start it now. */
  | { readonly kind: 'start'; readonly recordStart: boolean }
  /** It exited while the agent was away: `onContainerExited` says how it ends. */
  | { readonly kind: 'exited'; readonly recordStart: boolean }
  /** It reported `completed` and still runs: finish stopping it. */
  | { readonly kind: 'finish-stop' }
  /** It runs and a cancel was stored: go on with the cancel (`onCancel`: stop signal, then kill). */
  | { readonly kind: 'stop-canceled' }
  /** It runs: take it back, with its timeouts counted from its start. */
  | { readonly kind: 'adopt'; readonly recordStart: boolean };

/** Whether `onReadopt` needs to know the container's phase: for jobs that never reached the engine it does not. */
export function readoptLooksAtContainer(state: JobState, canceling: boolean): boolean {
  if (state === 'removed' || state === 'pending') return false;
  return !(state === 'creating' && canceling);
}

/**
 * A stored job meets what the engine holds for it. `recordStart`: the store still says `creating`
 * although the container exists, so `started` is recorded first (with the container's id and start).
 */
export function onReadopt(state: JobState, container: ContainerPhase, canceling: boolean): ReadoptDecision {
  if (state === 'removed') return { kind: 'ignore' };
  if (state === 'pending') return canceling ? { kind: 'cancel' } : { kind: 'requeue' };
  if (state === 'creating' && canceling) return { kind: 'cancel' };
  if (container === 'missing') return { kind: 'missing' };
  if (state === 'stopped') return { kind: 'resume-removal' };
  const recordStart = state === 'creating';
  if (container === 'created' && (state === 'creating' || state === 'started')) return { kind: 'start', recordStart };
  if (container !== 'running') return { kind: 'exited', recordStart };
  if (state === 'completed') return { kind: 'finish-stop' };
  if (canceling) return { kind: 'stop-canceled' };
  return { kind: 'adopt', recordStart };
}
