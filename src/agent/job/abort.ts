/** Why a runner abandoned its job's launch calls (pull, create, start). */
export type RunnerAbortReason = 'cancel' | 'launch-timeout' | 'shutdown';

const ABORT_MESSAGES: Readonly<Record<RunnerAbortReason, string>> = {
  cancel: 'canceled by the control server',
  'launch-timeout': 'job_completion_timeout passed before the container started',
  shutdown: 'the agent is shutting down',
};

/** The abort reason a runner's signal carries: an Error (engine calls show its message), with the reason to read. */
export class RunnerAbort extends Error {
  constructor(readonly reason: RunnerAbortReason) {
    super(ABORT_MESSAGES[reason]);
    this.name = 'RunnerAbort';
  }
}

/** A runner's abort of its launch calls: the signal they take, and why it was aborted (the first reason stands). */
export class LaunchAbort {
  private readonly controller = new AbortController();

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Why the launch was abandoned, once it was. */
  get reason(): RunnerAbortReason | undefined {
    const reason: unknown = this.controller.signal.reason;
    return this.controller.signal.aborted && reason instanceof RunnerAbort ? reason.reason : undefined;
  }

  abort(reason: RunnerAbortReason): void {
    this.controller.abort(new RunnerAbort(reason));
  }
}
