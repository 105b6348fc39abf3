import { Type, type Static } from 'typebox';
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';

/** A job as served by the control server. Unknown fields are accepted and ignored. */
export const JobSpecSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 256 }),
    // Only the characters an image reference can hold; the engine judges the rest.
    image: Type.String({ minLength: 1, maxLength: 512, pattern: '^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$' }),
    body: Type.Unknown(),
    callbackUrl: Type.String({ format: 'uri', pattern: '^[hH][tT][tT][pP][sS]?://' }),
    /** Where the container's output is streamed as it runs (see the README's "Live job logs"). */
    logsUrl: Type.Optional(Type.String({ format: 'uri', pattern: '^[hH][tT][tT][pP][sS]?://' })),
    command: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    alwaysPull: Type.Optional(Type.Boolean()),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    /** ms between the stop signal and the kill when the job is canceled; overrides core.cancel_grace_period. */
    cancelGracePeriod: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    /** ms without an accepted update before the job is stopped as stalled; 0 is off; overrides core.stall_timeout. */
    stallTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
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
  if (error.keyword === 'pattern' && where === 'image') return 'image is not an image reference (letters, digits and . _ / : @ + - only)';
  return `${where} ${error.message ?? 'is invalid'}`;
}

/** Checks one entry of a control-server reply against the job schema. */
export function validateJob(raw: unknown): JobValidation {
  const validate = validator();
  if (validate(raw)) {
    const job = raw as JobSpec;
    if (!Object.hasOwn(job, 'body')) return { ok: false, reason: 'missing required field "body"', id: job.id, callbackUrl: job.callbackUrl };
    return { ok: true, job };
  }
  const reason = [...new Set((validate.errors ?? []).map(describe))].join('; ');
  const record = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const id = typeof record.id === 'string' && record.id.length > 0 && record.id.length <= 256 ? record.id : undefined;
  const url = typeof record.callbackUrl === 'string' ? record.callbackUrl : undefined;
  return { ok: false, reason: reason || 'not a job object', id, callbackUrl: url && isHttpUrl(url) ? url : undefined };
}

export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
