import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import type { Clock } from '../../shared/clock.ts';
import type { ImageInfo } from '../../shared/engine-facts.ts';
import type { HostFacts } from '../../protocol/wire.ts';
import type { LogMessage } from '../../shared/log-line.ts';
import { DockerExecutor, engineMessage, statusOf, undefinedIfMissing, type DockerExecutorOptions } from '../docker/docker-executor.ts';
import { settingProblems } from '../docker/hardening.ts';
import { tailLines } from '../docker/log-frames.ts';
import { readLogBatches, type OpenLogs } from '../docker/log-stream.ts';
import {
  ExecutorJobError,
  ExecutorSetupError,
  LABEL_AGENT,
  LABEL_MANAGED,
  type ContainerSpec,
  type ContainerStatus,
  type Executor,
  type ExecutorEvent,
  type LogReadOptions,
  type UsageSample,
} from '../executor.ts';
import {
  containerStarted,
  isTerminal,
  latestTask,
  SERVICE_ID_LABEL,
  serviceHosts,
  serviceNameFor,
  serviceSpec,
  taskStatus,
  unschedulable,
  type ServiceInfo,
  type Task,
  type SwarmInfo,
} from './service-spec.ts';

export interface SwarmExecutorOptions extends DockerExecutorOptions {
  readonly clock: Clock;
  /** How often `start` and `watch` look at the tasks; tests shorten it. */
  readonly taskPollMs?: number;
  /** After a task on another node ended, how long its last lines may still trail in through the service log. */
  readonly remoteLogGraceMs?: number;
}

const REMOTE_LOG_GRACE_MS = 2000;

/**
 * The Executor on a Docker swarm: each job is a `replicated-job` service (one task, never restarted) on an attachable overlay
 * network, created through a manager (`docker.url`). The id the agent holds for a job is its service's id; `inspect`, `list`,
 * `remove` and `logsTail` work on services, so they see tasks on every node. The job's container is the service's one task
 * container. Where it runs on the node the agent talks to, `stop`, `kill`, `readLogs` and the OOM flag act on that container
 * directly (a stop keeps the exit code). On another node the engine offers no per-task stop: `stop` and `kill` remove the
 * service (swarm then stops the container, the exit code is lost), and `readLogs` follows the service's log until the task ended.
 */
export class SwarmExecutor implements Executor {
  private readonly docker: Docker;
  private readonly local: DockerExecutor;
  /** The same engine's container events, naming each task container's service instead of the container. */
  private readonly events: DockerExecutor;
  private readonly pollMs: number;
  private node: { id: string; address: string; nodes: number } | undefined;

  constructor(private readonly options: SwarmExecutorOptions) {
    this.docker = options.docker;
    this.local = new DockerExecutor(options);
    this.events = new DockerExecutor({ ...options, eventIdLabel: SERVICE_ID_LABEL });
    this.pollMs = options.taskPollMs ?? 1000;
  }

  async prepare(): Promise<void> {
    await this.docker.ping();
    const info = (await this.docker.info()) as SwarmInfo;
    const swarm = info.Swarm;
    if (swarm?.LocalNodeState !== 'active' || !swarm.ControlAvailable) {
      const state = swarm?.LocalNodeState === 'active' ? 'a swarm worker, not a manager' : `not in a swarm (${swarm?.LocalNodeState || 'inactive'})`;
      throw new ExecutorSetupError(
        `core.executor = "swarm" needs a swarm manager at docker.url, but that engine is ${state}: run "docker swarm init" there, or point docker.url at a manager`,
      );
    }
    const problems = settingProblems({ ...this.options, runtime: undefined }, info);
    if (this.options.runtime)
      problems.push(
        `docker.runtime "${this.options.runtime}" cannot be used with core.executor = "swarm": services have no runtime setting; unset docker.runtime, or set the runtime as the default of each node's engine`,
      );
    if (problems.length > 0) throw new ExecutorSetupError(problems.join('; '));
    this.node = { id: swarm.NodeID ?? '', address: swarm.NodeAddr ?? '', nodes: swarm.Nodes ?? 1 };
    await this.ensureNetwork();
  }

  /** The job network: an attachable overlay, so services on every node (and, for debugging, plain containers) join it. */
  private async ensureNetwork(): Promise<void> {
    const name = this.options.networkName;
    let existing: { Driver?: string; Scope?: string } | undefined;
    try {
      existing = await this.docker.getNetwork(name).inspect();
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (existing) {
      if (existing.Driver === 'overlay' && existing.Scope === 'swarm') return;
      throw new ExecutorSetupError(
        `network "${name}" is a ${existing.Scope ?? 'local'} ${existing.Driver ?? ''} network; core.executor = "swarm" needs an overlay network: set another core.network_name (or remove that network)`,
      );
    }
    await this.docker
      .createNetwork({ Name: name, Driver: 'overlay', Attachable: true, CheckDuplicate: true, Labels: { [LABEL_MANAGED]: 'true' } })
      .catch((err: unknown) => {
        if (statusOf(err) !== 409) throw err;
      });
  }

  /**
   * The address job containers on every node reach this host by: the node's swarm address (the one other
   * nodes use). `host-gateway` means it too, whatever `network` asks for: docker0 is each node's own.
   */
  async gatewayAddress(_network?: string): Promise<string | undefined> {
    return (this.node?.address ?? ((await this.docker.info()) as SwarmInfo).Swarm?.NodeAddr) || undefined;
  }

  async version(): Promise<string> {
    const engine = await this.local.version();
    const nodes = this.node?.nodes ?? ((await this.docker.info()) as SwarmInfo).Swarm?.Nodes ?? 1;
    return `${engine}, swarm of ${nodes} node${nodes === 1 ? '' : 's'}`;
  }

  /** Pulled on the manager first, so a bad reference or wrong credentials fail the job before a service exists. */
  ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void> {
    return this.local.ensureImage(image, alwaysPull, signal);
  }

  async create(spec: ContainerSpec, _signal?: AbortSignal): Promise<string> {
    const body = serviceSpec(spec, {
      ...this.options,
      hosts: serviceHosts(this.options.extraHosts, this.node?.address || (await this.gatewayAddress())),
    });
    try {
      // The image's registry credentials go with the service, so every node can pull it; none: no X-Registry-Auth header.
      const auth = this.options.registryAuth?.authFor(spec.image) as Docker.AuthConfig;
      const service = (await this.docker.createService(auth, body as Docker.ServiceSpec)) as { id: string };
      return service.id;
    } catch (err) {
      const status = statusOf(err);
      if (status === 409) {
        const existing = await this.service(spec.name);
        if (existing) return existing.ID;
      }
      if (status === undefined) throw err;
      throw new ExecutorJobError('create', `creating the service failed: ${this.redact(engineMessage(err))}`);
    }
  }

  /**
   * The service runs as soon as it exists; this waits until its task's container runs (or ran), so a task
   * swarm rejects (no such image on the node, an engine refusal) or cannot place anywhere fails the launch
   * like a container that does not start.
   */
  async start(serviceId: string, signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const tasks = await this.tasks(serviceId);
      if (!tasks) throw new ExecutorJobError('start', `the job's service ${serviceId} is gone`);
      const task = latestTask(tasks);
      if (task) {
        if (task.Status?.State === 'running' || containerStarted(task)) return;
        const stuck = unschedulable(task);
        if (stuck) throw new ExecutorJobError('start', `swarm cannot place the job: ${stuck}`);
        if (isTerminal(task))
          throw new ExecutorJobError(
            'start',
            `swarm could not start the job: ${this.redact(task.Status?.Err || task.Status?.Message || task.Status?.State || '')}`,
          );
      }
      await this.options.clock.sleep(Math.min(this.pollMs, 250), signal);
    }
  }

  async stop(serviceId: string, graceMs: number): Promise<void> {
    const task = await this.currentTask(serviceId);
    if (!task || isTerminal(task)) return;
    const container = this.localContainer(task);
    if (container) return this.local.stop(container, graceMs);
    await this.remove(serviceId);
  }

  async kill(serviceId: string): Promise<void> {
    const task = await this.currentTask(serviceId);
    if (!task || isTerminal(task)) return;
    const container = this.localContainer(task);
    if (container) return this.local.kill(container);
    await this.remove(serviceId);
  }

  /**
   * Removing the service makes swarm stop its task's container on whichever node it runs, but swarm deletes
   * an ended task's container only when it next reaps (about a minute here): one on this node goes at once.
   */
  async remove(serviceId: string): Promise<void> {
    const tasks = await this.tasks(serviceId);
    // Not a service: a plain container `list` found (or nothing; removing a missing one is fine).
    if (!tasks) return this.local.remove(serviceId);
    try {
      await this.docker.getService(serviceNameFor(serviceId)).remove();
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    for (const task of tasks) {
      const container = this.localContainer(task);
      if (container) await this.local.remove(container);
    }
  }

  async inspect(serviceId: string): Promise<ContainerStatus | undefined> {
    const service = await this.service(serviceId);
    if (!service) return undefined;
    return this.statusOf(service, latestTask((await this.tasks(service.ID)) ?? []));
  }

  // Images and host: the manager's own node, whose engine the agent talks to (a task on another node pulls there).
  imageInfo(image: string): Promise<ImageInfo | undefined> {
    return this.local.imageInfo(image);
  }

  removeImage(image: string): Promise<void> {
    return this.local.removeImage(image);
  }

  hostFacts(): Promise<HostFacts> {
    return this.local.hostFacts();
  }

  /** Its container's use when it runs on this node (another node's gives none), found by label: the task names it late. */
  async stats(serviceId: string): Promise<UsageSample | undefined> {
    const [container] = await this.docker.listContainers({ filters: { label: [`${SERVICE_ID_LABEL}=${serviceId}`], status: ['running'] } });
    return container ? this.local.stats(container.Id) : undefined;
  }

  /** The task's status, with the OOM flag and start time of its container when that is on this node. */
  private async statusOf(service: ServiceInfo, task: Task | undefined): Promise<ContainerStatus> {
    const status = taskStatus(service, task);
    const container = task && this.localContainer(task);
    const local = container ? await this.local.inspect(container) : undefined;
    return { ...status, oomKilled: local?.oomKilled ?? false, startedAt: local?.startedAt ?? status.startedAt };
  }

  /** This agent's services, and plain containers with its labels (left from a run with the Docker executor), so they are cleared too. */
  async list(): Promise<ContainerStatus[]> {
    return [...(await this.services()), ...(await this.strayContainers())];
  }

  private async services(): Promise<ContainerStatus[]> {
    return Promise.all((await this.serviceTasks()).map(([service, task]) => this.statusOf(service, task)));
  }

  /** This agent's services, each with its latest task. */
  private async serviceTasks(): Promise<Array<[ServiceInfo, Task | undefined]>> {
    const services = (await this.docker.listServices({ filters: { label: [`${LABEL_AGENT}=${this.options.agentId}`] } })) as ServiceInfo[];
    if (services.length === 0) return [];
    const tasks = (await this.docker.listTasks({ filters: { service: services.map((s) => s.ID) } })) as Array<Task & { ServiceID?: string }>;
    return services.map((s) => [s, latestTask(tasks.filter((t) => t.ServiceID === s.ID))]);
  }

  private async strayContainers(): Promise<ContainerStatus[]> {
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_AGENT}=${this.options.agentId}`] } });
    const strays = containers.filter((c) => c.Labels?.[SERVICE_ID_LABEL] === undefined);
    const statuses = await Promise.all(strays.map((c) => this.local.inspect(c.Id)));
    return statuses.filter((s): s is ContainerStatus => s !== undefined);
  }

  async logsTail(serviceId: string, lines: number): Promise<string[]> {
    // Without a follow dockerode answers a buffer, whatever its types say.
    const raw = (await this.docker
      .getService(serviceNameFor(serviceId))
      .logs({ stdout: true, stderr: true, tail: lines, follow: false })
      .catch(undefinedIfMissing)) as Buffer | undefined;
    return raw ? tailLines(raw, lines) : [];
  }

  async *readLogs(serviceId: string, options: LogReadOptions, signal: AbortSignal): AsyncIterable<LogMessage[]> {
    const task = await this.currentTask(serviceId);
    if (!task) return;
    const container = this.localContainer(task);
    if (container) {
      yield* this.local.readLogs(container, options, signal);
      return;
    }
    yield* this.remoteLogs(serviceId, options, signal);
  }

  /** The service's log, which swarm gathers from the task's node; followed until the task has ended. */
  private remoteLogs(serviceId: string, options: LogReadOptions, signal: AbortSignal): AsyncIterable<LogMessage[]> {
    const open: OpenLogs = (query) => this.docker.getService(serviceNameFor(serviceId)).logs(query).catch(undefinedIfMissing);
    // A service's followed log never ends by itself (it waits for more tasks): it ends once the task has.
    return readLogBatches(open, options, signal, (stream, reading) => this.endWhenTaskEnds(serviceId, stream, reading));
  }

  private async endWhenTaskEnds(serviceId: string, stream: Readable, signal: AbortSignal): Promise<void> {
    try {
      for (;;) {
        await this.options.clock.sleep(this.pollMs, signal);
        const task = await this.currentTask(serviceId);
        if (!task || isTerminal(task)) break;
      }
      await this.options.clock.sleep(this.options.remoteLogGraceMs ?? REMOTE_LOG_GRACE_MS, signal);
      stream.push(null);
    } catch {
      // Aborted: the reader is gone.
    }
  }

  /**
   * Exits come from two places: the engine's container events for tasks on this node (prompt, with OOM
   * kills), and a look at every task of this agent's services each `taskPollMs`, for tasks on other nodes,
   * and for services removed while their task ran (exit code unknown). The agent takes a repeated exit as one.
   */
  async watch(onEvent: (event: ExecutorEvent) => void, signal: AbortSignal, onReady?: () => void): Promise<void> {
    if (signal.aborted) return;
    const watching = new AbortController();
    const stop = (): void => watching.abort();
    signal.addEventListener('abort', stop, { once: true });
    const fromEvents = this.events.watch(onEvent, watching.signal, onReady);
    const polling = this.pollTasks(onEvent, watching.signal);
    try {
      await Promise.race([fromEvents, polling]);
    } finally {
      signal.removeEventListener('abort', stop);
      watching.abort();
      await Promise.allSettled([fromEvents, polling]);
    }
  }

  /** Reports every service whose task has ended once, and a service that vanished while its task ran. */
  private async pollTasks(onEvent: (event: ExecutorEvent) => void, signal: AbortSignal): Promise<void> {
    const running = new Map<string, string>();
    const ended = new Set<string>();
    while (!signal.aborted) {
      // Only the tasks' states: the OOM flag, which needs the container, is read when the ending inspects the job.
      let statuses: ContainerStatus[];
      try {
        statuses = (await this.serviceTasks()).map(([service, task]) => taskStatus(service, task));
      } catch (err) {
        // An answer (a service removed between the listings, a busy manager) is not a lost engine: look again.
        if (statusOf(err) === undefined) throw err;
        await this.options.clock.sleep(this.pollMs, signal).catch(() => undefined);
        continue;
      }
      const seen = new Set<string>();
      for (const status of statuses) {
        if (status.jobId === undefined) continue;
        seen.add(status.id);
        if (status.running) {
          running.set(status.id, status.jobId);
        } else if (!ended.has(status.id)) {
          ended.add(status.id);
          running.delete(status.id);
          onEvent({ type: 'exited', containerId: status.id, jobId: status.jobId, exitCode: status.exitCode });
        }
      }
      for (const id of ended) if (!seen.has(id)) ended.delete(id);
      for (const [id, jobId] of running) {
        if (seen.has(id)) continue;
        running.delete(id);
        onEvent({ type: 'exited', containerId: id, jobId, exitCode: null });
      }
      await this.options.clock.sleep(this.pollMs, signal).catch(() => undefined);
    }
  }

  private async service(idOrName: string): Promise<ServiceInfo | undefined> {
    try {
      return (await this.docker.getService(serviceNameFor(idOrName)).inspect()) as ServiceInfo;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /** The service's tasks; undefined when the service does not exist. */
  private async tasks(idOrName: string): Promise<Task[] | undefined> {
    const service = await this.service(idOrName);
    if (!service) return undefined;
    return (await this.docker.listTasks({ filters: { service: [service.ID] } })) as Task[];
  }

  private async currentTask(idOrName: string): Promise<Task | undefined> {
    return latestTask((await this.tasks(idOrName)) ?? []);
  }

  /** Registry passwords never reach a log or report through an engine message. */
  private redact(message: string): string {
    return this.options.registryAuth?.redact(message) ?? message;
  }

  /** The task's container when it is on the node the agent talks to. */
  private localContainer(task: Task): string | undefined {
    const container = task.Status?.ContainerStatus?.ContainerID;
    return container && this.node && task.NodeID === this.node.id ? container : undefined;
  }
}
