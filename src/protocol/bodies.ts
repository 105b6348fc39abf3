/**
 * The protocol's structured values (src/protocol/wire.ts re-exports them): the usage a final report carries
 * (`x-foreman-usage`, `usage`), the host facts a poll carries (`x-foreman-attributes`), a post_job hook's result
 * (`x-foreman-post-job-hook`).
 */

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

/** `JobUsage` as the header's value: compact JSON, ASCII only. */
export function encodeUsage(usage: JobUsage): string {
  return JSON.stringify(usage).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The host a job would run on, as its engine describes it. */
export interface HostFacts {
  readonly arch: string;
  readonly os: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  /** `docker` or `podman`. */
  readonly engine: string;
  readonly engineVersion: string;
  readonly runtimes: readonly string[];
  /** Free bytes where the engine keeps images; undefined when the agent cannot see that file system. */
  readonly diskFreeBytes: number | undefined;
}

/**
 * `HEADER.attributes`: what this agent's host offers, as `key=value` pairs (keys and values URL-encoded, joined
 * by commas, as `x-foreman-labels`): `arch`, `os`, `cpus`, `memory` (bytes), `disk_free` (bytes where the engine
 * keeps images, when the agent can see that file system), `engine` (`docker`, `podman`), `engine_version`,
 * `runtimes` (comma-separated), `executor` (`docker`, `swarm`).
 */
export function encodeAttributes(facts: HostFacts, executor: string): string {
  const pairs: Array<[string, string | number | undefined]> = [
    ['arch', facts.arch],
    ['os', facts.os],
    ['cpus', facts.cpus],
    ['memory', facts.memoryBytes],
    ['disk_free', facts.diskFreeBytes],
    ['engine', facts.engine],
    ['engine_version', facts.engineVersion],
    ['runtimes', facts.runtimes.join(',')],
    ['executor', executor],
  ];
  return pairs
    .filter((pair): pair is [string, string | number] => pair[1] !== undefined && pair[1] !== '')
    .map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`)
    .join(',');
}

/** How a host-side hook ended: its exit code (null when killed or never started), whether it timed out, how long it ran. */
export interface HookResult {
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly durationMs: number;
}

/** `HookResult` as `x-foreman-post-job-hook` carries it: `exit=0; ms=1234`, `exit=none; ms=300000; timed-out`. */
export function encodeHookResult(result: HookResult): string {
  return `exit=${result.exitCode ?? 'none'}; ms=${Math.max(0, Math.round(result.durationMs))}${result.timedOut ? '; timed-out' : ''}`;
}

/** The header's value read back; undefined when it is not one `encodeHookResult` writes. */
export function parseHookResult(value: string | undefined): HookResult | undefined {
  const match = /^exit=(none|-?\d+); ms=(\d+)(; timed-out)?$/.exec(value ?? '');
  if (!match?.[1] || !match[2]) return undefined;
  return { exitCode: match[1] === 'none' ? null : Number(match[1]), durationMs: Number(match[2]), timedOut: match[3] !== undefined };
}
