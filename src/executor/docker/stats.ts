import type Docker from 'dockerode';
import type { UsageSample } from '../executor.ts';

/** The parts of the engine's stats answer foreman reads (the Docker API's `ContainerStats`, also Podman's). */
interface StatsAnswer {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; max_usage?: number; stats?: { cache?: number; file?: number } };
  pids_stats?: { current?: number };
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op?: string; value?: number }> | null };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
}

/**
 * One sample of a container's use, from `GET /containers/{id}/stats?stream=false&one-shot=true` (one read of
 * its cgroup, no wait for a second one). Undefined when the container is not running: the engine then answers
 * zeros, or an empty `read` time.
 */
export async function containerStats(container: Docker.Container): Promise<UsageSample | undefined> {
  const answer = (await container.stats({ stream: false, 'one-shot': true })) as unknown as StatsAnswer;
  return parseStats(answer);
}

export function parseStats(answer: StatsAnswer): UsageSample | undefined {
  const cpuNs = answer.cpu_stats?.cpu_usage?.total_usage;
  // A stopped container: the engine fills nothing in (a zero `read` time, no CPU counter).
  if (cpuNs === undefined || !answer.read || answer.read.startsWith('0001-')) return undefined;
  const io = answer.blkio_stats?.io_service_bytes_recursive ?? [];
  const sumIo = (op: string): number | undefined => {
    const rows = io.filter((row) => row.op?.toLowerCase() === op);
    return rows.length === 0 ? undefined : rows.reduce((total, row) => total + (row.value ?? 0), 0);
  };
  const networks = Object.values(answer.networks ?? {});
  const sumNet = (key: 'rx_bytes' | 'tx_bytes'): number | undefined =>
    networks.length === 0 ? undefined : networks.reduce((total, net) => total + (net[key] ?? 0), 0);
  return {
    cpuNs,
    memoryBytes: answer.memory_stats?.usage ?? 0,
    memoryMaxBytes: answer.memory_stats?.max_usage || undefined,
    // cgroup v1 says `cache`, v2 `file`.
    memoryCacheBytes: answer.memory_stats?.stats?.cache ?? answer.memory_stats?.stats?.file ?? 0,
    pids: answer.pids_stats?.current ?? 0,
    blockReadBytes: sumIo('read'),
    blockWriteBytes: sumIo('write'),
    networkRxBytes: sumNet('rx_bytes'),
    networkTxBytes: sumNet('tx_bytes'),
  };
}
