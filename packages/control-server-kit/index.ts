/**
 * A kit for writing a foreman control server: the protocol's server side (docs/protocol.md) as plain functions,
 * with no dependency and no web framework. Give each function the request's headers (a plain object, as node:http,
 * fastify or express give them, or a fetch `Headers`) and, where there is one, the body's bytes; it returns what
 * the request says, or throws a `ProtocolError` whose `status` and `message` are the answer to send.
 *
 *   const poll = parsePoll(req.headers);               // agent id, labels, capacity, bearer token
 *   reply.header(CANCEL_HEADER, formatCancelHeader(ids));
 *   const update = parseCallback(req.headers, body);   // job id, seq, status, outcome, progress, result
 *   switch (decideCallback(stored, update)) { ... }    // apply, duplicate, stale or after-final (idempotent on seq)
 *   const batch = parseLogBatch(req.headers, body);    // lines from offset, end
 *
 * The reference server (`foreman server`, src/server/) is built on it.
 */

/** The protocol's header names (lower case, as node gives them). */
export const HEADERS = {
  capacity: 'x-foreman-capacity',
  labels: 'x-foreman-labels',
  agentId: 'x-foreman-agent-id',
  cancel: 'x-foreman-cancel',
  jobId: 'x-foreman-job-id',
  jobStatus: 'x-foreman-job-status',
  jobProgress: 'x-foreman-job-progress',
  jobOutcome: 'x-foreman-job-outcome',
  deliveryId: 'x-foreman-delivery-id',
  deliverySeq: 'x-foreman-delivery-seq',
  logOffset: 'x-foreman-log-offset',
  logEnd: 'x-foreman-log-end',
} as const;

export const CANCEL_HEADER = HEADERS.cancel;

/** How a job ended, as the agent reports it in `x-foreman-job-outcome` (docs/protocol.md, section 4). */
export const OUTCOMES = [
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
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The content type of a log batch. */
export const LOG_CONTENT_TYPE = 'application/x-ndjson';

/** Ids, lengths and the like: what a server should refuse rather than store. */
export const MAX_ID_LENGTH = 256;
/** Agents (node's HTTP client) refuse replies with more than 16 KiB of headers: one cancel header carries at most this. */
export const MAX_CANCEL_HEADER_LENGTH = 8 * 1024;

/** A request that can never succeed: answer `status` with `message`. */
export class ProtocolError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Request headers as node:http, fastify or express give them, or a fetch `Headers`. */
export type HeaderSource = { get(name: string): string | null } | Readonly<Record<string, string | string[] | undefined>>;

/** One header's value (repeated headers joined with `, `), undefined when absent. */
export function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  const record = headers as Readonly<Record<string, string | string[] | undefined>>;
  const value = record[name] ?? record[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The bearer token of `Authorization: Bearer <token>`; undefined when there is none. */
export function bearerToken(headers: HeaderSource): string | undefined {
  const match = /^Bearer\s+(\S.*)$/i.exec(headerValue(headers, 'authorization')?.trim() ?? '');
  return match?.[1]?.trim() || undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The poll: GET <core.url>

export interface Poll {
  /** `x-foreman-agent-id`, trimmed; undefined when the agent sent none. */
  agentId: string | undefined;
  /** `x-foreman-labels`, decoded; an object without a prototype, so any key is just a label. */
  labels: Record<string, string>;
  /** `x-foreman-capacity`: hand out at most this many jobs (1 when absent, as for an agent that predates it). */
  capacity: number;
  /** The bearer token presented, for the server to check; undefined when none. */
  token: string | undefined;
  /** `User-Agent`. */
  userAgent: string | undefined;
}

/** Reads a poll's headers. Throws a 400 ProtocolError for a malformed capacity, labels header or agent id. */
export function parsePoll(headers: HeaderSource): Poll {
  const labels = parseLabelsHeader(headerValue(headers, HEADERS.labels));
  if ('error' in labels) throw new ProtocolError(400, labels.error);
  return {
    agentId: parseAgentId(headers),
    labels: labels.labels,
    capacity: parseCapacity(headerValue(headers, HEADERS.capacity)),
    token: bearerToken(headers),
    userAgent: headerValue(headers, 'user-agent'),
  };
}

export function parseCapacity(raw: string | undefined): number {
  if (raw === undefined) return 1;
  if (!/^\s*\d{1,9}\s*$/.test(raw)) throw new ProtocolError(400, `${HEADERS.capacity} must be a non-negative integer`);
  return Number(raw);
}

/** `x-foreman-agent-id`, trimmed; undefined when absent or empty; a 400 when longer than MAX_ID_LENGTH. */
export function parseAgentId(headers: HeaderSource): string | undefined {
  const agentId = headerValue(headers, HEADERS.agentId)?.trim();
  if (agentId !== undefined && agentId.length > MAX_ID_LENGTH) throw new ProtocolError(400, `${HEADERS.agentId} is too long`);
  return agentId || undefined;
}

/** `x-foreman-job-id`, URL-decoded; undefined when absent or empty; a 400 when it is not valid URL encoding. */
function parseJobIdHeader(headers: HeaderSource): string | undefined {
  const raw = headerValue(headers, HEADERS.jobId);
  if (raw === undefined) return undefined;
  try {
    return decodeURIComponent(raw.trim()) || undefined;
  } catch {
    throw new ProtocolError(400, `${HEADERS.jobId} is not valid URL encoding`);
  }
}

/**
 * Parses `x-foreman-labels`: `k=v` pairs joined by `,`, each key and value URL-encoded. Returns an error message
 * instead of throwing, because the header comes from the network.
 */
export function parseLabelsHeader(header: string | undefined): { labels: Record<string, string> } | { error: string } {
  const labels = Object.create(null) as Record<string, string>;
  if (header === undefined) return { labels };
  for (const rawPair of header.split(',')) {
    const pair = rawPair.trim();
    // A trailing or doubled comma carries no label.
    if (pair === '') continue;
    const parts = pair.split('=');
    if (parts.length !== 2) return { error: `${HEADERS.labels}: "${pair}" is not one key=value pair (encode "=" and "," in keys and values)` };
    const [rawKey, rawValue] = parts as [string, string];
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey);
      value = decodeURIComponent(rawValue);
    } catch {
      return { error: `${HEADERS.labels}: "${pair}" is not valid URL encoding` };
    }
    if (key === '') return { error: `${HEADERS.labels}: "${pair}" has an empty key` };
    labels[key] = value;
  }
  return { labels };
}

/** The inverse of parseLabelsHeader, for clients and tests. */
export function formatLabelsHeader(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
    .join(',');
}

/** Whether an agent carrying `offered` may be handed a job that requires `required`: every key, with an equal value. */
export function labelsMatch(required: Record<string, string>, offered: Record<string, string>): boolean {
  return Object.entries(required).every(([key, value]) => Object.hasOwn(offered, key) && offered[key] === value);
}

// ---------------------------------------------------------------------------------------------------------------
// Cancel: x-foreman-cancel on poll and callback replies

/**
 * The `x-foreman-cancel` value for these ids: each percent-encoded, joined with `,`, oldest first, at most
 * MAX_CANCEL_HEADER_LENGTH long (the rest go in later replies: repeat a cancel until the job's final update).
 * Undefined when there is nothing to send.
 */
export function formatCancelHeader(ids: readonly string[]): string | undefined {
  let value = '';
  for (const id of ids) {
    const encoded = encodeURIComponent(id);
    const next = value === '' ? encoded : `${value},${encoded}`;
    if (next.length > MAX_CANCEL_HEADER_LENGTH) break;
    value = next;
  }
  return value === '' ? undefined : value;
}

/** The inverse of formatCancelHeader, for clients and tests; entries that do not decode are skipped. */
export function parseCancelHeader(value: string | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return value.split(',').flatMap((part) => {
    try {
      const id = decodeURIComponent(part.trim());
      return id === '' ? [] : [id];
    } catch {
      return [];
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The callback: PUT <callbackUrl>

export interface CallbackUpdate {
  /** `x-foreman-job-id`, decoded; undefined when absent (the callback URL says which job it is about). */
  jobId: string | undefined;
  /** `x-foreman-agent-id`; undefined for clients that do not send it. */
  agentId: string | undefined;
  status: 'running' | 'completed';
  /** `x-foreman-job-progress` as a number; undefined when absent. */
  progress: number | undefined;
  /** `x-foreman-job-outcome` on the final update (any word: agents newer than this kit may send new ones). */
  outcome: string | undefined;
  /** `x-foreman-delivery-id`: the same on every retry of one update. */
  deliveryId: string | undefined;
  /** `x-foreman-delivery-seq`: 1, 2, 3… per job. */
  deliverySeq: number | undefined;
  /** The body: parsed JSON when declared JSON and parseable, else its text; undefined when empty. */
  result: unknown;
}

/** Reads a callback delivery. Throws a 400 ProtocolError for a missing or unknown status and malformed numbers. */
export function parseCallback(headers: HeaderSource, body?: Uint8Array | string): CallbackUpdate {
  const status = headerValue(headers, HEADERS.jobStatus)?.trim().toLowerCase();
  if (status !== 'running' && status !== 'completed') throw new ProtocolError(400, `${HEADERS.jobStatus} must be "running" or "completed"`);

  const rawProgress = headerValue(headers, HEADERS.jobProgress);
  let progress: number | undefined;
  if (rawProgress !== undefined && rawProgress.trim() !== '') {
    progress = Number(rawProgress);
    if (!Number.isFinite(progress)) throw new ProtocolError(400, `${HEADERS.jobProgress} must be a number`);
  }

  const outcome = headerValue(headers, HEADERS.jobOutcome)?.trim() || undefined;
  if (outcome !== undefined && outcome.length > 64) throw new ProtocolError(400, `${HEADERS.jobOutcome} is too long`);

  const deliveryId = headerValue(headers, HEADERS.deliveryId)?.trim() || undefined;
  if (deliveryId !== undefined && deliveryId.length > MAX_ID_LENGTH) throw new ProtocolError(400, `${HEADERS.deliveryId} is too long`);

  const rawSeq = headerValue(headers, HEADERS.deliverySeq);
  let deliverySeq: number | undefined;
  if (rawSeq !== undefined) {
    if (!/^\s*\d{1,15}\s*$/.test(rawSeq)) throw new ProtocolError(400, `${HEADERS.deliverySeq} must be a non-negative integer`);
    deliverySeq = Number(rawSeq);
  }

  const jobId = parseJobIdHeader(headers);
  return {
    jobId,
    agentId: parseAgentId(headers),
    status,
    progress,
    outcome,
    deliveryId,
    deliverySeq,
    result: bodyResult(body, headerValue(headers, 'content-type')),
  };
}

function isJsonContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType.trim());
}

/** A callback body as a server stores it: parsed JSON when declared JSON and parseable, otherwise the text. */
export function bodyResult(body: Uint8Array | string | undefined, contentType: string | undefined): unknown {
  if (body === undefined || body.length === 0) return undefined;
  const text = typeof body === 'string' ? body : new TextDecoder().decode(body);
  if (isJsonContentType(contentType)) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Keep what was sent rather than refuse a delivery the agent cannot fix.
      return text;
    }
  }
  return text;
}

/** What a server has stored about a job's deliveries. */
export interface DeliveryState {
  /** The highest `x-foreman-delivery-seq` applied (0 before any). */
  lastSeq: number;
  /** A `completed` update was applied (or the server ended the job itself). */
  final: boolean;
  /** Whether this delivery id was applied before; leave out when the server keeps no delivery ids. */
  seen?: (deliveryId: string) => boolean;
}

/**
 * What to do with a delivery, idempotent on its seq and id: `apply` it; or answer 200 and change nothing for a
 * `duplicate` (an id or seq already applied: a retry), a `stale` one (an older seq arriving late: keep the latest
 * state) and one `after-final` (the job has ended). Record the id and the new lastSeq in the same transaction as
 * the update.
 */
export function decideCallback(
  state: DeliveryState,
  update: Pick<CallbackUpdate, 'deliveryId' | 'deliverySeq'>,
): 'apply' | 'duplicate' | 'stale' | 'after-final' {
  if (update.deliveryId !== undefined && state.seen?.(update.deliveryId) === true) return 'duplicate';
  if (update.deliverySeq !== undefined && update.deliverySeq !== 0 && update.deliverySeq === state.lastSeq) return 'duplicate';
  if (update.deliverySeq !== undefined && update.deliverySeq < state.lastSeq) return 'stale';
  if (state.final) return 'after-final';
  return 'apply';
}

/**
 * decideCallback with the state kept in memory, per job: for small servers and tests. A real server keeps
 * DeliveryState in its database, beside the job.
 */
export class CallbackLedger {
  readonly #jobs = new Map<string, { lastSeq: number; final: boolean; seen: Set<string> }>();

  /** Decides, and on `apply` records the delivery. */
  accept(jobId: string, update: Pick<CallbackUpdate, 'deliveryId' | 'deliverySeq' | 'status'>): ReturnType<typeof decideCallback> {
    const job = this.#jobs.get(jobId) ?? { lastSeq: 0, final: false, seen: new Set<string>() };
    this.#jobs.set(jobId, job);
    const decision = decideCallback({ lastSeq: job.lastSeq, final: job.final, seen: (id) => job.seen.has(id) }, update);
    if (decision === 'apply') {
      if (update.deliveryId !== undefined) job.seen.add(update.deliveryId);
      job.lastSeq = Math.max(job.lastSeq, update.deliverySeq ?? 0);
      if (update.status === 'completed') job.final = true;
    }
    return decision;
  }

  forget(jobId: string): void {
    this.#jobs.delete(jobId);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Live logs: POST <logsUrl>

export interface LogLine {
  /** Line number, from 0. */
  i: number;
  /** RFC 3339, as the engine stamped it. */
  ts: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface LogBatch {
  /** `x-foreman-job-id`, decoded; undefined when absent. */
  jobId: string | undefined;
  agentId: string | undefined;
  /** `x-foreman-log-offset`: the first line's number (the end's total on the last, empty request). */
  offset: number | undefined;
  /** `x-foreman-log-end`: the log's total number of lines, on the last request only. */
  end: number | undefined;
  /** Consecutive lines from `offset`, possibly none. */
  lines: LogLine[];
}

const MAX_TS_LENGTH = 64;

/**
 * Reads a log batch: NDJSON, one `{i, ts, stream, text}` object a line, numbered one after another from
 * `x-foreman-log-offset`. Checks the whole batch first: throws a 415 ProtocolError for a body that is not
 * `application/x-ndjson`, a 400 naming the first bad line otherwise. Fields other than these four are ignored.
 */
export function parseLogBatch(headers: HeaderSource, body?: Uint8Array | string): LogBatch {
  const contentType = headerValue(headers, 'content-type');
  const empty = body === undefined || body.length === 0;
  if (!empty && !(contentType !== undefined && /^application\/(x-)?ndjson\s*(;|$)/i.test(contentType.trim()))) {
    throw new ProtocolError(415, `unsupported content-type ${contentType ?? '(none)'}: send ${LOG_CONTENT_TYPE}`);
  }
  const offset = countHeader(headers, HEADERS.logOffset);
  const end = countHeader(headers, HEADERS.logEnd);
  const jobId = parseJobIdHeader(headers);
  return { jobId, agentId: parseAgentId(headers), offset, end, lines: parseLogLines(body, offset) };
}

function countHeader(headers: HeaderSource, name: string): number | undefined {
  const raw = headerValue(headers, name);
  if (raw === undefined) return undefined;
  if (!/^\s*\d{1,15}\s*$/.test(raw)) throw new ProtocolError(400, `${name} must be a non-negative integer`);
  return Number(raw);
}

/** The lines of an NDJSON batch body, numbered consecutively from `offset` when it is given (see parseLogBatch). */
export function parseLogLines(body: Uint8Array | string | undefined, offset: number | undefined): LogLine[] {
  if (body === undefined || body.length === 0) return [];
  let text: string;
  if (typeof body === 'string') {
    text = body;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      throw new ProtocolError(400, 'the body is not valid UTF-8');
    }
  }
  const lines: LogLine[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    if (raw.trim() === '') continue;
    const where = `body line ${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new ProtocolError(400, `${where} is not valid JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(400, `${where} is not a JSON object`);
    const { i, ts, stream, text: lineText } = value as Record<string, unknown>;
    if (typeof i !== 'number' || !Number.isSafeInteger(i) || i < 0) throw new ProtocolError(400, `${where}: "i" must be a non-negative integer`);
    if (typeof ts !== 'string' || ts === '' || ts.length > MAX_TS_LENGTH) throw new ProtocolError(400, `${where}: "ts" must be a timestamp string`);
    if (stream !== 'stdout' && stream !== 'stderr') throw new ProtocolError(400, `${where}: "stream" must be "stdout" or "stderr"`);
    if (typeof lineText !== 'string') throw new ProtocolError(400, `${where}: "text" must be a string`);
    const expected = lines.length === 0 ? (offset ?? i) : lines[0]!.i + lines.length;
    if (i !== expected) {
      const rule = lines.length === 0 ? HEADERS.logOffset : 'the previous line + 1';
      throw new ProtocolError(400, `${where}: "i" is ${i}, expected ${expected} (${rule})`);
    }
    lines.push({ i, ts, stream, text: lineText });
  }
  return lines;
}

/** A log batch as the agent sends it, for clients and tests: the body and its headers. */
export function formatLogBatch(lines: readonly LogLine[], options: { offset?: number; end?: number } = {}): { body: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { 'content-type': LOG_CONTENT_TYPE, [HEADERS.logOffset]: String(options.offset ?? lines[0]?.i ?? 0) };
  if (options.end !== undefined) headers[HEADERS.logEnd] = String(options.end);
  return { body: lines.map((line) => `${JSON.stringify(line)}\n`).join(''), headers };
}
