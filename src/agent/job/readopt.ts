import type { ContainerStatus } from '../../executor/executor.ts';
import { onReadopt, readoptLooksAtContainer } from '../../jobs/state.ts';
import type { JobRecord } from '../../jobs/store.ts';
import { phaseOf } from './container.ts';
import type { RunnerContext } from './context.ts';

/** Said in the usage of a job whose container the agent re-adopted after a restart. */
export const READOPTED_NOTE = 'the agent restarted while the job ran: pidsPeak (and memoryPeakBytes where the engine keeps no high-water mark) count from then';

/** What re-adoption does with one job's runner: each a step the runner carries out on its own parts. */
export interface Readopting {
  readonly id: string;
  readonly ctx: Pick<RunnerContext, 'store' | 'executor' | 'log' | 'clock'>;
  /** The job's trace, continued from its stored ids. */
  continueTrace(job: JobRecord): void;
  /** A job with secrets whose values went with the last run's memory: ended (`agent-shutdown`); undefined otherwise. */
  secretsLost(job: JobRecord, canceling: boolean): Promise<void> | undefined;
  requeue(): void;
  cancel(): Promise<void>;
  /** Its container is gone: the job ends (`lost`), or is canceled when that was asked. */
  missing(canceling: boolean): Promise<void>;
  /** Stopped before the restart: its output is read to the end and its container removed. */
  resumeRemoval(job: JobRecord): void;
  /** The container is there: the job holds its slot again. */
  hold(): void;
  start(containerId: string): Promise<void>;
  /** Its live log is read on, and what it uses is sampled again (when it runs). */
  follow(job: JobRecord, container: ContainerStatus): void;
  exited(containerId: string, exitCode: number | null, oomKilled: boolean): Promise<void>;
  finishStop(): Promise<void>;
  /** It runs on: its timeouts again. */
  adopt(job: JobRecord): void;
}

/**
 * After a restart, brings one job in line with what the engine holds (`listed`: its container in the listing, if
 * any). What each stored state × container state × cancel flag means is `onReadopt` in `src/jobs/state.ts`.
 */
export async function readopt(runner: Readopting, listed: ContainerStatus | undefined): Promise<void> {
  const { store, executor, log, clock } = runner.ctx;
  const job = store.get(runner.id);
  if (!job) return;
  runner.continueTrace(job);
  const canceling = job.cancelRequestedAt !== null;
  const lost = runner.secretsLost(job, canceling);
  if (lost) return lost;
  // The listing may predate a launch that finished while this step waited its turn.
  const looks = readoptLooksAtContainer(job.state, canceling);
  const container = looks ? (listed ?? (job.containerName ? await executor.inspect(job.containerName) : undefined)) : undefined;
  const decision = onReadopt(job.state, phaseOf(container), canceling);
  switch (decision.kind) {
    case 'ignore':
      return;
    case 'requeue':
      return runner.requeue();
    case 'cancel':
      return runner.cancel();
    case 'missing':
      return runner.missing(canceling);
    case 'resume-removal':
      return runner.resumeRemoval(job);
  }
  if (!container) return;
  runner.hold();
  if ('recordStart' in decision && decision.recordStart) {
    store.transition(runner.id, 'started', { containerId: container.id, startedAt: container.startedAt ?? clock.now() });
  }
  if (decision.kind === 'start') return runner.start(container.id);
  const current = store.get(runner.id) ?? job;
  runner.follow(current, container);
  switch (decision.kind) {
    case 'exited':
      return runner.exited(container.id, container.exitCode, container.oomKilled);
    case 'finish-stop':
      return runner.finishStop();
    case 'stop-canceled':
      log.info({ jobId: runner.id, containerId: container.id, state: current.state }, 're-adopted running job container');
      return runner.cancel();
    case 'adopt':
      log.info({ jobId: runner.id, containerId: container.id, state: current.state }, 're-adopted running job container');
      return runner.adopt(current);
  }
}
