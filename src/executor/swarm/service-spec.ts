import { createHash } from 'node:crypto';
import { LABEL_AGENT, LABEL_JOB, LABEL_MANAGED, type ContainerSpec, type ContainerStatus } from '../executor.ts';
import { parseTime } from '../docker/docker-executor.ts';
import type { ContainerSettings, EngineInfo } from '../docker/hardening.ts';

/** Swarm's label on each task container naming its service: how a container event finds its job. */
export const SERVICE_ID_LABEL = 'com.docker.swarm.service.id';

/** Task states after which the task never runs again (swarmkit's `TaskState` ≥ complete). */
const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned', 'remove']);

/** The parts of a swarm task (`GET /tasks`) the executor reads. */
export interface Task {
  readonly ID?: string;
  readonly NodeID?: string;
  readonly CreatedAt?: string;
  readonly Status?: {
    readonly Timestamp?: string;
    readonly State?: string;
    readonly Message?: string;
    readonly Err?: string;
    readonly ContainerStatus?: { readonly ContainerID?: string; readonly ExitCode?: number };
  };
}

/**
 * A service name swarm accepts for a container name: a DNS label (`[A-Za-z0-9]`, with `-` and `_` inside,
 * at most 63 characters). Names that need changing get a hash of the original, so the mapping stays
 * one-to-one and the same name always finds the same service (which is what makes `create` repeatable).
 */
export function serviceNameFor(name: string): string {
  if (/^[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*$/.test(name) && name.length <= 63) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 12);
  const readable = name
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .slice(0, 50)
    .replace(/^[-_]+|[-_]+$/g, '');
  return readable ? `${readable}-${hash}` : hash;
}

/**
 * `extra_hosts` in the form a service takes (`IP name`, as in /etc/hosts). `host-gateway` means the host the
 * agent runs on: on a swarm that is the manager's node address, which every node reaches (docker0's address
 * would be each node's own).
 */
export function serviceHosts(extraHosts: readonly string[], nodeAddress: string | undefined): string[] {
  return extraHosts.flatMap((entry) => {
    const at = entry.indexOf(':');
    const host = entry.slice(0, at);
    const address = entry.slice(at + 1);
    const ip = address === 'host-gateway' ? nodeAddress : address;
    return ip ? [`${ip} ${host}`] : [];
  });
}

export interface ServiceSettings extends ContainerSettings {
  readonly agentId: string;
  readonly networkName: string;
  readonly hosts: readonly string[];
}

/**
 * One job as a `replicated-job` service: one task, run once, never restarted, with the same labels, env,
 * limits and hardening as a container of the Docker executor. Swarm (API 1.41) has no `no-new-privileges`
 * and no runtime setting for services; docs/operations.md says so.
 */
export function serviceSpec(spec: ContainerSpec, settings: ServiceSettings): Record<string, unknown> {
  const labels = { ...spec.labels, [LABEL_MANAGED]: 'true', [LABEL_AGENT]: settings.agentId };
  const memory = spec.resources?.memory ?? settings.memoryLimit;
  const cpus = spec.resources?.cpus ?? settings.cpus ?? 0;
  const pids = spec.resources?.pids ?? settings.pidsLimit ?? 0;
  const capAdd = settings.capAdd ?? [];
  return {
    Name: serviceNameFor(spec.name),
    Labels: labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: spec.image,
        // Args replaces the image's CMD and keeps its ENTRYPOINT, as a container's Cmd does.
        ...(spec.command ? { Args: [...spec.command] } : {}),
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        // On the task's container too, so the engine's container events and listings find the job.
        Labels: labels,
        ...(settings.user ? { User: settings.user } : {}),
        Hosts: [...settings.hosts],
        // Without an init, node (and many programs) as PID 1 ignore SIGTERM and stop only when killed.
        Init: true,
        CapabilityDrop: ['ALL'],
        ...(capAdd.length > 0 ? { CapabilityAdd: [...capAdd] } : {}),
        // As the Docker executor's read-only root: a writable /tmp for anyone (sticky).
        ...(settings.readOnlyRootfs ? { ReadOnly: true, Mounts: [{ Type: 'tmpfs', Target: '/tmp', TmpfsOptions: { Mode: 0o1777 } }] } : {}),
      },
      Resources: {
        Limits: {
          ...(memory > 0 ? { MemoryBytes: memory } : {}),
          ...(cpus > 0 ? { NanoCPUs: Math.round(cpus * 1e9) } : {}),
          ...(pids > 0 ? { Pids: pids } : {}),
        },
      },
      RestartPolicy: { Condition: 'none', MaxAttempts: 0 },
      Networks: [{ Target: settings.networkName }],
    },
    Mode: { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } },
  };
}

export function isTerminal(task: Task): boolean {
  return TERMINAL.has(task.Status?.State ?? '');
}

/** The task that stands for the job: the newest (a replicated job with no restarts has one). */
export function latestTask(tasks: readonly Task[]): Task | undefined {
  let latest: Task | undefined;
  for (const task of tasks) if (!latest || (task.CreatedAt ?? '') > (latest.CreatedAt ?? '')) latest = task;
  return latest;
}

/** The task's container ran (or runs): it got past `starting`. Rejected tasks and failed pulls never did. */
export function containerStarted(task: Task): boolean {
  const state = task.Status?.State ?? '';
  if (state === 'running' || state === 'complete') return true;
  // A container that ran and ended says "started" (or its exit); one that never started carries the engine's refusal.
  return task.Status?.Message === 'started' || /non-zero exit/.test(task.Status?.Err ?? '');
}

/** Why swarm will not run the task (yet): a pending task that no node can take fails the job at once. */
export function unschedulable(task: Task): string | undefined {
  const err = task.Status?.Err ?? '';
  return task.Status?.State === 'pending' && /no suitable node/.test(err) ? err : undefined;
}

/** What the task alone tells: no OOM flag (that takes the container), and its status's time as the start once the container started. */
export function taskStatus(service: ServiceInfo, task: Task | undefined): ContainerStatus {
  const ended = task !== undefined && isTerminal(task);
  return {
    id: service.ID,
    jobId: service.Spec?.Labels?.[LABEL_JOB],
    // Not yet placed or pulling counts as running: the task is on its way, and swarm will not drop it.
    running: !ended,
    exitCode: ended ? (task.Status?.ContainerStatus?.ExitCode ?? null) : null,
    oomKilled: false,
    startedAt: task && containerStarted(task) ? parseTime(task.Status?.Timestamp) : null,
  };
}

/** A service as the engine lists it: what foreman reads of it. */
export interface ServiceInfo {
  readonly ID: string;
  readonly Spec?: { readonly Labels?: Record<string, string> };
}

/** What the engine's `/info` says of its swarm. */
export interface SwarmInfo extends EngineInfo {
  readonly Swarm?: {
    readonly NodeID?: string;
    readonly NodeAddr?: string;
    readonly LocalNodeState?: string;
    readonly ControlAvailable?: boolean;
    readonly Nodes?: number;
  };
}
