import { timingSafeEqual } from 'node:crypto';
import type { ApiReply, JobApiBackend, JobUpdate } from '../../job-api/types.ts';
import type { JobRecord, JobStore } from '../../jobs/store.ts';
import { acceptedReply } from '../../protocol/wire.ts';
import type { JobRunner } from './runner.ts';

export interface JobApiBackendDeps {
  /** Read only: which jobs exist, and their secrets. */
  readonly store: Pick<JobStore, 'get'>;
  /** The runner of a job this agent tracks: the one writer of its state, the container's reports included. */
  readonly runner: (jobId: string) => JobRunner | undefined;
}

const NO_SUCH_JOB: ApiReply = { status: 404, body: { error: 'no such job' } };

function endedReply(job: JobRecord): ApiReply {
  const detail = job.outcome && job.outcome !== 'succeeded' ? ` (${job.outcome})` : '';
  return { status: 409, body: { error: `job already ended${detail}: no further updates are accepted` } };
}

/**
 * What the job API does for containers: checks their secret, then hands their fetch or update to
 * the job's runner, and turns what the runner says into an HTTP reply. It writes nothing itself.
 */
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
      const result = await deps.runner(id)?.containerFetched();
      if (!result || result.kind === 'unknown') return NO_SUCH_JOB;
      if (result.kind === 'ended') return endedReply(result.job);
      return { status: 200, body: { id: result.job.id, body: result.job.spec.body ?? null } };
    },

    async updateJob(id, update: JobUpdate) {
      const result = await deps.runner(id)?.containerUpdated(update);
      if (!result || result.kind === 'unknown') return NO_SUCH_JOB;
      if (result.kind === 'ended') return endedReply(result.job);
      if (result.kind === 'not-running') return { status: 409, body: { error: `job is ${result.job.state}` } };
      return { status: 200, body: acceptedReply(update.progress) };
    },

    async addRedactions(id, values) {
      const result = await deps.runner(id)?.containerRedacts(values);
      if (!result || result.kind === 'unknown') return NO_SUCH_JOB;
      if (result.kind === 'ended') return endedReply(result.job);
      if (result.kind === 'refused') return { status: 400, body: { error: result.error } };
      return { status: 200, body: { redacting: result.count } };
    },
  };
}
