import type { Logger } from 'pino';
import type { Executor, UsageSample } from '../../executor/executor.ts';
import { describeHttpError } from '../../shared/backoff.ts';
import type { Clock, Timer } from '../../shared/clock.ts';
import type { JobUsage } from '../../protocol/wire.ts';

export interface UsageMeterDeps {
  readonly executor: Pick<Executor, 'stats'>;
  readonly clock: Clock;
  readonly log: Logger;
}

/** How long one stats call may take before the meter does without it. */
const SAMPLE_TIMEOUT_MS = 2000;

/**
 * Samples one job's container while it runs: one stats call to the engine every `intervalMs` (a read of the
 * container's cgroup there), and one last call when the job ends while the container still runs (its
 * completion, a timeout, a stall, a cancel, the shutdown), so CPU time and memory are taken to the end.
 * A container that exits by itself cannot be asked afterwards (its cgroup is gone): its figures are those
 * of the last sample, at most `intervalMs` old, except memory on cgroup v1, where the kernel's high-water
 * mark is kept, and an OOM kill, which by definition reached the limit.
 */
export class UsageMeter {
  private readonly deps: UsageMeterDeps;
  private readonly jobId: string;
  private readonly intervalMs: number;
  private containerId: string | undefined;
  private timer: Timer | undefined;
  private finished = false;
  private sampled = 0;
  private cpuNs = 0;
  private memoryPeak = 0;
  private pidsPeak = 0;
  private last: UsageSample | undefined;
  private note: string | undefined;

  constructor(jobId: string, deps: UsageMeterDeps, intervalMs: number) {
    this.jobId = jobId;
    this.deps = deps;
    this.intervalMs = intervalMs;
  }

  /** The container runs (started, or re-adopted after a restart: `note` says what that leaves out). */
  start(containerId: string, note?: string): void {
    if (this.intervalMs <= 0 || this.finished) return;
    this.note ??= note;
    if (this.containerId === containerId && this.timer) return;
    this.containerId = containerId;
    this.schedule(0);
  }

  /**
   * One last sample when `alive` (the container still runs), then no more. `containerId`: the job's container,
   * for one that was created but never sampled (its launch ended by a timeout or a cancel). Never throws.
   */
  async finish(alive: boolean, containerId?: string | null): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.timer?.cancel();
    this.timer = undefined;
    if (this.intervalMs <= 0) return;
    this.containerId ??= containerId ?? undefined;
    if (alive && this.containerId) await this.sample();
  }

  /** The figures for the report; `limitBytes` the container's memory limit (null: none). */
  usage(wallMs: number, limitBytes: number | null, oomKilled: boolean): JobUsage | undefined {
    if (this.intervalMs <= 0) return undefined;
    const seen = this.sampled > 0;
    const peak = oomKilled && limitBytes !== null ? Math.max(this.memoryPeak, limitBytes) : this.memoryPeak;
    const last = this.last;
    return {
      cpuSeconds: seen ? Math.round(this.cpuNs / 1e6) / 1000 : null,
      memoryPeakBytes: seen || oomKilled ? peak : null,
      memoryLimitBytes: limitBytes,
      pidsPeak: seen ? this.pidsPeak : null,
      wallMs: Math.max(0, Math.round(wallMs)),
      ...(last?.blockReadBytes !== undefined ? { blockReadBytes: last.blockReadBytes } : {}),
      ...(last?.blockWriteBytes !== undefined ? { blockWriteBytes: last.blockWriteBytes } : {}),
      ...(last?.networkRxBytes !== undefined ? { networkRxBytes: last.networkRxBytes } : {}),
      ...(last?.networkTxBytes !== undefined ? { networkTxBytes: last.networkTxBytes } : {}),
      ...(seen ? (this.note ? { note: this.note } : {}) : { note: this.note ?? 'the engine gave no figures for this container' }),
    };
  }

  private schedule(delayMs: number): void {
    this.timer = this.deps.clock.after(delayMs, () => {
      this.timer = undefined;
      void this.sample().then(() => {
        if (!this.finished) this.schedule(this.intervalMs);
      });
    });
  }

  private async sample(): Promise<void> {
    const containerId = this.containerId;
    if (!containerId) return;
    let timer: Timer | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = this.deps.clock.after(SAMPLE_TIMEOUT_MS, () => resolve(undefined))));
    try {
      const sample = await Promise.race([this.deps.executor.stats(containerId), timeout]);
      if (sample) this.fold(sample);
    } catch (err) {
      this.deps.log.debug({ jobId: this.jobId, containerId, reason: describeHttpError(err) }, 'could not sample the job container');
    } finally {
      timer?.cancel();
    }
  }

  private fold(sample: UsageSample): void {
    this.sampled++;
    this.last = sample;
    this.cpuNs = Math.max(this.cpuNs, sample.cpuNs);
    // The job's own memory, without the page cache: shared files (the image's binaries) are charged to whichever
    // container read them first. The kernel's high-water mark (cgroup v1) counts cache too, so the cache of the
    // same moment comes off it: a spike between samples is still seen.
    const own = sample.memoryBytes - sample.memoryCacheBytes;
    const watermark = sample.memoryMaxBytes === undefined ? 0 : sample.memoryMaxBytes - sample.memoryCacheBytes;
    this.memoryPeak = Math.max(this.memoryPeak, own, watermark);
    this.pidsPeak = Math.max(this.pidsPeak, sample.pids);
  }
}

/** What the job's container used, for its final report (and the metrics); undefined when no container ran. */
export function usageForReport(
  meter: UsageMeter,
  job: { readonly startedAt: number | null; readonly spec: { readonly resources?: { readonly memory?: number } | undefined } },
  ctx: { readonly clock: Clock; readonly options: { readonly memoryLimit: number }; readonly metrics: { jobUsage?(usage: JobUsage): void } | undefined },
  outcome: string,
): JobUsage | undefined {
  if (job.startedAt === null) return undefined;
  const limit = job.spec.resources?.memory ?? ctx.options.memoryLimit;
  const usage = meter.usage(ctx.clock.now() - job.startedAt, limit > 0 ? limit : null, outcome === 'oom-killed');
  if (usage) ctx.metrics?.jobUsage?.(usage);
  return usage;
}
