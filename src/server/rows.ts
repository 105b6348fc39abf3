// The control server's rows (migrations.ts makes the tables), and how rows become the JSON the API shows.

/** `completed`: the agent reported the end (see outcome). `canceled`: the server ended it without an agent's report. */
export type JobStatus = 'queued' | 'assigned' | 'running' | 'completed' | 'canceled';

export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'canceled'];

/** What GET /jobs and the dashboard see. */
export interface JobView {
  id: string;
  image: string;
  labels: Record<string, string>;
  status: JobStatus;
  progress: number | null;
  outcome: string | null;
  result: unknown;
  agentId: string | null;
  cancelRequested: boolean;
  cancelRequestedAt: string | null;
  /** How often the job went back to the queue because its agent was lost. */
  requeues: number;
  /** Log lines stored (POST /job/<id>/logs). */
  logLines: number;
  /** The agent sent the log's end and every line up to it is stored. */
  logComplete: boolean;
  createdAt: string;
  updatedAt: string;
  endedAt: string | null;
  /** The job's trace: the id of its `traceparent` (the submitter's, or one the server began). */
  traceId: string | null;
  /** The `traceparent` of the agent's last report applied: the span of the delivery attempt that carried it. */
  reportTraceparent: string | null;
  /** What its container used, from the final report's `x-foreman-usage`; null until then (or without one). */
  usage: Record<string, unknown> | null;
}

/** What an agent receives from GET /job (callbackUrl and logsUrl are added by the server). */
export interface AssignedJob {
  id: string;
  image: string;
  command?: string[];
  env?: Record<string, string>;
  body: unknown;
  alwaysPull?: boolean;
  timeout?: number;
  stallTimeout?: number;
  cancelGracePeriod?: number;
  resources?: { cpus?: number; memory?: number; pids?: number };
  /** W3C trace context: the agent's spans of the job continue it, and its container gets it as TRACEPARENT. */
  traceparent?: string;
  tracestate?: string;
}

export interface AgentView {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | null;
  lastPollAt: string;
  firstSeenAt: string;
  /** No poll for the agent timeout: its unfinished jobs were taken back. Cleared by its next poll. */
  lost: boolean;
  lostAt: string | null;
  /** The host's facts from its last `x-foreman-attributes` (empty until it sent some). */
  attributes: Record<string, string>;
  /** The image references from its last poll's `x-foreman-images`. */
  images: string[];
}

export interface JobRow {
  seq: number;
  id: string;
  image: string;
  command: string | null;
  env: string | null;
  body: string;
  labels: string;
  always_pull: number | null;
  /** timeout, stallTimeout, cancelGracePeriod and resources as JSON, when any was given. */
  run_options: string | null;
  status: JobStatus;
  progress: number | null;
  outcome: string | null;
  result: string | null;
  agent_id: string | null;
  last_seq: number;
  cancel_requested_at: number | null;
  requeues: number;
  log_lines: number;
  log_total: number | null;
  log_agent_id: string | null;
  /** The per-job secret its callbackUrl and logsUrl carry; null for jobs created before secrets. */
  secret: string | null;
  /** When it was last handed out (or handed again to the same agent, see Store.poll). */
  assigned_at: number | null;
  /** How often this attempt was handed out: 1, then more when handed again to the same agent. */
  handouts: number;
  /** When it became completed or canceled: retention counts from here. */
  ended_at: number | null;
  created_at: number;
  updated_at: number;
  traceparent: string | null;
  tracestate: string | null;
  report_traceparent: string | null;
  /** The final report's `x-foreman-usage` (JSON). */
  usage: string | null;
}

export interface AgentRow {
  id: string;
  labels: string;
  capacity: number;
  user_agent: string | null;
  last_poll_at: number;
  first_seen_at: number;
  lost_at: number | null;
  /** JSON object. */
  attributes: string | null;
  /** JSON array of image references. */
  images: string | null;
}

export function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export function toJobView(row: JobRow): JobView {
  return {
    id: row.id,
    image: row.image,
    labels: parseJson(row.labels) as Record<string, string>,
    status: row.status,
    progress: row.progress,
    outcome: row.outcome,
    result: parseJson(row.result),
    agentId: row.agent_id,
    cancelRequested: row.cancel_requested_at !== null,
    cancelRequestedAt: iso(row.cancel_requested_at),
    requeues: row.requeues,
    logLines: row.log_lines,
    // Lines beyond the end are refused, so the count is enough.
    logComplete: row.log_total !== null && row.log_lines === row.log_total,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    endedAt: iso(row.ended_at),
    traceId: row.traceparent?.split('-')[1] ?? null,
    reportTraceparent: row.report_traceparent,
    usage: parseJson(row.usage) as Record<string, unknown> | null,
  };
}

export function toAssignedJob(row: JobRow): AssignedJob {
  const job: AssignedJob = { id: row.id, image: row.image, body: parseJson(row.body) };
  if (row.command !== null) job.command = parseJson(row.command) as string[];
  if (row.env !== null) job.env = parseJson(row.env) as Record<string, string>;
  if (row.always_pull !== null) job.alwaysPull = row.always_pull === 1;
  if (row.run_options !== null) Object.assign(job, parseJson(row.run_options));
  if (row.traceparent !== null) job.traceparent = row.traceparent;
  if (row.tracestate !== null) job.tracestate = row.tracestate;
  return job;
}

export function toAgentView(row: AgentRow): AgentView {
  return {
    id: row.id,
    labels: parseJson(row.labels) as Record<string, string>,
    capacity: row.capacity,
    userAgent: row.user_agent,
    lastPollAt: new Date(row.last_poll_at).toISOString(),
    firstSeenAt: new Date(row.first_seen_at).toISOString(),
    lost: row.lost_at !== null,
    lostAt: iso(row.lost_at),
    attributes: (parseJson(row.attributes) ?? {}) as Record<string, string>,
    images: (parseJson(row.images) ?? []) as string[],
  };
}
