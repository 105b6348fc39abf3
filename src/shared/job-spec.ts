import { Type, type Static } from 'typebox';
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import { HTTP_URL_PREFIX, IMAGE_REFERENCE, httpUrlProblem, illFormedFields, isWellFormedText, showText } from './job-input.ts';

/** A job as served by the control server. Unknown fields are accepted and ignored. */
export const JobSpecSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 256 }),
    // Docker's reference grammar; the engine judges the rest (letter case, whether the image exists).
    image: Type.String({ minLength: 1, maxLength: 512, pattern: IMAGE_REFERENCE }),
    body: Type.Unknown(),
    // Host and port are checked beyond the schema (see `httpUrlProblem`).
    callbackUrl: Type.String({ format: 'uri', pattern: HTTP_URL_PREFIX }),
    /** Where the container's output is streamed as it runs (see the README's "Live job logs"). */
    logsUrl: Type.Optional(Type.String({ format: 'uri', pattern: HTTP_URL_PREFIX })),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    alwaysPull: Type.Optional(Type.Boolean()),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    /** ms between the stop signal and the kill when the job is canceled; overrides core.cancel_grace_period. */
    cancelGracePeriod: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    /** ms without an accepted update before the job is stopped as stalled; 0 is off; overrides core.stall_timeout. */
    stallTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
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

export type JobValidation =
  | { ok: true; job: JobSpec }
  | {
      ok: false;
      reason: string;
      /** The id and callback URL when they are usable, so the rejection can be reported. */
      id: string | undefined;
      callbackUrl: string | undefined;
      /** The id as a log line may show it (lone surrogates escaped), whether usable or not. */
      shownId: string | undefined;
    };

let compiled: ReturnType<Ajv['compile']> | undefined;

function validator(): ReturnType<Ajv['compile']> {
  if (!compiled) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    (addFormats as unknown as (a: Ajv) => void)(ajv);
    compiled = ajv.compile(JobSpecSchema);
  }
  return compiled;
}

function describe(error: ErrorObject): string {
  const where = error.instancePath ? error.instancePath.slice(1).replaceAll('/', '.') : 'job';
  if (error.keyword === 'required') return `missing required field "${String(error.params.missingProperty)}"`;
  if (error.keyword === 'pattern' && (where === 'callbackUrl' || where === 'logsUrl')) return `${where} must be an http(s) URL`;
  if (error.keyword === 'pattern' && where === 'image') {
    return 'image is not an image reference ([host[:port]/]name[/name…][:tag][@digest], names of letters and digits joined by . _ or -, separated by single /)';
  }
  return `${where} ${error.message ?? 'is invalid'}`;
}

/**
 * Checks one entry of a control-server reply against the job schema, and what the schema cannot say:
 * URLs the agent can deliver to, and strings that round-trip exactly (no lone surrogates).
 */
export function validateJob(raw: unknown): JobValidation {
  const validate = validator();
  const record = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const problems = validate(raw) ? [] : (validate.errors ?? []).map(describe);
  if (problems.length === 0 && !Object.hasOwn(record, 'body')) problems.push('missing required field "body"');
  problems.push(...illFormedFields(record));
  for (const field of ['callbackUrl', 'logsUrl']) {
    const value = record[field];
    const problem = typeof value === 'string' ? httpUrlProblem(value) : undefined;
    // One reason per field: the schema's, when it has one.
    if (problem && !problems.some((p) => p.startsWith(`${field} `))) problems.push(`${field} ${problem}`);
  }
  if (problems.length === 0) return { ok: true, job: raw as JobSpec };
  const { id, callbackUrl: url } = record;
  const usableId = typeof id === 'string' && id.length > 0 && id.length <= 256 && isWellFormedText(id);
  return {
    ok: false,
    reason: [...new Set(problems)].join('; ') || 'not a job object',
    id: usableId ? id : undefined,
    callbackUrl: typeof url === 'string' && httpUrlProblem(url) === undefined ? url : undefined,
    shownId: typeof id === 'string' && id.length > 0 ? showText(id) : undefined,
  };
}

export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
