// foreman-job: the job side of foreman's job API, for JavaScript and TypeScript jobs. No dependencies: Node's own
// node:http (not fetch, which refuses some ports an agent may listen on, 6000 and 10080 among them).
// docs/openapi/job-api.yaml is the contract; docs/writing-jobs.md shows it beside the curl version.
//
//   import { getJob, progress, complete, fail } from 'foreman-job';
//   const job = await getJob();             // { id, body }
//   await progress(0.5, { step: 1 });       // x-foreman-job-status: running, x-foreman-job-progress: 0.5
//   await complete({ result: 42 });         // final: the job's result
//   await fail({ error: 'disk full' });     // sends it as a last update, then exits 1: the agent reports "failed"
//
// Every call retries connection errors and 503 for `retryForMs` (two minutes by default): while the agent restarts
// its job API does not answer, and the same request succeeds once it is back. 409 (the job has ended) throws
// JobEndedError: stop. Other errors throw JobApiError.

/* global process, setTimeout, URL, Buffer */

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export const STATUS_HEADER = 'x-foreman-job-status';
export const PROGRESS_HEADER = 'x-foreman-job-progress';
export const GET_ENDPOINT_ENV = 'FOREMAN_GET_JOB_ENDPOINT';
export const PUT_ENDPOINT_ENV = 'FOREMAN_PUT_JOB_ENDPOINT';
/** How long a call retries connection errors and 503 in all, by default: an agent restart's window. */
export const DEFAULT_RETRY_FOR_MS = 120_000;
/** How long one attempt may take before it counts as a connection error. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000;

/** The job API answered with an error the job cannot retry (400, 404, 413, …). */
export class JobApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = 'JobApiError';
    this.status = status;
    this.body = body;
  }
}

/** 409: the job has already ended (it completed, or was canceled, timed out or failed). Stop working. */
export class JobEndedError extends JobApiError {
  constructor(message, body) {
    super(message, 409, body);
    this.name = 'JobEndedError';
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A body as bytes and its content type: bytes and strings as they are, anything else as JSON. */
function encodeBody(body) {
  if (body === undefined) return { data: undefined, type: undefined };
  if (body instanceof Uint8Array) return { data: body, type: 'application/octet-stream' };
  if (typeof body === 'string') return { data: body, type: 'text/plain; charset=utf-8' };
  const json = JSON.stringify(body);
  if (json === undefined) throw new TypeError('the body cannot be written as JSON');
  return { data: Buffer.from(json), type: 'application/json' };
}

/** Why a request failed, in a few words: its code (ECONNREFUSED, ECONNRESET, …) when it has one. */
function reasonOf(err) {
  if (err && err.code) return err.code;
  return err instanceof Error ? err.message : String(err);
}

/** One HTTP exchange: the status and the body as text. Rejects on a connection error or after `timeoutMs`. */
function send(method, url, headers, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method, headers, timeout: timeoutMs }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('no answer in time'), { code: 'timeout' })));
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * A client of one job's API. Options (all optional): `getEndpoint`, `putEndpoint` (default: the environment's
 * FOREMAN_GET_JOB_ENDPOINT and FOREMAN_PUT_JOB_ENDPOINT), `retryForMs` (120000), `attemptTimeoutMs` (30000),
 * `onRetry({ attempt, delayMs, reason })`.
 */
export function createJobClient(options = {}) {
  const env = typeof process === 'object' && process.env ? process.env : {};
  const retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  const endpoint = (given, name) => {
    const url = given ?? env[name];
    if (!url) throw new JobApiError(`${name} is not set: is this running in a foreman job container?`, 0, undefined);
    try {
      new URL(url);
    } catch {
      throw new JobApiError(`${name} is not a URL`, 0, undefined);
    }
    return url;
  };

  /** One request, retried on connection errors and 503 until `retryForMs` has passed; the parsed JSON answer. */
  async function call(method, url, headers, body) {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      let reason;
      try {
        const { status, text } = await send(method, url, headers, body, attemptTimeoutMs);
        let parsed;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = text;
        }
        if (status >= 200 && status < 300) return parsed;
        const message = `${method} ${redact(url)}: ${status}${parsed && parsed.error ? ` ${parsed.error}` : ''}`;
        if (status === 409) throw new JobEndedError(message, parsed);
        if (status !== 503) throw new JobApiError(message, status, parsed);
        reason = '503';
      } catch (err) {
        if (err instanceof JobApiError) throw err;
        reason = reasonOf(err);
        if (Date.now() - started >= retryForMs) throw new JobApiError(`${method} ${redact(url)} failed for ${retryForMs} ms: ${reason}`, 0, undefined);
      }
      if (Date.now() - started >= retryForMs) throw new JobApiError(`${method} ${redact(url)} answered 503 for ${retryForMs} ms`, 503, undefined);
      // Capped exponential backoff with full jitter, never past the deadline.
      const cap = Math.min(2000, 100 * 2 ** attempt);
      const delayMs = Math.max(0, Math.min(Math.round(cap / 2 + (Math.random() * cap) / 2), retryForMs - (Date.now() - started)));
      if (options.onRetry) options.onRetry({ attempt, delayMs, reason });
      await sleep(delayMs);
    }
  }

  async function put(status, progressValue, body) {
    const { data, type } = encodeBody(body);
    const headers = { [STATUS_HEADER]: status };
    if (progressValue !== undefined) headers[PROGRESS_HEADER] = String(progressValue);
    if (type) headers['content-type'] = type;
    await call('PUT', endpoint(options.putEndpoint, PUT_ENDPOINT_ENV), headers, data);
  }

  return {
    /** The job: `{ id, body }`. Marks it running. */
    async getJob() {
      const job = await call('GET', endpoint(options.getEndpoint, GET_ENDPOINT_ENV), { accept: 'application/json' }, undefined);
      if (!job || typeof job !== 'object' || typeof job.id !== 'string') throw new JobApiError('the job API sent no job', 200, job);
      return { id: job.id, body: job.body };
    },
    /** A `running` update: `fraction` (0 to 1) as its progress, `body` (JSON, a string or bytes) forwarded as is. */
    async progress(fraction, body) {
      if (typeof fraction !== 'number' || !Number.isFinite(fraction)) throw new TypeError(`progress must be a finite number, not ${String(fraction)}`);
      await put('running', fraction, body);
    },
    /** The final update: `result` (JSON, a string or bytes) is the job's result. Later calls get JobEndedError. */
    async complete(result) {
      await put('completed', 1, result);
    },
    /**
     * Reports a failure: `result` goes out as a last `running` update (so the control server has the details, in
     * order), then the process exits with `exitCode` (default 1) and the agent reports the job `failed` with that
     * code and the last lines of output. Pass `{ exit: false }` to send the update only.
     */
    async fail(result, failOptions = {}) {
      await put('running', undefined, result);
      if (failOptions.exit === false) return;
      process.exit(failOptions.exitCode ?? 1);
    },
  };
}

/** The URL without its secret, for messages. */
function redact(url) {
  try {
    const parsed = new URL(url);
    if (parsed.searchParams.has('token')) parsed.searchParams.set('token', '***');
    return parsed.toString();
  } catch {
    return '(the job URL)';
  }
}

let defaultClient;
const client = () => (defaultClient ??= createJobClient());

/** The job, `{ id, body }`, from FOREMAN_GET_JOB_ENDPOINT. Marks it running. */
export const getJob = () => client().getJob();
/** A `running` update with `fraction` as its progress and `body` forwarded as is. */
export const progress = (fraction, body) => client().progress(fraction, body);
/** The final update: `result` is the job's result. */
export const complete = (result) => client().complete(result);
/** A last `running` update with `result`, then exit with `exitCode` (default 1): the agent reports `failed`. */
export const fail = (result, options) => client().fail(result, options);
