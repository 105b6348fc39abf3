/**
 * An in-memory engine that keeps the executor contract, so the scheduler, the runner and the
 * supervisor can be tested in milliseconds. The end-to-end tests on the real engine remain the
 * proof that features work; this fake only has to behave like the contract says.
 */
import type { ImageInfo } from '../../shared/engine-facts.ts';
import type { HostFacts } from '../../protocol/wire.ts';
import {
  ExecutorJobError,
  LABEL_AGENT,
  LABEL_JOB,
  LABEL_MANAGED,
  type ContainerSpec,
  type ContainerStatus,
  type Executor,
  type ExecutorEvent,
  type LogReadOptions,
  type UsageSample,
} from '../executor.ts';
import type { LogMessage, LogStreamName } from '../../shared/log-line.ts';
import { Waiters } from '../../shared/waiters.ts';

export interface FakeContainer {
  readonly id: string;
  readonly name: string;
  readonly spec: ContainerSpec;
  readonly labels: Readonly<Record<string, string>>;
  running: boolean;
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: number | null;
  /** Lines `logsTail` returns. */
  logs: string[];
  /** What `readLogs` gives, in order (see `print`). */
  output: LogMessage[];
  /** What `stats` answers while it runs (tests set it as the job "uses" more). */
  usage: UsageSample;
}

/** A container that has used nothing yet. */
export const NO_USAGE: UsageSample = {
  cpuNs: 0,
  memoryBytes: 0,
  memoryMaxBytes: undefined,
  memoryCacheBytes: 0,
  pids: 0,
  blockReadBytes: undefined,
  blockWriteBytes: undefined,
  networkRxBytes: undefined,
  networkTxBytes: undefined,
};

export interface FakeExecutorOptions {
  readonly agentId?: string;
  /** Images present locally; anything else must be pulled. */
  readonly images?: readonly string[];
  readonly now?: () => number;
}

/** What an engine call fails with when the fake engine is down: like a refused connection. */
function engineDown(): Error {
  return Object.assign(new Error('connect ECONNREFUSED /fake/docker.sock'), { code: 'ECONNREFUSED' });
}

export class FakeExecutor implements Executor {
  readonly agentId: string;
  readonly containers = new Map<string, FakeContainer>();
  /** Every call, as `method arg`, in order. */
  readonly calls: string[] = [];
  /** Images present locally. */
  readonly images: Set<string>;
  /** Images a pull of which succeeds. */
  readonly pullable = new Set<string>();
  /** Images whose pull never ends until the caller's signal aborts. */
  readonly hangingPulls = new Set<string>();
  /** Environment variable names that make `create` fail (as an invalid env entry does in Docker). */
  readonly badEnv = new Set<string>();
  /** Sizes `imageInfo` gives (1000 bytes when not set). */
  readonly imageSizes = new Map<string, number>();
  /** What `hostFacts` answers. */
  facts: HostFacts = {
    arch: 'x86_64',
    os: 'linux',
    cpus: 2,
    memoryBytes: 8 * 1024 ** 3,
    engine: 'docker',
    engineVersion: 'fake 1.0',
    runtimes: ['runc'],
    diskFreeBytes: undefined,
  };
  /** While set, `start` calls wait for `releaseStarts()`. */
  holdStarts = false;
  private readonly heldStarts: Array<() => void> = [];
  /** Container names whose `start` fails. */
  readonly failingStarts = new Set<string>();
  /** Container ids that ignore their stop signal: only `kill` (or `remove`) ends them. */
  readonly stubbornStops = new Set<string>();
  /** The default bridge's gateway (`gatewayAddress('bridge')`); undefined: the engine has none. */
  bridgeGateway: string | undefined = '127.0.0.1';
  /** False: every call fails like an engine that does not answer. */
  up = true;
  private readonly outputChanged = new Waiters();
  private printed = 0;
  private readonly now: () => number;
  private counter = 0;
  private readonly watchers = new Set<{ onEvent: (event: ExecutorEvent) => void; lose: (err: Error) => void }>();

  constructor(options: FakeExecutorOptions = {}) {
    this.agentId = options.agentId ?? 'fake-agent';
    this.images = new Set(options.images ?? []);
    this.now = options.now ?? Date.now;
  }

  private enter(call: string): void {
    this.calls.push(call);
    if (!this.up) throw engineDown();
  }

  prepare(): Promise<void> {
    this.enter('prepare');
    return Promise.resolve();
  }

  gatewayAddress(network?: string): Promise<string | undefined> {
    return Promise.resolve(network === undefined ? '127.0.0.1' : this.bridgeGateway);
  }

  version(): Promise<string> {
    this.enter('version');
    return Promise.resolve('fake 1.0 (API 1.41)');
  }

  async ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void> {
    this.enter(`ensureImage ${image}`);
    signal?.throwIfAborted();
    if (this.images.has(image) && !alwaysPull) return;
    if (this.hangingPulls.has(image)) {
      await new Promise<never>((_, reject) => {
        if (signal?.aborted) reject(signal.reason as Error);
        signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      });
    }
    if (!this.pullable.has(image)) throw new ExecutorJobError('pull', `pulling image ${image} failed: not found`);
    this.images.add(image);
  }

  create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    this.enter(`create ${spec.name}`);
    signal?.throwIfAborted();
    const existing = this.find(spec.name);
    if (existing) return Promise.resolve(existing.id);
    const bad = Object.keys(spec.env).find((name) => this.badEnv.has(name));
    if (bad !== undefined) return Promise.reject(new ExecutorJobError('create', `creating the container failed: invalid environment variable ${bad}`));
    if (!this.images.has(spec.image)) return Promise.reject(new ExecutorJobError('create', `creating the container failed: no such image ${spec.image}`));
    const id = `fake-${++this.counter}`;
    const labels = { ...spec.labels, [LABEL_MANAGED]: 'true', [LABEL_AGENT]: this.agentId };
    this.containers.set(id, {
      id,
      name: spec.name,
      spec,
      labels,
      running: false,
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      logs: [],
      output: [],
      usage: NO_USAGE,
    });
    return Promise.resolve(id);
  }

  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    this.enter(`start ${containerId}`);
    signal?.throwIfAborted();
    const c = this.find(containerId);
    if (!c) throw new ExecutorJobError('start', 'starting the container failed: no such container');
    if (c.running) return;
    if (this.failingStarts.has(c.name)) throw new ExecutorJobError('start', 'starting the container failed: exec format error');
    // A held start returns once released, as the engine's start call takes its time (a swarm's, seconds).
    if (this.holdStarts) await new Promise<void>((resolve) => this.heldStarts.push(resolve));
    c.running = true;
    c.exitCode = null;
    c.startedAt = this.now();
  }

  /** Ends every held start call (see `holdStarts`). */
  releaseStarts(): void {
    for (const release of this.heldStarts.splice(0)) release();
  }

  stop(containerId: string, graceMs: number): Promise<void> {
    this.enter(`stop ${containerId} ${graceMs}`);
    const c = this.find(containerId);
    if (c?.running && !this.stubbornStops.has(c.id)) this.exit(c.id, 143);
    return Promise.resolve();
  }

  kill(containerId: string): Promise<void> {
    this.enter(`kill ${containerId}`);
    const c = this.find(containerId);
    if (c?.running) this.exit(c.id, 137);
    return Promise.resolve();
  }

  remove(containerId: string): Promise<void> {
    this.enter(`remove ${containerId}`);
    const c = this.find(containerId);
    if (!c) return Promise.resolve();
    if (c.running) this.exit(c.id, 137);
    this.containers.delete(c.id);
    this.outputChanged.wakeAll();
    return Promise.resolve();
  }

  imageInfo(image: string): Promise<ImageInfo | undefined> {
    this.calls.push(`imageInfo ${image}`);
    return Promise.resolve(this.images.has(image) ? { id: `sha256:${image}`, digest: undefined, sizeBytes: this.imageSizes.get(image) ?? 1000 } : undefined);
  }

  removeImage(image: string): Promise<void> {
    this.calls.push(`removeImage ${image}`);
    this.images.delete(image);
    return Promise.resolve();
  }

  hostFacts(): Promise<HostFacts> {
    return Promise.resolve({ ...this.facts });
  }

  stats(containerId: string): Promise<UsageSample | undefined> {
    this.calls.push(`stats ${containerId}`);
    if (!this.up) return Promise.reject(engineDown());
    const c = this.find(containerId);
    return Promise.resolve(c?.running ? c.usage : undefined);
  }

  inspect(containerId: string): Promise<ContainerStatus | undefined> {
    this.calls.push(`inspect ${containerId}`);
    // Rejects, as a real client does, rather than throwing: callers chain `.catch` on it.
    if (!this.up) return Promise.reject(engineDown());
    const c = this.find(containerId);
    return Promise.resolve(c ? this.status(c) : undefined);
  }

  list(): Promise<ContainerStatus[]> {
    this.enter('list');
    return Promise.resolve([...this.containers.values()].filter((c) => c.labels[LABEL_AGENT] === this.agentId).map((c) => this.status(c)));
  }

  logsTail(containerId: string, lines: number): Promise<string[]> {
    this.enter(`logsTail ${containerId}`);
    return Promise.resolve(this.find(containerId)?.logs.slice(-lines) ?? []);
  }

  async *readLogs(containerId: string, options: LogReadOptions, signal: AbortSignal): AsyncIterable<LogMessage[]> {
    this.enter(`readLogs ${containerId}`);
    const c = this.find(containerId);
    if (!c) return;
    const since = options.since;
    let at = since === undefined ? 0 : c.output.findIndex((m) => m.ts >= since);
    if (at < 0) at = c.output.length;
    if (options.tail !== undefined) at = Math.max(at, c.output.length - options.tail);
    for (;;) {
      if (signal.aborted) throw signal.reason as Error;
      if (!this.up) throw engineDown();
      if (at < c.output.length) {
        const batch = c.output.slice(at);
        at = c.output.length;
        yield batch;
        continue;
      }
      if (!options.follow || !c.running || !this.containers.has(c.id)) return;
      await this.outputChanged.wait(signal);
    }
  }

  async watch(onEvent: (event: ExecutorEvent) => void, signal: AbortSignal, onReady?: () => void): Promise<void> {
    this.enter('watch');
    if (signal.aborted) return;
    await new Promise<void>((resolve, reject) => {
      const watcher = {
        onEvent,
        lose: (err: Error): void => {
          this.watchers.delete(watcher);
          reject(err);
        },
      };
      this.watchers.add(watcher);
      signal.addEventListener(
        'abort',
        () => {
          this.watchers.delete(watcher);
          resolve();
        },
        { once: true },
      );
      onReady?.();
    });
  }

  // ---- test controls -------------------------------------------------------------------

  /** The container of a job, by its job-id label. */
  containerOf(jobId: string): FakeContainer | undefined {
    return [...this.containers.values()].find((c) => c.labels[LABEL_JOB] === jobId);
  }

  /** The container prints `text` (a newline is added unless `partial`) on `stream`. */
  print(containerId: string, stream: LogStreamName, text: string, options: { partial?: boolean } = {}): void {
    const c = this.find(containerId);
    if (!c) return;
    const ts = `2026-01-01T00:00:00.${String(++this.printed).padStart(9, '0')}Z`;
    c.output.push({ stream, ts, text: Buffer.from(options.partial ? text : `${text}\n`) });
    c.logs.push(text);
    this.outputChanged.wakeAll();
  }

  /** The container's process ends with `code` (and the OOM killer's event first, when `oom`). */
  exit(containerId: string, code: number, options: { oom?: boolean } = {}): void {
    const c = this.find(containerId);
    if (!c?.running) return;
    c.running = false;
    c.exitCode = code;
    this.outputChanged.wakeAll();
    c.oomKilled = options.oom === true;
    const jobId = c.labels[LABEL_JOB];
    if (jobId === undefined) return;
    const events: ExecutorEvent[] = [];
    if (options.oom) events.push({ type: 'oom', containerId: c.id, jobId });
    events.push({ type: 'exited', containerId: c.id, jobId, exitCode: code });
    // Events arrive after the call that caused them returns, as they do from a real engine.
    setImmediate(() => {
      for (const event of events) for (const w of this.watchers) w.onEvent(event);
    });
  }

  /** The engine goes away: open watches fail and every call fails until `up` is set again. */
  loseEngine(): void {
    this.up = false;
    for (const w of [...this.watchers]) w.lose(engineDown());
    this.outputChanged.wakeAll();
  }

  get watching(): number {
    return this.watchers.size;
  }

  private find(idOrName: string): FakeContainer | undefined {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.name === idOrName);
  }

  private status(c: FakeContainer): ContainerStatus {
    return { id: c.id, jobId: c.labels[LABEL_JOB], running: c.running, exitCode: c.exitCode, oomKilled: c.oomKilled, startedAt: c.startedAt };
  }
}
