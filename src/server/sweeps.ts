// The control server's own timers: the lost-agent check and retention. Each run is scheduled when the last ends
// (no interval); with several instances on one PostgreSQL database each runs under an advisory lock, so one instance
// does each sweep. Retention deletes a bounded batch per transaction and yields between batches, so hand-out goes on.
import type { Clock, Timer } from '../shared/clock.ts';
import type { Store } from './store.ts';

export interface SweepOptions {
  /** An agent with no poll for this long is lost and its unfinished jobs are requeued; 0: never. */
  agentTimeoutMs: number;
  /** Ended jobs and their logs are deleted this long after they ended; 0: kept forever. */
  retentionMs: number;
  /** How often retention looks for jobs to delete. */
  retentionIntervalMs: number;
}

export interface SweepLog {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Jobs looked at per retention batch, and log lines deleted per transaction. */
const JOBS_PER_BATCH = 100;
const LOG_LINES_PER_DELETE = 5000;

export interface Sweeps {
  /** Runs one retention pass now (tests; the timer runs them otherwise); the number of jobs deleted. */
  prune(): Promise<number>;
  close(): Promise<void>;
}

export function startSweeps(store: Store, options: SweepOptions, clock: Clock, log: SweepLog): Sweeps {
  const startedAt = clock.now();
  let stopped = false;
  let lostTimer: Timer | undefined;
  let retentionTimer: Timer | undefined;
  const running = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    running.add(work);
    void work.finally(() => running.delete(work)).catch(() => undefined);
    return work;
  };

  const lostAgents = async () => {
    const now = clock.now();
    const swept = await store.sweepLostAgents(now - options.agentTimeoutMs, startedAt, now);
    for (const agent of swept?.agents ?? []) log.warn({ agent: agent.id }, `agent sent no poll for ${options.agentTimeoutMs} ms; considered lost`);
    for (const job of swept?.jobs ?? []) log.warn({ job: job.id, status: job.status }, 'took the job back from a lost agent');
  };
  const scheduleLost = () => {
    if (options.agentTimeoutMs === 0 || stopped) return;
    lostTimer = clock.after(
      Math.min(Math.max(Math.floor(options.agentTimeoutMs / 3), 20), 5_000),
      () => {
        // A busy database is tried again at the next check.
        void track(lostAgents())
          .catch((error: unknown) => log.error({ err: error }, 'lost-agent check failed'))
          .finally(scheduleLost);
      },
      { unref: true },
    );
  };

  const prune = async (): Promise<number> => {
    let deleted = 0;
    for (;;) {
      if (stopped) return deleted;
      const batch = await store.prunable(clock.now() - options.retentionMs, JOBS_PER_BATCH);
      if (batch.length === 0) return deleted;
      for (const job of batch) {
        // A million-line log goes a bounded slice per transaction.
        while (!stopped && (await store.logs.deleteSome(job.seq, LOG_LINES_PER_DELETE)) > 0) await yieldToRequests();
        if (stopped) return deleted;
        // Another instance holding the lock is pruning: leave the rest to it.
        if (!(await store.deleteJob(job.seq))) return deleted;
        deleted++;
        await yieldToRequests();
      }
    }
  };
  const scheduleRetention = () => {
    if (options.retentionMs === 0 || stopped) return;
    retentionTimer = clock.after(
      options.retentionIntervalMs,
      () => {
        void track(prune())
          .then((deleted) => {
            if (deleted > 0) log.info({ deleted }, `deleted ${deleted} jobs that ended more than ${options.retentionMs} ms ago, with their logs`);
          })
          .catch((error: unknown) => log.error({ err: error }, 'retention failed'))
          .finally(scheduleRetention);
      },
      { unref: true },
    );
  };

  scheduleLost();
  scheduleRetention();
  let closing: Promise<void> | undefined;
  return {
    prune: () => track(prune()),
    close: () =>
      (closing ??= (async () => {
        stopped = true;
        lostTimer?.cancel();
        retentionTimer?.cancel();
        await Promise.allSettled([...running]);
      })()),
  };
}

/** Lets requests waiting on the event loop run between two deletes. */
function yieldToRequests(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
