/**
 * What a job's container used, in every final report of a job whose container ran: the report's
 * `x-foreman-usage` header (JSON), and the `usage` field of the reports the agent writes itself.
 */
export interface JobUsage {
  /** CPU time, user and system, in seconds. */
  readonly cpuSeconds: number | null;
  /** The highest memory use seen (the kernel's own high-water mark where the engine gives it). */
  readonly memoryPeakBytes: number | null;
  /** The container's memory limit; null when it had none. */
  readonly memoryLimitBytes: number | null;
  /** The most processes and threads seen at once. */
  readonly pidsPeak: number | null;
  /** From the container's start to its end (or to the report). */
  readonly wallMs: number;
  readonly blockReadBytes?: number;
  readonly blockWriteBytes?: number;
  readonly networkRxBytes?: number;
  readonly networkTxBytes?: number;
  /** Why figures are missing or bounded, when some are (a task on another node, an agent restart). */
  readonly note?: string;
}

/** The header that carries it on a final report. */
export const USAGE_HEADER = 'x-foreman-usage';

/** `JobUsage` as the header's value: compact JSON, ASCII only. */
export function encodeUsage(usage: JobUsage): string {
  return JSON.stringify(usage).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
