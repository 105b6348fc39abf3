import type { JobRecord } from '../../jobs/store.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import type { JobTrace } from '../../tracing/job-trace.ts';
import type { RunnerContext } from './context.ts';

/**
 * The job's trace when tracing is on: continued from the ids stored with it, or begun now and its ids stored,
 * so that after a restart its spans go on in the same trace. Never throws: a job runs untraced rather than not at all.
 */
export function traceOf(ctx: Pick<RunnerContext, 'tracing' | 'store' | 'log'>, job: JobRecord): JobTrace | undefined {
  if (!ctx.tracing) return undefined;
  try {
    const trace = ctx.tracing.forJob(job);
    if (trace.fresh) ctx.store.recordTrace(job.id, trace.ids);
    return trace;
  } catch (err) {
    ctx.log.warn({ jobId: job.id, reason: describeHttpError(err) }, 'could not trace the job (its spans may be missing after a restart)');
    return undefined;
  }
}
