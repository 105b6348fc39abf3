/**
 * The servers an agent talks to, faked and recording: a control server and a callback (or logs) receiver.
 * Each checks every request it receives against docs/openapi/control-server.yaml, and its close (or stop)
 * fails with the requests that broke it: so every end-to-end test that uses them checks the agent's real
 * traffic against the contract.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { controlServerContract, Violations, type Contract } from './contract.ts';
import { freePort } from './ports.ts';
import { waitFor } from './wait.ts';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly body: Buffer;
  readonly at: number;
}

async function listen(server: Server, host = '127.0.0.1', port = 0): Promise<number> {
  server.listen(port, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolveBody(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function close(server: Server | undefined): Promise<void> {
  server?.closeAllConnections();
  await new Promise<void>((r) => server?.close(() => r()) ?? r());
}

export type PollReply = { status: number; body?: string } | unknown[] | Record<string, unknown>;

/** A control server that hands out queued replies, one per poll, and records every poll. */
export class FakeControlServer {
  readonly polls: RecordedRequest[] = [];
  /** Requests that broke docs/openapi/control-server.yaml; close() fails while any are here. */
  readonly violations = new Violations();
  /** Sent on every poll reply while set, e.g. `{ 'x-foreman-cancel': 'job-1' }`. */
  replyHeaders: Record<string, string> = {};
  private readonly replies: PollReply[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    const contract = await controlServerContract();
    this.server = createServer((req, res) => {
      void readBody(req).then((body) => {
        const recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body, at: Date.now() };
        this.polls.push(recorded);
        this.violations.add(contract.checkRequest(recorded));
        const reply = this.replies.shift();
        const headers = { 'content-type': 'application/json', ...this.replyHeaders };
        if (reply === undefined) {
          res.writeHead(200, headers).end('[]');
        } else if (!Array.isArray(reply) && typeof reply.status === 'number' && Object.keys(reply).every((k) => k === 'status' || k === 'body')) {
          res.writeHead(reply.status, headers).end(reply.body ?? '');
        } else {
          res.writeHead(200, headers).end(JSON.stringify(reply));
        }
      });
    });
    const port = await listen(this.server);
    this.url = `http://127.0.0.1:${port}/job`;
    return this;
  }

  /** Queues replies for the next polls. */
  reply(...replies: PollReply[]): void {
    this.replies.push(...replies);
  }

  get queued(): number {
    return this.replies.length;
  }

  /** The agent id the first poll carried (`x-foreman-agent-id`), once an agent polled. */
  get agentId(): string | undefined {
    const id = this.polls.find((p) => p.headers['x-foreman-agent-id'])?.headers['x-foreman-agent-id'];
    return id === undefined ? undefined : String(id);
  }

  async close(): Promise<void> {
    await close(this.server);
    this.violations.assertNone('the fake control server', 'docs/openapi/control-server.yaml');
  }
}

/** A callback receiver recording every request; its answer can be changed, and it can go down and come back. */
export class CallbackReceiver {
  readonly requests: RecordedRequest[] = [];
  /** Requests that broke docs/openapi/control-server.yaml; stop() fails while any are here. */
  readonly violations = new Violations();
  status = 200;
  /** Sent on every reply while set, e.g. `{ 'x-foreman-cancel': 'job-1' }`. */
  replyHeaders: Record<string, string> = {};
  private server: Server | undefined;
  private port = 0;

  async start(port = 0): Promise<this> {
    const contract: Contract = await controlServerContract();
    this.server = createServer((req, res) => {
      void readBody(req).then((body) => {
        const recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body, at: Date.now() };
        this.requests.push(recorded);
        this.violations.add(contract.checkRequest(recorded));
        res.writeHead(this.status, this.replyHeaders).end();
      });
    });
    // Below the ephemeral range (freePort), so no outgoing connection can take the port while it is down.
    this.port = await listen(this.server, '127.0.0.1', port || this.port || (await freePort()));
    return this;
  }

  url(path = 'cb'): string {
    return `http://127.0.0.1:${this.port}/${path}`;
  }

  for(jobId: string): RecordedRequest[] {
    return this.requests.filter((r) => r.headers['x-foreman-job-id'] === encodeURIComponent(jobId));
  }

  /** The terminal update of a job, once it arrived. */
  completion(jobId: string): RecordedRequest | undefined {
    return this.for(jobId).find((r) => r.headers['x-foreman-job-status'] === 'completed');
  }

  async waitForCompletion(jobId: string, timeoutMs = 30_000): Promise<RecordedRequest> {
    return waitFor(`the completed callback of ${jobId}`, () => this.completion(jobId), timeoutMs);
  }

  async stop(): Promise<void> {
    await close(this.server);
    this.server = undefined;
    this.violations.assertNone('the callback receiver', 'docs/openapi/control-server.yaml');
  }
}
