import type Docker from 'dockerode';
import type { LogMessage } from '../../shared/log-line.ts';
import type { Logger } from 'pino';
import {
  ExecutorJobError,
  ExecutorSetupError,
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
import { containerStats } from './stats.ts';
import { hostFacts, imageInfo, removeImage } from './engine-facts.ts';
import type { ImageInfo } from '../../shared/engine-facts.ts';
import type { HostFacts } from '../../protocol/wire.ts';
import { isRedirectRefusal } from './client.ts';
import { SECRETS_PATH } from '../../protocol/wire.ts';
import {
  allowsInterContainerTraffic,
  hardenedHostConfig,
  iccWarning,
  ICC_OPTION,
  settingProblems,
  type ContainerSettings,
  type EngineInfo,
} from './hardening.ts';
import { tailLines } from './log-frames.ts';
import { readLogBatches, type OpenLogs } from './log-stream.ts';
import type { RegistryAuth } from './registry-auth.ts';

export interface DockerExecutorOptions extends ContainerSettings {
  readonly docker: Docker;
  readonly agentId: string;
  readonly networkName: string;
  readonly extraHosts: readonly string[];
  /** For the warning about a job network that lets containers reach each other. */
  readonly log?: Pick<Logger, 'warn'> | undefined;
  /** A container label whose value names the job's handle in `watch` events instead of the container id (swarm: the service id). */
  readonly eventIdLabel?: string | undefined;
  /** Credentials pulls are made with, by the image's registry; none: anonymous pulls. */
  readonly registryAuth?: RegistryAuth | undefined;
  /** Told how each pull ended and how long it took (the agent's `foreman_image_pull_duration_seconds`). */
  readonly onPull?: ((result: 'success' | 'failure' | 'canceled', seconds: number) => void) | undefined;
}

/** A refused redirect stands for the engine's 3xx answer, whose exact code is not kept. */
const REDIRECTED = 301;

/** Engine replies carry a statusCode; connection failures do not. */
export function statusOf(err: unknown): number | undefined {
  if (isRedirectRefusal(err)) return REDIRECTED;
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** For a `.catch`: a 404 (no such container or service) becomes undefined; any other error is thrown on. */
export function undefinedIfMissing(err: unknown): undefined {
  if (statusOf(err) === 404) return undefined;
  throw err;
}

export function engineMessage(err: unknown): string {
  if (isRedirectRefusal(err)) return 'the engine answered with a redirect: the reference names nothing it can look up';
  const json = (err as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === 'string') return json.message;
  // A streamed request (a pull) keeps no JSON: docker-modem wraps the engine's words as "(HTTP code 500) server error - … ".
  return (err instanceof Error ? err.message : String(err)).replace(/^\(HTTP code \d+\) .*? - /, '').trim();
}

export function parseTime(value: string | undefined): number | null {
  if (!value || value.startsWith('0001-')) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** The Executor for a Docker-API engine, through dockerode. */
export class DockerExecutor implements Executor {
  private readonly docker: Docker;
  private readonly options: DockerExecutorOptions;
  /** The settings were checked against the engine (once: later reconnects do not refuse). */
  private settingsChecked = false;
  private iccWarned = false;

  constructor(options: DockerExecutorOptions) {
    this.docker = options.docker;
    this.options = options;
  }

  async prepare(): Promise<void> {
    await this.docker.ping();
    if (!this.settingsChecked) {
      const problems = settingProblems(this.options, (await this.docker.info()) as EngineInfo);
      if (problems.length > 0) throw new ExecutorSetupError(problems.join('; '));
      this.settingsChecked = true;
    }
    const name = this.options.networkName;
    const created = await this.createNetworkIfMissing(name);
    if (this.iccWarned) return;
    // Read back even when just created: an engine may accept the option and ignore it (Podman does).
    const network = (await this.docker.getNetwork(name).inspect()) as Parameters<typeof allowsInterContainerTraffic>[0];
    if (allowsInterContainerTraffic(network)) {
      this.iccWarned = true;
      this.options.log?.warn({ network: name }, iccWarning(name, created));
    }
  }

  /** True when this call created it. */
  private async createNetworkIfMissing(name: string): Promise<boolean> {
    try {
      await this.docker.getNetwork(name).inspect();
      return false;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    try {
      await this.docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: { [LABEL_MANAGED]: 'true' },
        // Job containers reach the job API on the gateway, never each other.
        Options: { [ICC_OPTION]: 'false' },
      });
      return true;
    } catch (createErr) {
      // Another agent on the same engine created it first.
      if (statusOf(createErr) !== 409) throw createErr;
      return false;
    }
  }

  async gatewayAddress(network?: string): Promise<string | undefined> {
    const info = (await this.docker.getNetwork(network ?? this.options.networkName).inspect()) as {
      IPAM?: { Config?: Array<{ Gateway?: string }> };
    };
    return info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
  }

  async version(): Promise<string> {
    const v = await this.docker.version();
    return `${v.Version} (API ${v.ApiVersion})`;
  }

  async ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (!alwaysPull) {
      try {
        // A local lookup: quick, so it takes no signal (dockerode passes none for it).
        await this.docker.getImage(image).inspect();
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === undefined) throw err;
        // Anything but "not found" means the engine refused the reference itself.
        if (status !== 404) throw new ExecutorJobError('pull', this.redact(`image ${image} is not usable: ${engineMessage(err)}`));
      }
    }
    // A measurement, not a wait: the engine's own pace, read off the monotonic clock.
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    try {
      await this.pull(image, signal);
      this.options.onPull?.('success', seconds());
    } catch (err) {
      this.options.onPull?.(signal?.aborted ? 'canceled' : 'failure', seconds());
      if (statusOf(err) === undefined) throw err;
      throw new ExecutorJobError('pull', this.redact(`pulling image ${image} failed: ${engineMessage(err)}`));
    }
  }

  /** The message goes into logs and the job's report: no registry secret may ride along in it. */
  private redact(message: string): string {
    return this.options.registryAuth?.redact(message) ?? message;
  }

  /** Follows the pull's progress stream to its end; an abort tears the stream down at once. */
  private async pull(image: string, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    const authconfig = this.options.registryAuth?.authFor(image);
    const stream = (await this.docker.pull(image, { abortSignal: signal, ...(authconfig ? { authconfig } : {}) })) as NodeJS.ReadableStream & {
      destroy(error?: Error): void;
    };
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        stream.destroy();
        reject(signal?.reason as Error);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.docker.modem.followProgress(stream, (err: Error | null, output: Array<{ error?: string }>) => {
        signal?.removeEventListener('abort', onAbort);
        const failed = output?.find((o) => o.error);
        if (err) reject(err);
        else if (failed?.error) reject(Object.assign(new Error(failed.error), { statusCode: 500 }));
        else resolve();
      });
    });
  }

  async create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    const labels = {
      ...spec.labels,
      [LABEL_MANAGED]: 'true',
      [LABEL_AGENT]: this.options.agentId,
    };
    try {
      const container = await this.docker.createContainer({
        name: spec.name,
        Image: spec.image,
        ...(spec.command ? { Cmd: [...spec.command] } : {}),
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: labels,
        ...(this.options.user ? { User: this.options.user } : {}),
        HostConfig: {
          NetworkMode: this.options.networkName,
          ExtraHosts: [...this.options.extraHosts],
          ...hardenedHostConfig(this.options, spec.resources),
          // Without an init, node (and many programs) as PID 1 ignore SIGTERM and stop only when killed.
          Init: true,
          // The job's secret files: the config names the folder only, never a value.
          ...(spec.secretsDir ? { Mounts: [{ Type: 'bind' as const, Source: spec.secretsDir, Target: SECRETS_PATH, ReadOnly: true }] } : {}),
        },
        abortSignal: signal,
      });
      return container.id;
    } catch (err) {
      const status = statusOf(err);
      if (status === 409) {
        const existing = await this.inspect(spec.name);
        if (existing) return existing.id;
      }
      if (status === undefined) throw err;
      throw new ExecutorJobError('create', `creating the container failed: ${engineMessage(err)}`);
    }
  }

  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(containerId).start({ abortSignal: signal });
    } catch (err) {
      const status = statusOf(err);
      if (status === 304) return;
      if (status === undefined) throw err;
      throw new ExecutorJobError('start', `starting the container failed: ${engineMessage(err)}`);
    }
  }

  async stop(containerId: string, graceMs: number): Promise<void> {
    try {
      await this.docker.getContainer(containerId).stop({ t: Math.ceil(graceMs / 1000) });
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return;
      throw err;
    }
  }

  async kill(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).kill();
    } catch (err) {
      const status = statusOf(err);
      // 409: not running.
      if (status === 404 || status === 409) return;
      throw err;
    }
  }

  async remove(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      // 409: a removal is already in progress.
      if (status === 404 || status === 409) return;
      throw err;
    }
  }

  async inspect(containerId: string): Promise<ContainerStatus | undefined> {
    try {
      const info = await this.docker.getContainer(containerId).inspect();
      return {
        id: info.Id,
        jobId: info.Config.Labels?.[LABEL_JOB],
        running: info.State.Running,
        exitCode: info.State.Running ? null : info.State.ExitCode,
        oomKilled: info.State.OOMKilled,
        startedAt: parseTime(info.State.StartedAt),
      };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  imageInfo(image: string): Promise<ImageInfo | undefined> {
    return imageInfo(this.docker, image);
  }

  removeImage(image: string): Promise<void> {
    return removeImage(this.docker, image);
  }

  hostFacts(): Promise<HostFacts> {
    return hostFacts(this.docker);
  }

  async stats(containerId: string): Promise<UsageSample | undefined> {
    try {
      return await containerStats(this.docker.getContainer(containerId));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  async list(): Promise<ContainerStatus[]> {
    const summaries = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_AGENT}=${this.options.agentId}`] },
    });
    const statuses = await Promise.all(summaries.map((s) => this.inspect(s.Id)));
    return statuses.filter((s): s is ContainerStatus => s !== undefined);
  }

  async logsTail(containerId: string, lines: number): Promise<string[]> {
    const raw = await this.docker.getContainer(containerId).logs({ stdout: true, stderr: true, tail: lines, follow: false }).catch(undefinedIfMissing);
    return raw ? tailLines(raw, lines) : [];
  }

  readLogs(containerId: string, options: LogReadOptions, signal: AbortSignal): AsyncIterable<LogMessage[]> {
    const open: OpenLogs = (query) => {
      const container = this.docker.getContainer(containerId);
      return (query.follow ? container.logs({ ...query, follow: true }) : container.logs({ ...query, follow: false })).catch(undefinedIfMissing);
    };
    return readLogBatches(open, options, signal);
  }

  async watch(onEvent: (event: ExecutorEvent) => void, signal: AbortSignal, onReady?: () => void): Promise<void> {
    if (signal.aborted) return;
    // Actions are picked out here, not by an `event` filter: Podman's (4.3) matches no `die` event.
    const stream = (await this.docker.getEvents({
      filters: { type: ['container'], label: [`${LABEL_AGENT}=${this.options.agentId}`] },
    })) as unknown as NodeJS.ReadableStream & { destroy(): void };
    onReady?.();
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      const onAbort = (): void => {
        stream.destroy();
        resolve();
      };
      // The signal may have aborted while the subscription was being made: its event has fired already.
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line) this.dispatchEvent(line, onEvent);
        }
      });
      const ended = (err?: Error): void => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) resolve();
        else reject(err ?? new Error('the engine closed the event stream'));
      };
      stream.on('error', ended);
      stream.on('end', () => ended());
    });
  }

  private dispatchEvent(line: string, onEvent: (event: ExecutorEvent) => void): void {
    let event: { Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    const label = this.options.eventIdLabel;
    const containerId = label === undefined ? event.Actor?.ID : event.Actor?.Attributes?.[label];
    const jobId = event.Actor?.Attributes?.[LABEL_JOB];
    if (!containerId || jobId === undefined) return;
    if (event.Action === 'oom') onEvent({ type: 'oom', containerId, jobId });
    if (event.Action === 'die') {
      const code = Number(event.Actor?.Attributes?.exitCode);
      onEvent({ type: 'exited', containerId, jobId, exitCode: Number.isFinite(code) ? code : null });
    }
  }
}
