/**
 * What the agent says when it ends a job: the `reason` and `message` of each report (the outcome
 * itself comes from the decisions in src/jobs/state.ts), and whether the container's log tail goes with it.
 */
import type { Ending } from '../../callbacks/messages.ts';
import { ExecutorJobError } from '../../executor/executor.ts';
import type { JobState, LaunchFailure, Outcome } from '../../jobs/state.ts';
import { PreJobHookError } from './hooks.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import { redactValues } from '../../shared/redact.ts';

export type EndDetails = Omit<Ending, 'outcome' | 'logs'> & { readonly includeLogs?: boolean };

/** Details by the outcome decided and the state it was decided in. */
export type DetailsFor = (outcome: Outcome, from: JobState) => EndDetails;

const CANCELED_BEFORE_START: Partial<Record<JobState, string>> = {
  pending: 'the control server canceled the job before it started',
  creating: 'the control server canceled the job before its container started',
};

function canceled(from: JobState, exitCode: number | null): EndDetails {
  const before = CANCELED_BEFORE_START[from];
  if (before) return { reason: 'cancel', message: before };
  return {
    reason: 'cancel',
    message: `the control server canceled the job; its container exited with code ${exitCode ?? 'unknown'}`,
    exitCode,
    includeLogs: true,
  };
}

/** The container exited by itself, was OOM-killed, or exited after a cancel. */
export function exitDetails(exitCode: number | null): DetailsFor {
  return (outcome, from) => {
    if (outcome === 'canceled') return canceled(from, exitCode);
    if (outcome === 'oom-killed') return { reason: 'oom', message: 'the container was killed because it ran out of memory', exitCode, includeLogs: true };
    return { reason: 'exit', message: `the container exited with code ${exitCode ?? 'unknown'} without reporting completed`, exitCode, includeLogs: true };
  };
}

export function cancelDetails(): DetailsFor {
  return (_outcome, from) => canceled(from, null);
}

/**
 * A failed pull, create or start: `pull` tells the decision which outcome it is. The engine's message
 * may echo an env entry (an empty name, a NUL in a value), so `secrets` are hidden in it. A failed pre_job hook
 * ends the job `hook-failed` with the hook's output tail.
 */
export function launchFailedDetails(err: unknown, secrets: Iterable<string> = []): { failed: LaunchFailure; details: DetailsFor } {
  if (err instanceof PreJobHookError) {
    // The hook's last lines go in the message: no container ran, so there is no log tail.
    const tail = err.tail.length > 0 ? `; its last output:\n${err.tail.join('\n')}` : '';
    const message = redactValues(`${err.message}${tail}`, secrets);
    return { failed: 'hook', details: () => ({ reason: 'hook', message }) };
  }
  const pull = err instanceof ExecutorJobError && err.kind === 'pull';
  const message = redactValues(err instanceof ExecutorJobError ? err.message : `the Docker engine did not answer: ${describeHttpError(err)}`, secrets);
  return { failed: pull ? 'pull' : 'start', details: () => ({ reason: pull ? 'pull' : 'start', message, includeLogs: true }) };
}

/** `own`: the job set its own `timeout`, which the message names instead of `job_completion_timeout`. */
export function timeoutDetails(what: string, timeoutMs: number, own = false): DetailsFor {
  const limit = own ? 'its timeout' : 'job_completion_timeout';
  return () => ({ reason: 'timeout', message: `${what} within ${limit} (${timeoutMs} ms)`, includeLogs: true });
}

export function stallDetails(stallMs: number): DetailsFor {
  return () => ({ reason: 'stall', message: `the job sent no update within its stall timeout (${stallMs} ms)`, includeLogs: true });
}

export function missingDetails(): DetailsFor {
  return (outcome, from) =>
    outcome === 'canceled' ? canceled(from, null) : { reason: 'container-vanished', message: 'the job container disappeared while the agent was not watching' };
}

/** `secretsLost`: a job with secrets found live after a restart, whose values were in the last run's memory only. */
export function shutdownDetails(secretsLost = false): DetailsFor {
  return (outcome, from) => {
    // No log tail: the values to hide in it went with the last run's memory.
    if (secretsLost && outcome === 'canceled') return { ...canceled(from, null), includeLogs: false };
    if (secretsLost) {
      const message = 'the agent restarted while the job was queued or running; its secrets are kept in memory only, so the job was ended';
      return { reason: 'shutdown', message };
    }
    if (outcome === 'canceled')
      return { reason: 'cancel', message: 'the control server canceled the job; the agent stopped its container while shutting down', includeLogs: true };
    if (from === 'pending') return { reason: 'shutdown', message: 'the agent shut down before the job could start' };
    if (from === 'creating') return { reason: 'shutdown', message: 'the agent shut down before the job container started' };
    return { reason: 'shutdown', message: 'the agent shut down while the job was running; its container was stopped', includeLogs: true };
  };
}
