/**
 * A small control server written with the control-server kit (packages/control-server-kit), in memory, that can be
 * told to break rules of the protocol on purpose, for `foreman conformance` to catch. Without faults it keeps every
 * rule. Jobs are enqueued with POST /enqueue {id, labels} and canceled with POST /cancel/<id>.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  CANCEL_HEADER,
  ProtocolError,
  bearerToken,
  decideCallback,
  formatCancelHeader,
  labelsMatch,
  parseCallback,
  parseLogBatch,
  parsePoll,
} from '../../packages/control-server-kit/index.ts';

export type Fault =
  /** Accepts any token. */
  | 'auth'
  /** Hands out every matching job, whatever the capacity. */
  | 'capacity'
  /** Puts a job back in the queue when its final update arrives. */
  | 'rehand'
  /** Answers 409 to a delivery it has seen. */
  | 'duplicate'
  /** Applies every delivery, whatever its seq: a late older one reopens an ended job. */
  | 'stale'
  /** Never sends x-foreman-cancel. */
  | 'cancel'
  /** Answers 409 to a log batch it has lines of. */
  | 'logs'
  /** Never takes a silent agent's job back. */
  | 'lost';

export const FAULTS: readonly Fault[] = ['auth', 'capacity', 'rehand', 'duplicate', 'stale', 'cancel', 'logs', 'lost'];

interface Job {
  id: string;
  labels: Record<string, string>;
  status: 'queued' | 'assigned' | 'running' | 'completed';
  agentId?: string | undefined;
  lastSeq: number;
  seen: Set<string>;
  cancel: boolean;
  logLines: Set<number>;
}

export interface BrokenServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startBrokenServer(token: string, faults: readonly Fault[], agentTimeoutMs = 500): Promise<BrokenServer> {
  const broken = new Set(faults);
  const jobs = new Map<string, Job>();
  const lastPoll = new Map<string, number>();
  let base = '';

  const reply = (response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };
  const cancelHeader = (ids: string[]): Record<string, string> => {
    const value = broken.has('cancel') ? undefined : formatCancelHeader(ids);
    return value === undefined ? {} : { [CANCEL_HEADER]: value };
  };
  const sweep = () => {
    if (broken.has('lost')) return;
    for (const job of jobs.values()) {
      if ((job.status === 'assigned' || job.status === 'running') && Date.now() - (lastPoll.get(job.agentId ?? '') ?? 0) > agentTimeoutMs) {
        Object.assign(job, { status: 'queued', agentId: undefined, lastSeq: 0 });
      }
    }
  };

  const handle = (request: IncomingMessage, response: ServerResponse, body: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://x');
    const path = url.pathname;
    if (request.method === 'POST' && path === '/enqueue') {
      const { id, labels } = JSON.parse(body.toString()) as { id: string; labels: Record<string, string> };
      jobs.set(id, { id, labels, status: 'queued', lastSeq: 0, seen: new Set(), cancel: false, logLines: new Set() });
      return reply(response, 201, { id });
    }
    const cancel = /^\/cancel\/(.+)$/.exec(path);
    if (request.method === 'POST' && cancel) {
      const job = jobs.get(decodeURIComponent(cancel[1]!));
      if (job === undefined || job.status === 'completed') return reply(response, 409, { error: 'ended' });
      job.cancel = true;
      return reply(response, 202, {});
    }
    if (request.method === 'GET' && path === '/job') {
      if (!broken.has('auth') && bearerToken(request.headers) !== token) return reply(response, 401, { error: 'token' });
      const poll = parsePoll(request.headers);
      const agentId = poll.agentId ?? 'anonymous';
      lastPoll.set(agentId, Date.now());
      sweep();
      const handed: Job[] = [];
      for (const job of jobs.values()) {
        if (job.status !== 'queued' || !labelsMatch(job.labels, poll.labels)) continue;
        if (!broken.has('capacity') && handed.length >= poll.capacity) break;
        Object.assign(job, { status: 'assigned', agentId });
        handed.push(job);
      }
      const cancels = [...jobs.values()].filter((job) => job.agentId === agentId && job.cancel && job.status !== 'completed').map((job) => job.id);
      const items = handed.map((job) => ({
        id: job.id,
        image: 'img',
        body: null,
        callbackUrl: `${base}/cb/${encodeURIComponent(job.id)}`,
        logsUrl: `${base}/cb/${encodeURIComponent(job.id)}/logs`,
      }));
      return reply(response, 200, items, cancelHeader(cancels));
    }
    const logs = /^\/cb\/([^/]+)\/logs$/.exec(path);
    if (request.method === 'POST' && logs) {
      const job = jobs.get(decodeURIComponent(logs[1]!));
      if (job === undefined) return reply(response, 404, { error: 'unknown job' });
      const batch = parseLogBatch(request.headers, body);
      if (broken.has('logs') && batch.lines.some((line) => job.logLines.has(line.i))) return reply(response, 409, { error: 'seen' });
      for (const line of batch.lines) job.logLines.add(line.i);
      return reply(response, 200, { ok: true });
    }
    const callback = /^\/cb\/([^/]+)$/.exec(path);
    if (request.method === 'PUT' && callback) {
      const job = jobs.get(decodeURIComponent(callback[1]!));
      if (job === undefined) return reply(response, 404, { error: 'unknown job' });
      const update = parseCallback(request.headers, body);
      const decision = broken.has('stale')
        ? update.deliveryId !== undefined && job.seen.has(update.deliveryId)
          ? 'duplicate'
          : 'apply'
        : decideCallback({ lastSeq: job.lastSeq, final: job.status === 'completed', seen: (id) => job.seen.has(id) }, update);
      if (decision === 'duplicate' && broken.has('duplicate')) return reply(response, 409, { error: 'seen' });
      if (decision === 'apply') {
        if (update.deliveryId !== undefined) job.seen.add(update.deliveryId);
        job.lastSeq = Math.max(job.lastSeq, update.deliverySeq ?? 0);
        job.status = update.status;
        if (update.status === 'completed' && broken.has('rehand')) Object.assign(job, { status: 'queued', agentId: undefined });
      }
      const ids = job.cancel && job.status === 'running' ? [job.id] : [];
      return reply(response, 200, { ok: true, decision }, cancelHeader(ids));
    }
    return reply(response, 404, { error: 'no route' });
  };

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      try {
        handle(request, response, Buffer.concat(chunks));
      } catch (error) {
        if (error instanceof ProtocolError) reply(response, error.status, { error: error.message });
        else reply(response, 500, { error: String(error) });
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
