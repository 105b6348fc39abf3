import { timingSafeEqual } from 'node:crypto';
import { forwardedUpdate } from '../../callbacks/messages.ts';
import type { ApiReply, JobApiBackend, JobUpdate } from '../../job-api/server.ts';
import { onFetch, onUpdate, type Outcome } from '../../jobs/state.ts';
import type { Delivery, JobRecord, JobStore } from '../../jobs/store.ts';
import type { JobMetrics } from './context.ts';

export interface JobApiBackendDeps {
  readonly store: JobStore;
  readonly agentId: string;
  readonly deliver: (delivery: Delivery) => void;
  /** Told of every stored update, so the job's runner resets its stall clock and, on `completed`, stops the container. */
  readonly accepted: (jobId: string, update: { readonly at: number; readonly completed: boolean }) => void;
  readonly metrics: Pick<JobMetrics, 'jobsEnded'> | undefined;
  readonly now: () => number;
}

const NO_SUCH_JOB: ApiReply = { status: 404, body: { error: 'no such job' } };

function endedReply(job: JobRecord): ApiReply {
  const detail = job.outcome && job.outcome !== 'succeeded' ? ` (${job.outcome})` : '';
  return { status: 409, body: { error: `job already ended${detail}: no further updates are accepted` } };
}

/** What the job API does for containers: checks their secret, serves their job, stores their updates. */
export function createJobApiBackend(deps: JobApiBackendDeps): JobApiBackend {
  const { store } = deps;
  return {
    authorize(id, secret) {
      const job = store.get(id);
      if (!job || job.state === 'removed' || job.secret.length === 0) return false;
      const expected = Buffer.from(job.secret);
      const given = Buffer.from(secret);
      return expected.length === given.length && timingSafeEqual(expected, given);
    },

    async fetchJob(id) {
      const serve = (job: JobRecord | undefined): ApiReply => {
        if (!job) return NO_SUCH_JOB;
        if (onFetch(job.state).kind === 'refuse-ended') return endedReply(job);
        return { status: 200, body: { id: job.id, body: job.spec.body ?? null } };
      };
      const job = store.get(id);
      const decision = job ? onFetch(job.state) : undefined;
      // Only the first fetch writes (started → running); later ones are plain reads.
      if (decision?.kind !== 'serve' || !decision.to) return serve(job);
      return store.batch(() => {
        const current = store.get(id);
        const now = current ? onFetch(current.state) : undefined;
        if (now?.kind === 'serve' && now.to) store.transition(id, now.to);
        return serve(current);
      });
    },

    /** Stores the update and its delivery in one group-committed write, then answers. */
    async updateJob(id, update: JobUpdate) {
      // The state is checked inside the write, so a timeout or exit cannot slip in between.
      const at = deps.now();
      const result = await store.batch((): { reply: ApiReply; delivery?: Delivery; outcome?: Outcome | undefined } => {
        const job = store.get(id);
        if (!job) return { reply: NO_SUCH_JOB };
        const decision = onUpdate(job.state, update.status, job.cancelRequestedAt !== null);
        if (decision.kind === 'refuse-ended') return { reply: endedReply(job) };
        if (decision.kind === 'refuse-not-running') return { reply: { status: 409, body: { error: `job is ${job.state}` } } };
        const message = forwardedUpdate(
          { jobId: id, agentId: deps.agentId, callbackUrl: job.spec.callbackUrl },
          { outcome: decision.outcome, headers: update.headers, body: update.body },
        );
        const patch = decision.outcome ? { outcome: decision.outcome, lastUpdateAt: at } : { lastUpdateAt: at };
        const recorded = store.recordUpdate(id, message, decision.to, patch);
        return { reply: { status: 200, body: { status: 'accepted', progress: update.progress } }, delivery: recorded.delivery, outcome: decision.outcome };
      });
      if (!result.delivery) return result.reply;
      deps.deliver(result.delivery);
      if (result.outcome) deps.metrics?.jobsEnded.inc({ outcome: result.outcome });
      deps.accepted(id, { at, completed: result.outcome !== undefined });
      return result.reply;
    },
  };
}
