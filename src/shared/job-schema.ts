import { Type, type Static } from 'typebox';
import { HTTP_URL_PREFIX, IMAGE_REFERENCE } from './job-input.ts';

/** A secret's name: a file name of letters, digits, `_`, `.` and `-`, not starting with a dot. */
export const SECRET_NAME = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$';
/** The most secrets a job may carry, and the longest value (characters). */
export const SECRETS_MAX = 64;
export const SECRET_MAX_BYTES = 65_536;

/** A job as served by the control server. Unknown fields are accepted and ignored. */
export const JobSpecSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 256 }),
    // Docker's reference grammar; the engine judges the rest (letter case, whether the image exists).
    image: Type.String({ minLength: 1, maxLength: 512, pattern: IMAGE_REFERENCE }),
    body: Type.Unknown(),
    // Host and port are checked beyond the schema (see `httpUrlProblem`).
    callbackUrl: Type.String({ format: 'uri', pattern: HTTP_URL_PREFIX }),
    /** Where the container's output is streamed as it runs (see docs/protocol.md, "Agent → logs URL"). */
    logsUrl: Type.Optional(Type.String({ format: 'uri', pattern: HTTP_URL_PREFIX })),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    alwaysPull: Type.Optional(Type.Boolean()),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    /** ms between the stop signal and the kill when the job is canceled; overrides core.cancel_grace_period. */
    cancelGracePeriod: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    /**
     * ms the job may run, from its container's start, before it is stopped as timed-out (the pull and create count
     * too, from the job's launch); overrides core.job_completion_timeout, at most core.max_job_timeout.
     */
    timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647 })),
    /** ms without an accepted update before the job is stopped as stalled; 0 is off; overrides core.stall_timeout. */
    stallTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    /**
     * Values delivered as files under /run/foreman/secrets/<name> (a tmpfs the container alone sees), never in its
     * config or env; the agent keeps them in memory only (docs/security.md).
     */
    secrets: Type.Optional(
      Type.Record(Type.String({ pattern: SECRET_NAME }), Type.String({ maxLength: SECRET_MAX_BYTES }), {
        maxProperties: SECRETS_MAX,
        additionalProperties: false,
      }),
    ),
    /**
     * At most the agent's maxima (docker.cpus, docker.memory_limit, docker.pids_limit), which the agent
     * checks; the minima are the engine's (0.01 CPU, 6 MiB).
     */
    resources: Type.Optional(
      Type.Object({
        cpus: Type.Optional(Type.Number({ minimum: 0.01, maximum: 65_536 })),
        memory: Type.Optional(Type.Integer({ minimum: 6_291_456, maximum: Number.MAX_SAFE_INTEGER })),
        pids: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
      }),
    ),
  },
  { additionalProperties: true },
);

export type JobSpec = Static<typeof JobSpecSchema>;
