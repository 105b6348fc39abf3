/**
 * A load balancer for tests, in front of several control server instances: each request goes to an instance picked
 * at random; one that refuses the connection (it is down) is passed over for another, as a balancer's passive health
 * check does; a request cut off mid-way is answered 502 (the agent retries it). It records what the agents were
 * handed (poll replies) and what they reported (callbacks), for the test to check.
 */
import { once } from 'node:events';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HandOut {
  jobId: string;
  agentId: string;
  backend: number;
  at: number;
}

export interface Report {
  jobId: string;
  agentId: string;
  status: string;
  seq: number | undefined;
  outcome: string | undefined;
  answered: number;
}

export interface Balancer {
  readonly url: string;
  readonly handOuts: HandOut[];
  readonly reports: Report[];
  /** Requests each backend answered. */
  readonly answered: number[];
  close(): Promise<void>;
}

export async function startBalancer(backends: readonly string[]): Promise<Balancer> {
  const handOuts: HandOut[] = [];
  const reports: Report[] = [];
  const answered = backends.map(() => 0);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });

  const forward = (incoming: IncomingMessage, body: Buffer, response: ServerResponse, tried: Set<number>): void => {
    const left = backends.map((_, i) => i).filter((i) => !tried.has(i));
    const pick = left[Math.floor(Math.random() * left.length)];
    if (pick === undefined) {
      response.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"no control server instance answers"}');
      return;
    }
    tried.add(pick);
    const target = new URL(incoming.url ?? '/', backends[pick]);
    const outgoing = httpRequest(target, { method: incoming.method, headers: { ...incoming.headers, host: target.host }, agent: keepAlive }, (reply) => {
      const chunks: Buffer[] = [];
      reply.on('data', (chunk: Buffer) => chunks.push(chunk));
      reply.on('end', () => {
        const replyBody = Buffer.concat(chunks);
        answered[pick] = (answered[pick] ?? 0) + 1;
        record(incoming, reply, replyBody, pick);
        response.writeHead(reply.statusCode ?? 502, reply.headers).end(replyBody);
      });
      reply.on('error', () => {
        if (!response.headersSent) response.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"the instance went away"}');
      });
    });
    outgoing.on('error', (error: NodeJS.ErrnoException) => {
      // Refused: the request never reached it, so another instance may take it. Anything else: it may have.
      if (error.code === 'ECONNREFUSED') forward(incoming, body, response, tried);
      else if (!response.headersSent) response.writeHead(502, { 'content-type': 'application/json' }).end(`{"error":"${error.code ?? 'failed'}"}`);
    });
    outgoing.end(body);
  };

  const record = (incoming: IncomingMessage, reply: IncomingMessage, body: Buffer, backend: number): void => {
    const agentId = String(incoming.headers['x-foreman-agent-id'] ?? '');
    const path = (incoming.url ?? '').split('?')[0] ?? '';
    if (incoming.method === 'GET' && path === '/job' && reply.statusCode === 200) {
      try {
        for (const job of JSON.parse(body.toString()) as Array<{ id: string }>) handOuts.push({ jobId: job.id, agentId, backend, at: Date.now() });
      } catch {
        // not a hand-out
      }
    } else if (incoming.method === 'PUT' && path.startsWith('/job/')) {
      const seq = incoming.headers['x-foreman-delivery-seq'];
      reports.push({
        jobId: decodeURIComponent(path.slice('/job/'.length)),
        agentId,
        status: String(incoming.headers['x-foreman-job-status'] ?? ''),
        seq: seq === undefined ? undefined : Number(seq),
        outcome: incoming.headers['x-foreman-job-outcome'] as string | undefined,
        answered: reply.statusCode ?? 0,
      });
    }
  };

  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => forward(incoming, Buffer.concat(chunks), response, new Set()));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    handOuts,
    reports,
    answered,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      keepAlive.destroy();
    },
  };
}
