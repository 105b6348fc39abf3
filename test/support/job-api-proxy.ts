/**
 * A recording proxy in front of an agent's job API, checking every request a job container makes and every reply
 * against docs/openapi/job-api.yaml. The agent binds 127.0.0.1 and advertises the default bridge's gateway
 * (docker0) at the same port, where this proxy listens and forwards to the agent: containers reach the agent only
 * through it. The proxy outlives the agent's restarts; while no agent listens it drops the container's connection,
 * which the container sees as the connection error a restart causes.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { promisify } from 'node:util';
import { jobApiContract, Violations, type Exchange } from './contract.ts';

const execFileAsync = promisify(execFile);

export interface ProxiedExchange extends Exchange {
  /** The agent's answer; undefined when no agent answered (the connection was dropped). */
  readonly reply?: { readonly status: number; readonly headers: IncomingMessage['headers']; readonly body: Buffer };
}

/** docker0's IPv4 address, as the kernel has it. */
export async function docker0Address(): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0']);
  const address = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(stdout)?.[1];
  if (!address) throw new Error('docker0 has no IPv4 address');
  return address;
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

export class JobApiProxy {
  readonly exchanges: ProxiedExchange[] = [];
  /** Requests and replies that broke docs/openapi/job-api.yaml; close() fails while any are here. */
  readonly violations = new Violations();
  private server: Server | undefined;

  private constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  /** A proxy on docker0's address at `port`, forwarding to 127.0.0.1:`port`. */
  static async start(port: number): Promise<JobApiProxy> {
    const proxy = new JobApiProxy(await docker0Address(), port);
    const contract = await jobApiContract();
    proxy.server = createServer((req, res) => {
      void readAll(req).then((body) => {
        const sent: Exchange = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
        const upstream = request({ host: '127.0.0.1', port, method: sent.method, path: sent.url, headers: req.headers, agent: false }, (answer) => {
          void readAll(answer).then((replyBody) => {
            const reply = { status: answer.statusCode ?? 0, headers: answer.headers, body: replyBody };
            proxy.exchanges.push({ ...sent, reply });
            proxy.violations.add(contract.checkRequest(sent));
            proxy.violations.add(contract.checkReply(sent, reply));
            res.writeHead(reply.status, answer.headers).end(replyBody);
          });
        });
        upstream.on('error', () => {
          // No agent (it is restarting): the container sees its connection dropped, as it would.
          proxy.exchanges.push(sent);
          proxy.violations.add(contract.checkRequest(sent));
          res.socket?.destroy();
        });
        upstream.end(body);
      });
    });
    proxy.server.listen(port, proxy.host);
    await once(proxy.server, 'listening');
    return proxy;
  }

  /** The agent's settings that make containers reach it through this proxy. */
  agentEnv(): Record<string, string> {
    return { FOREMAN_CORE_PORT: String(this.port), FOREMAN_CORE_HOSTNAME: this.host, FOREMAN_CORE_LISTEN_ADDRESS: '127.0.0.1' };
  }

  /** Closes the proxy; fails when any request or reply broke the contract. Safe to call twice. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.violations.assertNone('the job API proxy', 'docs/openapi/job-api.yaml');
  }
}
