import { imageMatcher } from '../../shared/image-pattern.ts';
import type { JobSpec } from '../../shared/job-spec.ts';

/** The admin's limits on what a job may ask for (`[docker]`); 0 means no maximum. */
export interface JobPolicySettings {
  /** `docker.allowed_images`; empty allows every image. */
  readonly allowedImages: readonly string[];
  readonly cpus: number;
  /** Bytes (`docker.memory_limit`). */
  readonly memory: number;
  /** `docker.pids_limit`. */
  readonly pids: number;
  /** `core.max_job_timeout`: the most a job's own `timeout` may be. */
  readonly maxTimeout?: number;
}

/** Why a valid job may not run on this agent, or undefined when it may. */
export type JobPolicy = (job: JobSpec) => string | undefined;

const LIMITS = [
  { field: 'cpus', key: 'docker.cpus' },
  { field: 'memory', key: 'docker.memory_limit' },
  { field: 'pids', key: 'docker.pids_limit' },
] as const;

const KNOWN_FIELDS: readonly string[] = LIMITS.map((l) => l.field);

/**
 * A job runs only with an allowed image and asking for no more than the maxima. Unknown `resources` fields
 * are refused rather than ignored: a job that asks for a limit the agent cannot apply would run without it.
 */
export function jobPolicy(settings: JobPolicySettings): JobPolicy {
  const allowed = imageMatcher(settings.allowedImages);
  return (job) => {
    const problems: string[] = [];
    if (!allowed(job.image)) {
      problems.push(`image ${job.image} is not allowed on this agent (docker.allowed_images: ${settings.allowedImages.join(', ')})`);
    }
    const asked = job.resources ?? {};
    for (const field of Object.keys(asked)) {
      if (!KNOWN_FIELDS.includes(field)) problems.push(`resources.${field} is not a limit foreman applies (it knows ${KNOWN_FIELDS.join(', ')})`);
    }
    for (const { field, key } of LIMITS) {
      const value = asked[field];
      const maximum = settings[field];
      if (value !== undefined && maximum > 0 && value > maximum)
        problems.push(`resources.${field} ${value} is more than this agent allows (${key} = ${maximum})`);
    }
    const maxTimeout = settings.maxTimeout ?? 0;
    if (job.timeout !== undefined && maxTimeout > 0 && job.timeout > maxTimeout) {
      problems.push(`timeout ${job.timeout} is more than this agent allows (core.max_job_timeout = ${maxTimeout})`);
    }
    return problems.length > 0 ? problems.join('; ') : undefined;
  };
}
