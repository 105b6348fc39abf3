/** Real servers, a real agent and the real engine, for the integration and end-to-end tests. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, openSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type Docker from 'dockerode';
import { createDockerClient } from '../../src/executor/docker/client.ts';
import pino from 'pino';
import type { Supervisor } from '../../src/agent/supervisor.ts';
import { composeAgent, createExecutor } from '../../src/agent/compose.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { LoadedConfig } from '../../src/config/types.ts';
import { SqliteStore } from '../../src/jobs/sqlite-store.ts';
import { LogStore } from '../../src/logs/log-store.ts';
import { systemClock } from '../../src/shared/clock.ts';

export const repoRoot = resolve(import.meta.dirname, '../..');
const dockerUrl = process.env.FOREMAN_DOCKER_URL ?? 'unix:///var/run/docker.sock';
export const docker = createDockerClient(dockerUrl);
/** Settings a second engine needs (Podman: where the job API listens), from FOREMAN_TEST_ENGINE_ENV as JSON. */
const engineSettings = JSON.parse(process.env.FOREMAN_TEST_ENGINE_ENV ?? '{}') as Record<string, string>;

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

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

export type PollReply = { status: number; body?: string } | unknown[] | Record<string, unknown>;

/** A control server that hands out queued replies, one per poll, and records every poll. */
export class FakeControlServer {
  readonly polls: RecordedRequest[] = [];
  /** Sent on every poll reply while set, e.g. `{ 'x-foreman-cancel': 'job-1' }`. */
  replyHeaders: Record<string, string> = {};
  private readonly replies: PollReply[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void readBody(req).then((body) => {
        this.polls.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body, at: Date.now() });
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

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

/** A callback receiver recording every request; its answer can be changed, and it can go down and come back. */
export class CallbackReceiver {
  readonly requests: RecordedRequest[] = [];
  status = 200;
  /** Sent on every reply while set, e.g. `{ 'x-foreman-cancel': 'job-1' }`. */
  replyHeaders: Record<string, string> = {};
  private server: Server | undefined;
  private port = 0;

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      void readBody(req).then((body) => {
        this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body, at: Date.now() });
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
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
    this.server = undefined;
  }
}

export function job(id: string, callbackUrl: string, body: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, image: 'foreman-test-job:latest', body, callbackUrl, ...extra };
}

export interface TestEnv {
  readonly dir: string;
  readonly networkName: string;
  /** Env for loadConfig / the agent process: FOREMAN_* settings. */
  readonly env: Record<string, string>;
}

/** A temp dir, its own Docker network name, and the FOREMAN_* env for an agent that uses them. */
export function testEnv(controlUrl: string, overrides: Record<string, string> = {}): TestEnv {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-test-'));
  const networkName = `foreman-test-${Math.random().toString(36).slice(2, 8)}`;
  const env: Record<string, string> = {
    FOREMAN_CORE_URL: controlUrl,
    FOREMAN_CORE_TOKEN: 'test-token',
    FOREMAN_CORE_PORT: '0',
    FOREMAN_CORE_NETWORK_NAME: networkName,
    FOREMAN_CORE_DATA_DIR: join(dir, 'data'),
    FOREMAN_CORE_POLL_FREQUENCY: '100',
    FOREMAN_CORE_POLL_TIMEOUT: '2000',
    FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '30000',
    FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '200',
    FOREMAN_CORE_SHUTDOWN_TIMEOUT: '15000',
    FOREMAN_CORE_LABELS_QUEUE: 'test',
    FOREMAN_LOG_LEVEL: 'debug',
    FOREMAN_DOCKER_URL: dockerUrl,
    ...engineSettings,
    ...overrides,
  };
  return { dir, networkName, env };
}

export function loadTestConfig(t: TestEnv): LoadedConfig {
  return loadConfig({ env: t.env, cwd: t.dir, home: t.dir });
}

export interface InProcessAgent {
  readonly agent: Supervisor;
  readonly store: SqliteStore;
  readonly loaded: LoadedConfig;
  readonly logFile: string;
  close(): Promise<void>;
}

/** Starts an agent in this process, logging to a file in the test dir. */
export async function startAgent(t: TestEnv): Promise<InProcessAgent> {
  const loaded = loadTestConfig(t);
  const logFile = join(t.dir, `agent-${Date.now()}.log`);
  const log = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true }));
  const store = SqliteStore.open({ dataDir: loaded.config.core.data_dir, log });
  const executor = createExecutor(loaded.config, docker, store.agentId, log, systemClock);
  const logStore = new LogStore(join(loaded.config.core.data_dir, 'logs.db'));
  const agent = composeAgent(loaded.config, { store, executor, log, clock: systemClock, version: 'test', logStore });
  await agent.start();
  return { agent, store, loaded, logFile, close: () => agent.close() };
}

/**
 * Starts `foreman` as a real process with a config file in the test dir (`args` after `--config`).
 * `executable` runs that file (the single executable) in its own folder instead of `node bin/foreman.js`.
 */
export function spawnAgent(
  t: TestEnv,
  extraEnv: Record<string, string> = {},
  nodeFlags: string[] = [],
  args: string[] = [],
  executable?: string,
): { child: ChildProcess; logFile: string; exited: Promise<number | null> } {
  const logFile = join(t.dir, `agent-process-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const configFile = join(t.dir, 'foreman.toml');
  writeFileSync(configFile, '# settings come from FOREMAN_* variables\n');
  const before = executable ? [] : [...nodeFlags, join(repoRoot, 'bin/foreman.js')];
  const child = spawn(executable ?? process.execPath, [...before, 'run', '--config', configFile, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: t.dir, ...t.env, ...extraEnv },
    stdio: ['ignore', fd, fd],
    ...(executable ? { cwd: dirname(executable) } : {}),
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, logFile, exited };
}

export function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Containers (any state) labelled with this agent id, or with any agent when omitted. */
export async function containersOf(agentId?: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [agentId ? `foreman.agent=${agentId}` : 'foreman.managed=true'] } });
}

/** The engine these tests run on, when not the host's Docker engine (FOREMAN_TEST_ENGINE: podman, swarm). */
export const testEngine = process.env.FOREMAN_TEST_ENGINE;

/** The container of a job, from the handle the agent stored: the container id, or with the swarm executor its service's task container. */
export async function jobContainer(handle: string | null | undefined): Promise<Docker.Container> {
  if (testEngine !== 'swarm') return docker.getContainer(handle ?? '');
  const id = await waitFor('the service task to have a container', async () => {
    const tasks = (await docker.listTasks({ filters: { service: [handle ?? ''] } })) as Array<{ Status?: { ContainerStatus?: { ContainerID?: string } } }>;
    return tasks.map((t) => t.Status?.ContainerStatus?.ContainerID).find(Boolean);
  });
  return docker.getContainer(id);
}

/** Takes away a job's container behind the agent's back: the container, or with the swarm executor the whole service. */
export async function removeJobContainers(agentId: string): Promise<void> {
  if (testEngine === 'swarm') {
    for (const s of await docker.listServices({ filters: { label: [`foreman.agent=${agentId}`] } })) await docker.getService(s.ID).remove().catch(() => undefined);
    return;
  }
  for (const c of await containersOf(agentId)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
}

/** Removes the test's containers (services on a swarm), network and temp dir. */
export async function cleanup(t: TestEnv, agentId?: string): Promise<void> {
  if (agentId) {
    await removeJobContainers(agentId);
    if (testEngine === 'swarm') await waitFor('the services\' containers to go', async () => (await containersOf(agentId)).length === 0, 30_000, 200).catch(() => undefined);
    await removeJobContainers(agentId);
    for (const c of await containersOf(agentId)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  await docker.getNetwork(t.networkName).remove().catch(() => undefined);
  rmSync(t.dir, { recursive: true, force: true });
}

export interface EngineEvent {
  readonly Action: string;
  readonly id: string;
  readonly timeNano: number;
  readonly Actor: { readonly ID?: string; readonly Attributes: Readonly<Record<string, string>> };
}

/** Streams container events of `actions` for containers carrying `label` until `stop()`. */
export async function watchContainerEvents(actions: string[], label: string, onEvent: (event: EngineEvent) => void): Promise<{ stop: () => void }> {
  // Actions are picked out here: Podman's `event` filter matches no `die` event.
  const stream = (await docker.getEvents({ filters: { type: ['container'], label: [label] } })) as NodeJS.ReadableStream & {
    destroy(): void;
  };
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line) as EngineEvent;
      if (actions.includes(event.Action)) onEvent(event);
    }
  });
  return { stop: () => stream.destroy() };
}

/** Stops a spawned agent (gently unless `signal` says otherwise), closes the test servers and removes what the test made. */
export async function teardown(parts: {
  agent: { child: ChildProcess; exited: Promise<number | null> };
  control: FakeControlServer;
  callbacks: CallbackReceiver;
  env: TestEnv;
  agentId: string | undefined;
  signal?: NodeJS.Signals;
}): Promise<void> {
  parts.agent.child.kill(parts.signal ?? 'SIGTERM');
  await parts.agent.exited;
  await parts.control.close();
  await parts.callbacks.stop();
  await cleanup(parts.env, parts.agentId);
}

/** A control server, a callback receiver and an in-process agent wired to them. */
export interface Stack {
  readonly control: FakeControlServer;
  readonly callbacks: CallbackReceiver;
  readonly env: TestEnv;
  readonly running: InProcessAgent;
  close(): Promise<void>;
}

export async function startStack(overrides: Record<string, string> = {}): Promise<Stack> {
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, overrides);
  const running = await startAgent(env);
  return {
    control,
    callbacks,
    env,
    running,
    async close() {
      await running.close();
      await control.close();
      await callbacks.stop();
      await cleanup(env, running.agent.agentId);
    },
  };
}

/** Ports `freePort` has handed out in this process, so no two callers get the same one. */
const handedOut = new Set<number>();

/** The lowest port the kernel hands out for `listen(0)` and outgoing connections. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  const server = createNetServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on every interface right now, for a server the agent binds itself (a metrics address, a job API
 * port that must stay fixed across restarts). It comes from below the kernel's ephemeral range: a port from
 * `listen(0)`, once released, can go straight to the next `listen(0)`, e.g. the test's own control server, which
 * then answers in the agent's place.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  const top = low > 11_000 ? low : 32_768; // a range starting lower leaves no gap: take Linux's default bound
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free TCP port found between 10000 and ${top}`);
}

/** The body of a report the agent sent when it ended a job itself. */
export interface EndingReport {
  outcome: string;
  reason: string;
  message: string;
  exitCode?: number;
  logs?: string[];
}

export function reportOf(request: RecordedRequest): EndingReport {
  return JSON.parse(request.body.toString()) as EndingReport;
}

/** The delivery sequence numbers of these requests, in arrival order. */
export function seqs(requests: RecordedRequest[]): number[] {
  return requests.map((r) => Number(r.headers['x-foreman-delivery-seq']));
}

/** Deliveries may repeat (at least once) but first arrivals must be in order with no gaps. */
export function assertInOrder(requests: RecordedRequest[]): void {
  const firsts: number[] = [];
  for (const s of seqs(requests)) if (!firsts.includes(s)) firsts.push(s);
  assert.deepEqual(firsts, firsts.map((_, i) => i + 1), `delivery order ${JSON.stringify(seqs(requests))}`);
}
