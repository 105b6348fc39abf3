import { timingSafeEqual } from 'node:crypto';
import { forwardedUpdate } from '../callbacks/messages.ts';
import type { ApiReply, JobApiBackend, JobUpdate } from '../job-api/server.ts';
import { onFetch, onUpdate } from '../jobs/state.ts';
import type { Delivery, JobRecord, JobStore } from '../jobs/store.ts';
import type { AgentMetrics } from './metrics.ts';

export interface JobApiBackendDeps {
  readonly store: JobStore;
  readonly agentId: string;
  readonly deliver: (delivery: Delivery) => void;
  /** Told once a container's `completed` is stored, so the job's runner stops the container. */
  readonly completed: (jobId: string) => void;
  readonly metrics: AgentMetrics | undefined;
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
      const result = await store.batch((): { reply: ApiReply; delivery?: Delivery } => {
        const job = store.get(id);
        if (!job) return { reply: NO_SUCH_JOB };
        const decision = onUpdate(job.state, update.status);
        if (decision.kind === 'refuse-ended') return { reply: endedReply(job) };
        if (decision.kind === 'refuse-not-running') return { reply: { status: 409, body: { error: `job is ${job.state}` } } };
        const message = forwardedUpdate(
          { jobId: id, agentId: deps.agentId, callbackUrl: job.spec.callbackUrl },
          { completed: update.status === 'completed', headers: update.headers, body: update.body },
        );
        const recorded = store.recordUpdate(id, message, decision.to, decision.outcome ? { outcome: decision.outcome } : {});
        return { reply: { status: 200, body: { status: 'accepted', progress: update.progress } }, delivery: recorded.delivery };
      });
      if (!result.delivery) return result.reply;
      deps.deliver(result.delivery);
      if (update.status === 'completed') {
        deps.metrics?.jobsEnded.inc({ outcome: 'succeeded' });
        deps.completed(id);
      }
      return result.reply;
    },
  };
}
