import type { ImageInfo } from '../shared/engine-facts.ts';
import type { HostFacts } from '../protocol/wire.ts';
import type { LogMessage } from '../shared/log-line.ts';

/** Labels on every container the agent creates, so it can find its own after a restart. */
export const LABEL_MANAGED = 'foreman.managed';
export const LABEL_AGENT = 'foreman.agent';
export const LABEL_JOB = 'foreman.job-id';

/** What a job asked for (its `resources`), already checked against the agent's maxima; unset: the maxima. */
export interface ContainerResources {
  readonly cpus?: number | undefined;
  /** Bytes. */
  readonly memory?: number | undefined;
  readonly pids?: number | undefined;
}

export interface ContainerSpec {
  readonly name: string;
  readonly image: string;
  readonly command: readonly string[] | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly resources?: ContainerResources | undefined;
  /** A host directory (on a tmpfs) bound read-only at /run/foreman/secrets: the job's secret files. */
  readonly secretsDir?: string | undefined;
}

export interface ContainerStatus {
  readonly id: string;
  readonly jobId: string | undefined;
  readonly running: boolean;
  readonly exitCode: number | null;
  readonly oomKilled: boolean;
  /** Epoch ms the container last started, when the engine knows it. */
  readonly startedAt: number | null;
}

/**
 * What the engine says a running container has used so far. Counters (CPU, I/O) run from the
 * container's start; `memoryMaxBytes` is the kernel's own high-water mark where the engine gives it
 * (cgroup v1), else undefined and the caller keeps the highest `memoryBytes` it saw.
 */
export interface UsageSample {
  readonly cpuNs: number;
  readonly memoryBytes: number;
  readonly memoryMaxBytes: number | undefined;
  /** Of `memoryBytes`, the page cache (file pages the kernel may reclaim, shared files charged to whoever read them first). */
  readonly memoryCacheBytes: number;
  readonly pids: number;
  readonly blockReadBytes: number | undefined;
  readonly blockWriteBytes: number | undefined;
  readonly networkRxBytes: number | undefined;
  readonly networkTxBytes: number | undefined;
}

export type ExecutorEvent =
  | { readonly type: 'exited'; readonly containerId: string; readonly jobId: string; readonly exitCode: number | null }
  | { readonly type: 'oom'; readonly containerId: string; readonly jobId: string };

/** Raised for a job-level failure (bad image, pull error) as opposed to an unreachable engine. */
export class ExecutorJobError extends Error {
  constructor(
    readonly kind: 'pull' | 'create' | 'start',
    message: string,
  ) {
    super(message);
    this.name = 'ExecutorJobError';
  }
}

/** The engine cannot run jobs as configured (e.g. it lacks `docker.runtime`): waiting will not fix it, so the agent does not start. */
export class ExecutorSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExecutorSetupError';
  }
}

export interface LogReadOptions {
  readonly since: string | undefined;
  readonly follow: boolean;
  /** Only the last `tail` messages. */
  readonly tail?: number;
}

/**
 * Runs job containers on one engine.
 *
 * Call order: `prepare` once at start (and again after the engine was lost); per job
 * `ensureImage` → `create` → `start`, then `stop` and `remove`. `list`, `inspect`, `logsTail`,
 * `readLogs` and `watch` may be called at any time.
 *
 * Every call is safe to repeat: `prepare` keeps an existing network, `create` returns the
 * existing container of the same name, `start` on a running container, `stop` and `kill` on a
 * stopped one and `remove` on a missing one all succeed. That is what lets the agent retry after a crash
 * without knowing how far the last attempt got.
 *
 * The launch calls take the job's AbortSignal: once it aborts they give up promptly and reject
 * (a pull that hangs must not hold up a cancel, a timeout or a shutdown). An aborted `create`
 * may still leave a container behind; `remove` by the container's name finds it.
 *
 * Every container is labelled `LABEL_MANAGED`, `LABEL_AGENT` (this agent's id) and `LABEL_JOB`,
 * so that `list` finds this agent's containers after a restart.
 *
 * Job-level failures throw `ExecutorJobError`; anything else means the engine is unreachable.
 */
export interface Executor {
  /**
   * Checks the engine answers and creates the job network when missing. The first time the engine
   * answers it also checks that the engine can honour the settings, throwing `ExecutorSetupError` if not.
   */
  prepare(signal?: AbortSignal): Promise<void>;
  /**
   * Address on this host that containers on the job network reach it by (the network gateway), or on
   * `network` when given (`bridge`: the default bridge, whose gateway `host-gateway` means).
   */
  gatewayAddress(network?: string): Promise<string | undefined>;
  /** Engine version string, for logs and `foreman check`. */
  version(): Promise<string>;
  /** Pulls the image when it is missing locally, or always when `alwaysPull`. */
  ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void>;
  /** Creates the container and returns its id. */
  create(spec: ContainerSpec, signal?: AbortSignal): Promise<string>;
  start(containerId: string, signal?: AbortSignal): Promise<void>;
  /** Sends the container its stop signal (the image's, SIGTERM by default), killing it after `graceMs`. */
  stop(containerId: string, graceMs: number): Promise<void>;
  /** Kills the container at once (SIGKILL); one that is not running, or missing, is fine. */
  kill(containerId: string): Promise<void>;
  /** Removes the container (by id or name), running or not. */
  remove(containerId: string): Promise<void>;
  /** Undefined when the container does not exist (by id or name). */
  inspect(containerId: string): Promise<ContainerStatus | undefined>;
  /** Every container labelled with this agent's id, running or not. */
  list(): Promise<ContainerStatus[]>;
  /** The image as the engine has it; undefined when it has none of that reference. */
  imageInfo(image: string): Promise<ImageInfo | undefined>;
  /** Removes the image's reference; a missing one is fine. */
  removeImage(image: string): Promise<void>;
  /** The engine's host: what `x-foreman-attributes` tells the control server. */
  hostFacts(): Promise<HostFacts>;
  /**
   * What the running container has used so far (one sample, from the engine); undefined when it is not
   * running, is gone, or runs where this engine cannot see it (a swarm task on another node).
   */
  stats(containerId: string): Promise<UsageSample | undefined>;
  /** The last `lines` lines of the container's stdout and stderr. */
  logsTail(containerId: string, lines: number): Promise<string[]>;
  /**
   * The container's stdout and stderr in the engine's order, with its timestamps, in batches as
   * they arrive: from `since` (a timestamp the engine gave; inclusive, or a little earlier, so the
   * caller skips what it has by timestamp) or from the start. With `follow` it goes on until the container's output ends (it
   * stopped); without, it ends with what is stored now. A missing container ends it at once;
   * the signal aborting or the engine connection dropping rejects.
   */
  readLogs(containerId: string, options: LogReadOptions, signal: AbortSignal): AsyncIterable<LogMessage[]>;
  /**
   * Streams exits and OOM kills of this agent's containers until the signal aborts
   * (resolves) or the engine connection drops (rejects). `onReady` is called once subscribed.
   */
  watch(onEvent: (event: ExecutorEvent) => void, signal: AbortSignal, onReady?: () => void): Promise<void>;
}
