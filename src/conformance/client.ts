// The conformance checker's side of the wire: it plays agents (polls, callbacks, log batches) against a control
// server, and enqueues and cancels jobs the way the server's author said (a command or an HTTP request template).
import { execFile } from 'node:child_process';
import { HEADERS, formatLabelsHeader, parseCancelHeader } from '../../packages/control-server-kit/index.ts';

export interface Hook {
  /** A shell command; {{placeholders}} replaced, and also in the environment (FOREMAN_CONFORMANCE_*). */
  command?: string | undefined;
  /** An HTTP request: URL template, method, headers and body template. */
  url?: string | undefined;
  method?: string | undefined;
  headers?: readonly string[] | undefined;
  body?: string | undefined;
}

export interface CheckerOptions {
  /** The URL agents poll (core.url). */
  url: string;
  token: string;
  enqueue: Hook;
  cancel: Hook | undefined;
  /** How long to wait for the server to take a silent agent's job back; 0 skips that rule. */
  lostAfterMs: number;
  /** How long one request may take. */
  timeoutMs: number;
  /** The environment a command hook runs in (with FOREMAN_CONFORMANCE_* added). */
  env: Readonly<Record<string, string | undefined>>;
}

export interface HandedJob {
  id: string;
  image?: unknown;
  body?: unknown;
  callbackUrl?: unknown;
  logsUrl?: unknown;
}

export interface PollReply {
  status: number;
  jobs: HandedJob[];
  cancel: string[];
  /** Why the reply is not a valid poll reply, when it is not. */
  problem: string | undefined;
}

export interface Reply {
  status: number;
  cancel: string[];
}

export const LABEL_KEY = 'foreman-conformance';
export const IMAGE = 'foreman-conformance:never-run';

/** Replaces {{id}}, {{run}}, {{label}} and {{image}}; `json` escapes values for a JSON string. */
export function fill(template: string, values: Record<string, string>, json = false): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) return whole;
    return json ? JSON.stringify(value).slice(1, -1) : value;
  });
}

export class Wire {
  constructor(readonly options: CheckerOptions) {}

  async #fetch(url: string, init: RequestInit): Promise<Response> {
    return fetch(url, { ...init, signal: AbortSignal.timeout(this.options.timeoutMs), redirect: 'manual' });
  }

  /** A poll as agent `agentId` with the labels of `run`; with `token` null, without any. */
  async poll(agentId: string, run: string, capacity: number, token: string | null = this.options.token): Promise<PollReply> {
    const headers: Record<string, string> = {
      'user-agent': 'foreman-conformance',
      [HEADERS.agentId]: agentId,
      [HEADERS.labels]: formatLabelsHeader({ [LABEL_KEY]: run }),
      [HEADERS.capacity]: String(capacity),
    };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const response = await this.#fetch(this.options.url, { headers });
    const cancel = parseCancelHeader(response.headers.get(HEADERS.cancel));
    const text = await response.text();
    if (response.status === 204) return { status: 204, jobs: [], cancel, problem: undefined };
    if (response.status < 200 || response.status > 299) return { status: response.status, jobs: [], cancel, problem: `HTTP ${response.status}` };
    let parsed: unknown;
    try {
      parsed = text.trim() === '' ? [] : (JSON.parse(text) as unknown);
    } catch {
      return { status: response.status, jobs: [], cancel, problem: 'the reply is not JSON' };
    }
    const list: unknown[] = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
    const bad = list.find((job) => typeof job !== 'object' || job === null || typeof (job as { id?: unknown }).id !== 'string');
    if (bad !== undefined) return { status: response.status, jobs: [], cancel, problem: `a job without a string id: ${JSON.stringify(bad).slice(0, 200)}` };
    return { status: response.status, jobs: list as HandedJob[], cancel, problem: undefined };
  }

  /** A forwarded update, as the agent sends it. */
  async update(
    job: HandedJob,
    agentId: string,
    update: { status: 'running' | 'completed'; seq: number; deliveryId: string; progress?: number; outcome?: string; body?: unknown },
  ): Promise<Reply> {
    const headers: Record<string, string> = {
      'user-agent': 'foreman-conformance',
      [HEADERS.jobStatus]: update.status,
      [HEADERS.jobId]: encodeURIComponent(job.id),
      [HEADERS.agentId]: agentId,
      [HEADERS.deliveryId]: update.deliveryId,
      [HEADERS.deliverySeq]: String(update.seq),
    };
    if (update.progress !== undefined) headers[HEADERS.jobProgress] = String(update.progress);
    if (update.outcome !== undefined) headers[HEADERS.jobOutcome] = update.outcome;
    if (update.body !== undefined) headers['content-type'] = 'application/json';
    const response = await this.#fetch(String(job.callbackUrl), {
      method: 'PUT',
      headers,
      ...(update.body === undefined ? {} : { body: JSON.stringify(update.body) }),
    });
    await response.arrayBuffer();
    return { status: response.status, cancel: parseCancelHeader(response.headers.get(HEADERS.cancel)) };
  }

  /** A log batch of lines [from, to), or the log's end when `end` is given and there are no lines. */
  async logs(job: HandedJob, agentId: string, from: number, to: number, end?: number): Promise<Reply> {
    const lines = Array.from({ length: to - from }, (_, k) => ({
      i: from + k,
      ts: new Date().toISOString(),
      stream: k % 2 === 0 ? 'stdout' : 'stderr',
      text: `conformance line ${from + k}`,
    }));
    const headers: Record<string, string> = {
      'content-type': 'application/x-ndjson',
      [HEADERS.jobId]: encodeURIComponent(job.id),
      [HEADERS.agentId]: agentId,
      [HEADERS.logOffset]: String(end ?? from),
    };
    if (end !== undefined) headers[HEADERS.logEnd] = String(end);
    const response = await this.#fetch(String(job.logsUrl), {
      method: 'POST',
      headers,
      body: lines.map((line) => `${JSON.stringify(line)}\n`).join(''),
    });
    await response.arrayBuffer();
    return { status: response.status, cancel: [] };
  }

  /** Runs a hook (enqueue or cancel) for a job; throws with what went wrong. */
  async run(hook: Hook, values: Record<string, string>): Promise<void> {
    if (hook.command !== undefined) {
      const env: Record<string, string | undefined> = { ...this.options.env };
      for (const [name, value] of Object.entries(values)) env[`FOREMAN_CONFORMANCE_${name.toUpperCase()}`] = value;
      await new Promise<void>((resolve, reject) => {
        execFile('/bin/sh', ['-c', fill(hook.command!, values)], { env, timeout: this.options.timeoutMs }, (error, _stdout, stderr) =>
          error === null ? resolve() : reject(new Error(`the command failed (${error.message.split('\n')[0] ?? ''}): ${stderr.trim().slice(0, 300)}`)),
        );
      });
      return;
    }
    const headers: Record<string, string> = {};
    for (const line of hook.headers ?? []) {
      const at = line.indexOf(':');
      if (at > 0) headers[line.slice(0, at).trim().toLowerCase()] = fill(line.slice(at + 1).trim(), values);
    }
    const body = hook.body === undefined ? undefined : fill(hook.body, values, (headers['content-type'] ?? 'application/json').includes('json'));
    if (body !== undefined) headers['content-type'] ??= 'application/json';
    const response = await this.#fetch(fill(hook.url ?? '', values), { method: hook.method ?? 'POST', headers, ...(body === undefined ? {} : { body }) });
    const text = await response.text();
    if (response.status < 200 || response.status > 299)
      throw new Error(`${hook.method ?? 'POST'} ${fill(hook.url ?? '', values)} answered HTTP ${response.status}: ${text.slice(0, 300)}`);
  }
}
