import type { Logger } from 'pino';
import type { ContainerStatus, Executor } from '../executor/executor.ts';
import type { JobStore } from '../jobs/store.ts';
import { describeHttpError } from '../shared/backoff.ts';
import type { Scheduler } from './job/scheduler.ts';

export interface ReconcilerDeps {
  readonly store: JobStore;
  readonly executor: Executor;
  readonly scheduler: Pick<Scheduler, 'track'>;
  readonly log: Logger;
}

/**
 * Brings the store and the engine into agreement after a start and after every engine outage:
 * each job the store still tracks gets its runner and is matched with its container (re-adopted,
 * finished, re-queued or reported lost), and containers this agent has no record of are removed.
 */
export class Reconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(): Promise<void> {
    const { store, executor, scheduler, log } = this.deps;
    // Runners first, before any await: an exit the engine reports meanwhile finds its runner.
    const runs = store.listActive().map((job) => scheduler.track(job.id));
    const containers = await executor.list();
    const byJob = new Map<string, ContainerStatus>();
    for (const c of containers) if (c.jobId !== undefined) byJob.set(c.jobId, c);
    // One job at a time, in arrival order, so re-queued jobs keep their order.
    for (const run of runs) await run.reconcile(byJob.get(run.id));
    const known = new Set(runs.map((run) => run.id));
    for (const c of containers) {
      if (c.jobId !== undefined && known.has(c.jobId)) continue;
      log.warn({ containerId: c.id, jobId: c.jobId }, 'removing a container this agent has no record of');
      await executor.remove(c.id).catch((err: unknown) => log.warn({ containerId: c.id, reason: describeHttpError(err) }, 'could not remove container'));
    }
  }
}
