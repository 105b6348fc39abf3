/**
 * foreman's wire protocol, in one module: every header name, the status, outcome and reason words, the
 * identity and delivery headers, the label and cancel-header codecs, the job API's paths and variables,
 * and the log-batch format. The poller, the job API, the callbacks and the log shipper take all of these
 * from here; lint forbids an `x-foreman-` string literal anywhere else in `src/`.
 *
 * docs/protocol.md says what each means (a test checks it names exactly these words), and
 * docs/openapi/control-server.yaml and docs/openapi/job-api.yaml are the machine-readable contracts.
 * This module imports nothing of the project, so the reference control server, the tests and anything
 * written against the protocol may import it alone.
 */

import type { HookResult, JobUsage } from './bodies.ts';

/** Every header of the protocol, by what it carries. Names are lower-case, as Node gives them. */
export const HEADER = Object.freeze({
  /** Poll, callback and logs requests: the agent's stable id (a UUID kept in `data_dir`). */
  agentId: 'x-foreman-agent-id',
  /** Poll: the agent's labels, `k=v` pairs joined by `,` (see `encodeLabels`). */
  labels: 'x-foreman-labels',
  /** Poll: how many jobs the agent takes now; `0` is a heartbeat. */
  capacity: 'x-foreman-capacity',
  /** Poll and callback replies: job ids to cancel (see `formatCancelHeader`). */
  cancel: 'x-foreman-cancel',
  /** Callback and logs requests: the job's id, URL-encoded (see `encodeJobId`). */
  jobId: 'x-foreman-job-id',
  /** Job API `PUT` and callback: `running` or `completed` (`JOB_STATUSES`). */
  jobStatus: 'x-foreman-job-status',
  /** Job API `PUT` and callback, optional: the job's progress, a number (the reference server reads 0–1). */
  jobProgress: 'x-foreman-job-progress',
  /** Callback, on a job's final update only: how it ended (`OUTCOMES`). */
  jobOutcome: 'x-foreman-job-outcome',
  /** Callback: a UUID per update, the same on every retry of it. */
  deliveryId: 'x-foreman-delivery-id',
  /** Callback: 1, 2, 3… per job, in the order the agent accepted the updates. */
  deliverySeq: 'x-foreman-delivery-seq',
  /** Logs: the number of the batch's first line (or the total, on the end request). */
  logOffset: 'x-foreman-log-offset',
  /** Logs: the total number of lines; on the last request of a job's log only. */
  logEnd: 'x-foreman-log-end',
  /** Callback, on a job's final update when its container ran: what it used, JSON (`JobUsage`, see `encodeUsage`). */
  usage: 'x-foreman-usage',
  /** Poll: the host's facts, `k=v` pairs like the labels (os, arch, cpus, memory, disk, engine, executor…). */
  attributes: 'x-foreman-attributes',
  /** Poll: the images the agent has that jobs used, most recently used first, `<ref>@<digest>` URL-encoded, joined by `,`. */
  images: 'x-foreman-images',
  /** Callback, on a job's final update when the agent ran a `post_job` hook for it: its result (see `encodeHookResult`). */
  postJobHook: 'x-foreman-post-job-hook',
} as const);

export type HeaderName = (typeof HEADER)[keyof typeof HEADER];

/** Every header name of the protocol, for checks that want the whole list. */
export const HEADER_NAMES: readonly HeaderName[] = Object.freeze(Object.values(HEADER));

/** What every protocol header starts with. */
export const HEADER_PREFIX = 'x-foreman-';

/** Headers the agent sets on a forwarded update: a container's own values of these are dropped. */
export const AGENT_SET_HEADERS: readonly HeaderName[] = Object.freeze([
  HEADER.jobId,
  HEADER.agentId,
  HEADER.jobOutcome,
  HEADER.deliveryId,
  HEADER.deliverySeq,
  HEADER.usage,
  HEADER.postJobHook,
]);

/** A job's status on the job API and the callback: `completed` is final. */
export const JOB_STATUSES = Object.freeze(['running', 'completed'] as const);
export type JobStatus = (typeof JOB_STATUSES)[number];
export const FINAL_STATUS: JobStatus = 'completed';

/** How a job ended, on its final update (`x-foreman-job-outcome`). Only `succeeded` comes from the container's own `completed`. */
export const OUTCOMES = Object.freeze([
  'succeeded',
  'failed',
  'oom-killed',
  'timed-out',
  'pull-failed',
  'start-failed',
  'invalid',
  'agent-shutdown',
  'lost',
  'canceled',
  'stalled',
  'hook-failed',
] as const);
export type Outcome = (typeof OUTCOMES)[number];

/** The `reason` of a report the agent sends when it ends a job itself (`canceled` keeps `cancel` whatever ended it). */
export const REASONS = Object.freeze([
  'exit',
  'oom',
  'timeout',
  'pull',
  'start',
  'validation',
  'shutdown',
  'container-vanished',
  'cancel',
  'stall',
  'hook',
] as const);
export type Reason = (typeof REASONS)[number];

/** The body of a report the agent sends when it ends a job itself (`content-type: application/json`). */
export interface ReportBody {
  readonly outcome: Outcome;
  readonly reason: Reason;
  readonly message: string;
  /** The container's exit code, when it ran and exited. */
  readonly exitCode?: number;
  /** The container's last lines (`REPORT_LOG_LINES`, each cut at `REPORT_LOG_LINE_CHARS`). */
  readonly logs?: readonly string[];
  /** The job's id, for an id the header can only carry in an encoding of its own (a lone surrogate). */
  readonly id?: string;
  /** What the container used, when it ran (the same as `x-foreman-usage`). */
  readonly usage?: JobUsage;
  /** The result of the agent's `post_job` hook for the job, when it ran one (the same as `x-foreman-post-job-hook`). */
  readonly postJobHook?: HookResult;
}

export const REPORT_LOG_LINES = 20;
export const REPORT_LOG_LINE_CHARS = 1000;

const SURROGATE = /\p{Surrogate}/u;

/**
 * A job id as `x-foreman-job-id` carries it: `encodeURIComponent` of the id, except that a lone surrogate,
 * which has no UTF-8 form (and makes `encodeURIComponent` throw), is written as the three bytes WTF-8 gives
 * it (`\ud800` → `%ED%A0%80`). No well-formed id encodes to those bytes, so the value names one id only.
 */
export function encodeJobId(id: string): string {
  if (!SURROGATE.test(id)) return encodeURIComponent(id);
  return id.replace(/\p{Surrogate}|[^\p{Surrogate}]+/gu, (part) => {
    const unit = part.charCodeAt(0);
    if (part.length > 1 || unit < 0xd800 || unit > 0xdfff) return encodeURIComponent(part);
    return [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('');
  });
}

/** `x-foreman-job-id` and `x-foreman-agent-id`, on every callback and logs request. */
export function identityHeaders(jobId: string, agentId: string): Record<string, string> {
  return { [HEADER.jobId]: encodeJobId(jobId), [HEADER.agentId]: agentId };
}

/** `x-foreman-delivery-id` and `x-foreman-delivery-seq` of one callback delivery. */
export function deliveryHeaders(id: string, seq: number): Record<string, string> {
  return { [HEADER.deliveryId]: id, [HEADER.deliverySeq]: String(seq) };
}

/** `foreman/<version> (<os>, <arch>)`, sent on every request the agent makes. */
export function userAgentFor(version: string): string {
  return `foreman/${version} (${process.platform}, ${process.arch})`;
}

/** `k=v` pairs with keys and values URL-encoded, joined by commas (`x-foreman-labels`). */
export function encodeLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join(',');
}

/**
 * The labels of an `x-foreman-labels` value; an error message (never a throw) for a pair that is not one
 * `key=value`, does not decode, or has an empty key. Empty entries (a trailing comma) are skipped.
 */
export function parseLabels(value: string | undefined): { readonly labels: Record<string, string> } | { readonly error: string } {
  // No prototype, so a label named "__proto__" is just a label.
  const labels = Object.create(null) as Record<string, string>;
  if (value === undefined) return { labels };
  for (const raw of value.split(',')) {
    const pair = raw.trim();
    if (pair === '') continue;
    const parts = pair.split('=');
    if (parts.length !== 2) return { error: `${HEADER.labels}: "${pair}" is not one key=value pair (encode "=" and "," in keys and values)` };
    try {
      const key = decodeURIComponent(parts[0] ?? '');
      if (key === '') return { error: `${HEADER.labels}: "${pair}" has an empty key` };
      labels[key] = decodeURIComponent(parts[1] ?? '');
    } catch {
      return { error: `${HEADER.labels}: "${pair}" is not valid URL encoding` };
    }
  }
  return { labels };
}

export interface PollHeaderValues {
  readonly token: string;
  readonly userAgent: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly capacity: number;
  readonly agentId?: string;
}

/** The headers of a poll (`GET <core.url>`); `foreman check` sends the same ones. */
export function pollHeaders(values: PollHeaderValues): Record<string, string> {
  return {
    authorization: `Bearer ${values.token}`,
    'user-agent': values.userAgent,
    [HEADER.labels]: encodeLabels(values.labels),
    [HEADER.capacity]: String(values.capacity),
    ...(values.agentId ? { [HEADER.agentId]: values.agentId } : {}),
    accept: 'application/json',
  };
}

/** Most ids the agent takes from one cancel header; a longer list is cut (the server repeats it on the next reply). */
export const MAX_CANCEL_IDS = 1000;
/** The longest job id, in characters. */
export const MAX_JOB_ID_LENGTH = 256;
/** What `formatCancelHeader` keeps a header under by default: Node's HTTP client refuses more than 16 KiB of headers. */
export const MAX_CANCEL_HEADER_LENGTH = 8 * 1024;

/**
 * An `x-foreman-cancel` value: each id percent-encoded, joined by `,`, cut before `maxLength` characters
 * (the ids left out go in a later reply: a server repeats a cancel until the job's final update).
 * Undefined when there is nothing to send.
 */
export function formatCancelHeader(ids: Iterable<string>, maxLength = MAX_CANCEL_HEADER_LENGTH): string | undefined {
  let value = '';
  for (const id of ids) {
    const encoded = encodeJobId(id);
    const next = value === '' ? encoded : `${value},${encoded}`;
    if (next.length > maxLength) break;
    value = next;
  }
  return value === '' ? undefined : value;
}

/**
 * The ids in an `x-foreman-cancel` value: comma-separated, each percent-encoded. Empty entries, entries
 * that do not decode, and ids longer than a job id may be are skipped; repeated headers are joined.
 */
export function parseCancelHeader(value: string | readonly string[] | null | undefined): string[] {
  if (value === undefined || value === null) return [];
  const joined = typeof value === 'string' ? value : value.join(',');
  const ids = new Set<string>();
  for (const part of joined.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    let id: string;
    try {
      id = decodeURIComponent(trimmed);
    } catch {
      continue;
    }
    if (id.length === 0 || id.length > MAX_JOB_ID_LENGTH) continue;
    ids.add(id);
    if (ids.size >= MAX_CANCEL_IDS) break;
  }
  return [...ids];
}

/** The environment variables a job container gets: the same URL twice, for its `GET` and its `PUT`. */
/** Where a job's container finds its `secrets`, one file per name (read-only, on a tmpfs, mode 0400). */
export const SECRETS_PATH = '/run/foreman/secrets';

export const JOB_ENDPOINT_ENV = Object.freeze({ get: 'FOREMAN_GET_JOB_ENDPOINT', put: 'FOREMAN_PUT_JOB_ENDPOINT' } as const);

/** The job API's one route (fastify's syntax) and its query parameter carrying the job's secret. */
export const JOB_API_ROUTE = '/job/:id';
export const JOB_API_TOKEN_PARAM = 'token';
/** The job API's `POST`: values the job's logs and reports hide from then on (`{"values": [...]}`). */
export const JOB_API_REDACTIONS_ROUTE = '/job/:id/redactions';
/** At most this many values a request, this many a job, each at most this many characters (and at least 4). */
export const REDACTIONS_PER_REQUEST = 64;
export const REDACTIONS_PER_JOB = 256;
export const REDACTION_MAX_CHARS = 4096;
export const REDACTION_MIN_CHARS = 4;

/** A job's URL on the job API: the id percent-encoded, the secret in the query. */
export function jobEndpoint(baseUrl: string, jobId: string, secret: string): string {
  return `${baseUrl}/job/${encodeURIComponent(jobId)}?${JOB_API_TOKEN_PARAM}=${secret}`;
}

/** The job API's answer to an update it stored. */
export function acceptedReply(progress: number): { readonly status: 'accepted'; readonly progress: number } {
  return { status: 'accepted', progress };
}

/** The content type of a log batch: one JSON object a line. */
export const LOG_CONTENT_TYPE = 'application/x-ndjson';
/** Which of a container's output streams a log line came from. */
export const LOG_STREAMS = Object.freeze(['stdout', 'stderr'] as const);
export type LogStreamName = (typeof LOG_STREAMS)[number];
/** A line longer than this (bytes of UTF-8) is split at a character boundary, each part a line. */
export const MAX_LOG_LINE_BYTES = 16 * 1024;

/** One line of a log batch as the logs server receives it. */
export interface LogBatchLine {
  /** The line's number, from 0 in the order the engine gave the lines. */
  readonly i: number;
  /** The engine's timestamp, RFC 3339 in UTC with nanoseconds. */
  readonly ts: string;
  readonly stream: LogStreamName;
  /** The line without its newline. */
  readonly text: string;
}

/** One line of a batch: `{"i":…,"ts":…,"stream":…,"text":…}` and a newline. */
export function encodeLogLine(i: number, line: { readonly ts: string; readonly stream: LogStreamName; readonly text: string }): string {
  return `{"i":${i},"ts":${JSON.stringify(line.ts)},"stream":"${line.stream}","text":${JSON.stringify(line.text)}}\n`;
}

/**
 * The lines of a batch body, or an error message (never a throw) naming the first line that is not a
 * `LogBatchLine` or that does not follow the one before it.
 */
export function parseLogBatch(body: string): { readonly lines: LogBatchLine[] } | { readonly error: string } {
  const lines: LogBatchLine[] = [];
  const rows = body.split('\n');
  for (let n = 0; n < rows.length; n++) {
    const row = rows[n] ?? '';
    if (row === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(row);
    } catch {
      return { error: `line ${n + 1} of the batch is not JSON` };
    }
    const line = value as Partial<Record<keyof LogBatchLine, unknown>> | null;
    if (
      typeof line !== 'object' ||
      line === null ||
      !Number.isSafeInteger(line.i) ||
      (line.i as number) < 0 ||
      typeof line.ts !== 'string' ||
      !(LOG_STREAMS as readonly unknown[]).includes(line.stream) ||
      typeof line.text !== 'string'
    ) {
      return { error: `line ${n + 1} of the batch is not {"i", "ts", "stream", "text"}` };
    }
    const previous = lines[lines.length - 1];
    if (previous && line.i !== previous.i + 1) return { error: `line ${n + 1} of the batch is number ${String(line.i)}, after ${previous.i}` };
    lines.push(line as LogBatchLine);
  }
  return { lines };
}

export interface LogBatchHeaderValues {
  readonly jobId: string;
  readonly agentId: string;
  readonly userAgent: string;
  /** The number of the batch's first line; on the end request, the total. */
  readonly offset: number;
  /** The total number of lines, on the end request only. */
  readonly end?: number;
}

/** The headers of a `POST <logsUrl>`: a batch, or (with `end`) the log's end with an empty body. */
export function logBatchHeaders(values: LogBatchHeaderValues): Record<string, string> {
  return {
    'content-type': LOG_CONTENT_TYPE,
    'user-agent': values.userAgent,
    ...identityHeaders(values.jobId, values.agentId),
    [HEADER.logOffset]: String(values.offset),
    ...(values.end === undefined ? {} : { [HEADER.logEnd]: String(values.end) }),
  };
}

// The bodies and header values with a structure of their own: what a job used, what a host offers, how a hook ended.
export * from './bodies.ts';
