import { forwardedUpdate } from '../../callbacks/messages.ts';
import type { JobUpdate } from '../../job-api/types.ts';
import { hasEnded, onFetch, onUpdate, type Outcome } from '../../jobs/state.ts';
import type { Delivery, JobRecord, JobStore } from '../../jobs/store.ts';
import type { JobUsage } from '../../protocol/wire.ts';
import type { RunnerContext } from './context.ts';

// A container's own reports through the job API, as store writes. Not queued behind the runner's steps: a
// container's request is answered at once. Each is one store write that checks the state inside it, so a
// timeout or an exit cannot slip in between. The runner calls these and carries out what follows.

/** A container's status update, as the job API received it. */
export type ContainerUpdate = Pick<JobUpdate, 'status' | 'headers' | 'body'>;

/** What became of a container's fetch of its job. */
export type FetchResult = { readonly kind: 'serve' | 'ended'; readonly job: JobRecord } | { readonly kind: 'unknown' };

/** What became of a container's update: stored and queued, or refused and why. */
export type UpdateResult = { readonly kind: 'accepted' } | { readonly kind: 'ended' | 'not-running'; readonly job: JobRecord } | { readonly kind: 'unknown' };

/** The first fetch moves the job to `running`; later ones are plain reads. */
export async function recordFetch(store: JobStore, id: string): Promise<FetchResult> {
  const served = (job: JobRecord | undefined): FetchResult => {
    if (!job) return { kind: 'unknown' };
    return onFetch(job.state).kind === 'refuse-ended' ? { kind: 'ended', job } : { kind: 'serve', job };
  };
  const job = store.get(id);
  const decision = job ? onFetch(job.state) : undefined;
  if (decision?.kind !== 'serve' || !decision.to) return served(job);
  return store.batch(() => {
    const current = store.get(id);
    const now = current ? onFetch(current.state) : undefined;
    return served(now?.kind === 'serve' && now.to ? store.transition(id, now.to) : current);
  });
}

/** Stores an update and its delivery in one group-committed write (resolves once on disk), or says why not. */
export function recordUpdate(
  ctx: Pick<RunnerContext, 'store' | 'agentId'>,
  id: string,
  update: ContainerUpdate,
  at: number,
  usage?: JobUsage,
): Promise<Exclude<UpdateResult, { kind: 'accepted' }> | { kind: 'stored'; delivery: Delivery; outcome: Outcome | undefined }> {
  const { store, agentId } = ctx;
  return store.batch(() => {
    const job = store.get(id);
    if (!job) return { kind: 'unknown' as const };
    const decision = onUpdate(job.state, update.status, job.cancelRequestedAt !== null);
    if (decision.kind === 'refuse-ended') return { kind: 'ended' as const, job };
    if (decision.kind === 'refuse-not-running') return { kind: 'not-running' as const, job };
    const message = forwardedUpdate(
      { jobId: id, agentId, callbackUrl: job.spec.callbackUrl },
      { outcome: decision.outcome, headers: update.headers, body: update.body, usage },
    );
    const patch = decision.outcome ? { outcome: decision.outcome, lastUpdateAt: at } : { lastUpdateAt: at };
    const recorded = store.recordUpdate(id, message, decision.to, patch);
    return { kind: 'stored' as const, delivery: recorded.delivery, outcome: decision.outcome };
  });
}

/** What became of a job's redactions: hidden from now on, or refused and why. */
export type RedactResult =
  | { readonly kind: 'accepted'; readonly count: number }
  | { readonly kind: 'refused'; readonly error: string }
  | { readonly kind: 'ended'; readonly job: JobRecord }
  | { readonly kind: 'unknown' };

/**
 * Values a running job wants hidden from now on: kept in memory with its secrets (the store only marks that the
 * job has some, so a restart that lost them ends the job), and handed to its live log's redactor at once.
 */
export async function recordRedactions(
  ctx: Pick<RunnerContext, 'store' | 'secrets'>,
  id: string,
  values: readonly string[],
  hideInLog: (forms: string[]) => void,
): Promise<RedactResult> {
  const job = ctx.store.get(id);
  if (!job) return { kind: 'unknown' };
  if (hasEnded(job.state)) return { kind: 'ended', job };
  if (!ctx.secrets) return { kind: 'refused', error: 'this agent takes no redactions' };
  const added = ctx.secrets.redact(id, values);
  if ('error' in added) return { kind: 'refused', error: added.error };
  if (!job.redacting) {
    ctx.store.markRedacting(id);
    await ctx.store.durable();
  }
  hideInLog(added.forms);
  return { kind: 'accepted', count: values.length };
}
