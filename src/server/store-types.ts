// The shapes the store's operations take and return (store.ts), apart so the store itself stays about its SQL.
import type { AgentView, AssignedJob, JobStatus, JobView } from './rows.ts';

export interface NewJob {
  /** Default: a random UUID. */
  id?: string | undefined;
  image: string;
  command?: string[] | undefined;
  env?: Record<string, string> | undefined;
  body?: unknown;
  /** Labels an agent must carry (same values) to be handed this job. */
  labels?: Record<string, string> | undefined;
  alwaysPull?: boolean | undefined;
  /** How the agent runs it (ms, and the container's limits): handed out as they are. */
  timeout?: number | undefined;
  stallTimeout?: number | undefined;
  cancelGracePeriod?: number | undefined;
  resources?: { cpus?: number | undefined; memory?: number | undefined; pids?: number | undefined } | undefined;
  /** The job's W3C trace context (checked by the server); when none is given the server begins a trace. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

export interface CallbackUpdate {
  jobId: string;
  /** The secret the callback URL carried; undefined when it carried none. */
  secret: string | undefined;
  /** x-foreman-agent-id of the delivery; undefined for clients that do not send it. */
  agentId: string | undefined;
  status: 'running' | 'completed';
  progress: number | undefined;
  outcome: string | undefined;
  /** undefined when the delivery carried no body (keeps the previous result). */
  result: unknown;
  deliveryId: string | undefined;
  deliverySeq: number | undefined;
  /** The delivery's `traceparent` header: where the agent's report sits in the job's trace. */
  traceparent?: string | undefined;
  /** The final report's `x-foreman-usage`, as received (checked JSON); undefined when it carried none. */
  usage?: string | undefined;
}

export type CallbackResult =
  | { kind: 'unknown-job' }
  /** The URL's secret is missing or wrong: nothing is looked at further. */
  | { kind: 'forbidden' }
  /** `cancel`: the copy that sent this update should stop (answer with x-foreman-cancel). */
  | { kind: 'duplicate' | 'stale' | 'already-completed' | 'other-agent'; cancel: boolean }
  | { kind: 'applied'; job: JobView; cancel: boolean };

export type CancelResult =
  | { kind: 'unknown-job' }
  | { kind: 'already-ended'; job: JobView }
  /** `canceled`: ended at once (it was queued); `requested`: its agent is asked to cancel it. */
  | { kind: 'canceled' | 'requested'; job: JobView };

export type CreateResult = { kind: 'created'; job: JobView } | { kind: 'exists' } | { kind: 'queue-full'; queued: number };

export interface PollInput {
  id: string;
  labels: Record<string, string>;
  capacity: number;
  userAgent: string | undefined;
  /** `x-foreman-attributes`, parsed; undefined when the poll carried none (the last ones seen are kept). */
  attributes?: Record<string, string> | undefined;
  /** `x-foreman-images`: the image references the agent has; undefined when the poll carried none. */
  images?: readonly string[] | undefined;
}

export interface PollOptions {
  /** Hand a job again to the agent it was handed to after this long without news (0: never). */
  redeliverAfterMs: number;
  /** How long after it was queued a job waits for a live agent that has its image (0: no preference). */
  imagePreferenceMs: number;
  /** An agent counts as live for the preference when it polled within this long (the agent timeout). */
  liveWithinMs: number;
}

export interface PollResult {
  agent: AgentView;
  /** The jobs to hand out (without their URLs: the server adds them) with each one's secret. */
  assigned: Array<{ job: AssignedJob; secret: string | null }>;
  /** Jobs this agent holds that should be canceled, oldest request first. */
  cancel: string[];
}

export interface SweepResult {
  /** Agents found lost by this sweep. */
  agents: AgentView[];
  /** Jobs taken back from lost agents (requeued, or canceled when a cancel was pending). */
  jobs: JobView[];
}

export interface JobFilter {
  /** At most this many, newest first. */
  limit: number;
  /** Only jobs older than this cursor (from a previous page). */
  before?: number | undefined;
  status?: readonly JobStatus[] | undefined;
  /** Only jobs requiring all of these labels, with these values. */
  labels?: Record<string, string> | undefined;
  agentId?: string | undefined;
}

export interface JobPage {
  jobs: JobView[];
  /** The cursor of the next (older) page; undefined when this one is the last. */
  next: number | undefined;
}
