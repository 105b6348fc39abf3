import { REPORT_LOG_LINES, trimLogTail } from '../../callbacks/messages.ts';
import { JOB_ENDPOINT_ENV } from '../../protocol/wire.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import { LABEL_JOB, type ContainerSpec, type ContainerStatus } from '../../executor/executor.ts';
import type { ContainerPhase } from '../../jobs/state.ts';
import type { JobRecord } from '../../jobs/store.ts';
import type { RunnerContext } from './context.ts';

/**
 * A job's container: its environment is the job's own, its trace context (`TRACEPARENT`, when traced) over it,
 * `[core.env]` over that, then the job API endpoints; its resources as the job asked; its secrets' folder, if any.
 */
export function containerSpec(
  job: JobRecord,
  endpoint: string,
  env: Readonly<Record<string, string>>,
  trace: Readonly<Record<string, string>> = {},
  secretsDir?: string,
): ContainerSpec {
  const { spec } = job;
  return {
    name: job.containerName,
    image: spec.image,
    command: spec.command,
    env: { ...spec.env, ...trace, ...env, [JOB_ENDPOINT_ENV.get]: endpoint, [JOB_ENDPOINT_ENV.put]: endpoint },
    labels: { [LABEL_JOB]: job.id },
    // Checked against the agent's maxima when the job arrived (see policy.ts).
    resources: spec.resources,
    ...(secretsDir === undefined ? {} : { secretsDir }),
  };
}

/** What must never be logged or reported about a job: its env values, `[core.env]`'s, and its secret. */
export function secretsOf(job: JobRecord | undefined, env: Readonly<Record<string, string>>): string[] {
  return [...Object.values(job?.spec.env ?? {}), ...Object.values(env), ...(job ? [job.secret] : [])];
}

/**
 * The engine calls a runner makes about its job's container once it exists. Each one logs its
 * failure with the job id and reports it by its result, never by throwing: the runner's next step
 * (or the next reconcile) tries again.
 */
export class JobContainer {
  private readonly jobId: string;
  private readonly ctx: Pick<RunnerContext, 'executor' | 'log'>;

  constructor(jobId: string, ctx: Pick<RunnerContext, 'executor' | 'log'>) {
    this.jobId = jobId;
    this.ctx = ctx;
  }

  /** The last lines of its output for a report (secrets hidden by `hide`, before lines are cut), or undefined when the engine cannot give them. */
  async tailLogs(containerId: string, hide: (lines: string[]) => string[] = (lines) => lines): Promise<string[] | undefined> {
    try {
      return trimLogTail(hide(await this.ctx.executor.logsTail(containerId, REPORT_LOG_LINES)));
    } catch {
      return undefined;
    }
  }

  /** Whether the engine says the container was OOM-killed: its event can be missed (a restart, an outage). */
  async oomKilled(containerId: string): Promise<boolean> {
    return (await this.ctx.executor.inspect(containerId).catch(() => undefined))?.oomKilled === true;
  }

  /** Its stop signal, then the kill after `graceMs`. */
  async stop(containerId: string, graceMs: number): Promise<void> {
    try {
      await this.ctx.executor.stop(containerId, graceMs);
    } catch (err) {
      this.ctx.log.warn({ jobId: this.jobId, containerId, reason: describeHttpError(err) }, 'could not stop the container; will retry when the engine answers');
    }
  }

  async kill(containerId: string): Promise<void> {
    try {
      await this.ctx.executor.kill(containerId);
    } catch (err) {
      this.ctx.log.warn({ jobId: this.jobId, containerId, reason: describeHttpError(err) }, 'could not kill the container');
    }
  }

  /**
   * A cancel of a running job: the stop signal now, the kill (`armKill`) when the grace period, its own or the agent's
   * `cancelGraceMs`, counted from the cancel, ends. Not awaited: the exit arrives as an engine event, and later steps
   * must not wait out the grace period. (Its usage is the meter's last sample: once it exits its cgroup cannot be read,
   * and a sample before the signal would take from the grace period, which is the job's.)
   */
  signalStop(job: JobRecord, cancelGraceMs: number, now: number, armKill: (ms: number) => void): void {
    const containerId = job.containerId;
    if (!containerId) return;
    const graceMs = job.spec.cancelGracePeriod ?? cancelGraceMs;
    const remaining = Math.max(0, (job.cancelRequestedAt ?? now) + graceMs - now);
    this.ctx.log.info({ jobId: this.jobId, containerId, graceMs: remaining }, 'canceling the job: sent its container the stop signal');
    armKill(remaining);
    void this.stop(containerId, remaining);
  }

  /** The canceled job outlived its grace period (its own, or the agent's `cancelGraceMs`): its container is killed. */
  async killAfterGrace(job: JobRecord | undefined, cancelGraceMs: number): Promise<void> {
    if (!job?.containerId) return;
    const graceMs = job.spec.cancelGracePeriod ?? cancelGraceMs;
    this.ctx.log.warn({ jobId: this.jobId, containerId: job.containerId, graceMs }, 'the canceled job outlived its grace period; killing its container');
    await this.kill(job.containerId);
  }

  /** Removes it by id, or by name when its id was never learnt; true when it is gone. */
  async remove(target: string): Promise<boolean> {
    try {
      if (target) await this.ctx.executor.remove(target);
      return true;
    } catch (err) {
      this.ctx.log.warn({ jobId: this.jobId, containerId: target, reason: describeHttpError(err) }, 'could not remove the container');
      return false;
    }
  }
}

/** What the engine's record of a container says about it, for `onReadopt`. */
export function phaseOf(container: ContainerStatus | undefined): ContainerPhase {
  if (!container) return 'missing';
  if (container.running) return 'running';
  return container.startedAt === null ? 'created' : 'exited';
}
