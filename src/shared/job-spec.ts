import type { ErrorObject } from 'ajv';
import { httpUrlProblem, illFormedFields, isWellFormedText, showText } from './job-input.ts';
import type { JobSpec } from './job-schema.ts';
// JobSpecSchema (job-schema.ts) compiled by ajv at development time (scripts/validators.ts), so the agent never runs ajv's compiler.
import { validate as validateJobSpec } from './job-validator.generated.ts';

export type { JobSpec } from './job-schema.ts';

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
      /**
       * An id of 1–256 characters that holds a lone surrogate: it cannot be stored or sent as it is, but the
       * rejection can still be reported to a usable `callbackUrl` (`encodeJobId` of src/protocol/wire.ts writes it into the header).
       */
      illFormedId?: string | undefined;
    };

function describe(error: ErrorObject): string {
  const where = error.instancePath ? error.instancePath.slice(1).replaceAll('/', '.') : 'job';
  if (error.keyword === 'required') return `missing required field "${String(error.params.missingProperty)}"`;
  if (error.keyword === 'pattern' && (where === 'callbackUrl' || where === 'logsUrl')) return `${where} must be an http(s) URL`;
  if (error.keyword === 'pattern' && where === 'image') {
    return 'image is not an image reference ([host[:port]/]name[/name…][:tag][@digest], names of letters and digits joined by . _ or -, separated by single /)';
  }
  if (where === 'secrets' && error.keyword === 'additionalProperties') {
    return `secrets has a name that is not a file name of letters, digits, _ . and - (not starting with a dot): "${String(error.params.additionalProperty)}"`;
  }
  return `${where} ${error.message ?? 'is invalid'}`;
}

/**
 * Checks one entry of a control-server reply against the job schema, and what the schema cannot say:
 * URLs the agent can deliver to, and strings that round-trip exactly (no lone surrogates).
 */
export function validateJob(raw: unknown): JobValidation {
  const record = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const problems = validateJobSpec(raw) ? [] : (validateJobSpec.errors ?? []).map(describe);
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
    illFormedId: typeof id === 'string' && id.length > 0 && id.length <= 256 && !isWellFormedText(id) ? id : undefined,
  };
}
