/** The job as the job API hands it out: its id and the `body` the control server gave it. */
export interface Job<Body = unknown> {
  readonly id: string;
  readonly body: Body;
}

/** What an update or a result may carry: JSON-able values go out as JSON, strings as text, bytes as they are. */
export type UpdateBody = Uint8Array | string | number | boolean | null | readonly unknown[] | { readonly [key: string]: unknown };

export interface RetryInfo {
  /** 1 for the first retry. */
  readonly attempt: number;
  /** The pause before the next attempt. */
  readonly delayMs: number;
  /** Why the last attempt failed: `ECONNREFUSED`, `ECONNRESET`, `timeout`, `503`, … */
  readonly reason: string;
}

export interface JobClientOptions {
  /** Default: the environment's FOREMAN_GET_JOB_ENDPOINT. */
  readonly getEndpoint?: string;
  /** Default: the environment's FOREMAN_PUT_JOB_ENDPOINT. */
  readonly putEndpoint?: string;
  /** How long one call retries connection errors and 503 in all (default 120000: an agent restart's window). */
  readonly retryForMs?: number;
  /** How long one attempt may take before it counts as a connection error (default 30000). */
  readonly attemptTimeoutMs?: number;
  /** Told before each retry. */
  readonly onRetry?: (info: RetryInfo) => void;
}

export interface FailOptions {
  /** The process's exit code, which the agent's `failed` report carries (default 1). */
  readonly exitCode?: number;
  /** false: send the update and return, without exiting. */
  readonly exit?: boolean;
}

export interface JobClient {
  /** The job. Marks it running. */
  getJob<Body = unknown>(): Promise<Job<Body>>;
  /** A `running` update: `fraction` (0 to 1) in `x-foreman-job-progress`, `body` forwarded to the control server as is. */
  progress(fraction: number, body?: UpdateBody): Promise<void>;
  /** The final update: `result` is the job's result. Any later call throws JobEndedError. */
  complete(result?: UpdateBody): Promise<void>;
  /** `result` as a last `running` update, then exit with `exitCode`: the agent reports the job `failed`. */
  fail(result?: UpdateBody, options?: FailOptions): Promise<void>;
}

/** The job API answered with an error the job cannot retry (400, 404, 413, …), or kept failing for `retryForMs`. */
export class JobApiError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  readonly body: unknown;
  constructor(message: string, status: number, body: unknown);
}

/** 409: the job has already ended (completed, canceled, timed out or failed). Stop working. */
export class JobEndedError extends JobApiError {
  constructor(message: string, body: unknown);
}

export declare const STATUS_HEADER: 'x-foreman-job-status';
export declare const PROGRESS_HEADER: 'x-foreman-job-progress';
export declare const GET_ENDPOINT_ENV: 'FOREMAN_GET_JOB_ENDPOINT';
export declare const PUT_ENDPOINT_ENV: 'FOREMAN_PUT_JOB_ENDPOINT';
export declare const DEFAULT_RETRY_FOR_MS: number;
export declare const DEFAULT_ATTEMPT_TIMEOUT_MS: number;

export function createJobClient(options?: JobClientOptions): JobClient;
/** The job, from FOREMAN_GET_JOB_ENDPOINT. Marks it running. */
export function getJob<Body = unknown>(): Promise<Job<Body>>;
/** A `running` update with `fraction` as its progress and `body` forwarded as is. */
export function progress(fraction: number, body?: UpdateBody): Promise<void>;
/** The final update: `result` is the job's result. */
export function complete(result?: UpdateBody): Promise<void>;
/** `result` as a last `running` update, then exit with `exitCode` (default 1): the agent reports `failed`. */
export function fail(result?: UpdateBody, options?: FailOptions): Promise<void>;
