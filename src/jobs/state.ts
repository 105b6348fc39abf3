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
 */
export type JobState = 'pending' | 'creating' | 'started' | 'running' | 'completed' | 'stopped' | 'removed';

/** How a job ended. `succeeded` is the container's own `completed`; the others are reported by the agent. */
export type Outcome =
  | 'succeeded'
  | 'failed'
  | 'oom-killed'
  | 'timed-out'
  | 'pull-failed'
  | 'start-failed'
  | 'invalid'
  | 'agent-shutdown'
  | 'lost';

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
