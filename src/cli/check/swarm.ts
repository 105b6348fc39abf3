import type Docker from 'dockerode';
import { describeHttpError } from '../../shared/backoff.ts';

/** One line of `foreman check`; the same shape as check.ts's own. */
export interface SwarmCheckLine {
  status: 'ok' | 'note' | 'warn' | 'FAIL';
  text: string;
}

interface SwarmInfo {
  Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean; Nodes?: number; NodeAddr?: string };
}

/**
 * `foreman check` with `core.executor = "swarm"`: is the engine a swarm manager, and is the job network
 * an overlay (or missing, to be made at start)? The same conditions the Swarm executor refuses to start on.
 */
export async function checkSwarm(
  docker: Docker,
  settings: { networkName: string; hostname: string | undefined; runtime: string | undefined },
  deadline: <T>(work: Promise<T>) => Promise<T>,
): Promise<SwarmCheckLine[]> {
  const lines: SwarmCheckLine[] = [];
  try {
    const swarm = ((await deadline(docker.info())) as SwarmInfo).Swarm;
    if (swarm?.LocalNodeState !== 'active') {
      lines.push({
        status: 'FAIL',
        text: `core.executor = "swarm", but the engine is not in a swarm (${swarm?.LocalNodeState || 'inactive'}): run "docker swarm init" there, or point docker.url at a manager`,
      });
    } else if (!swarm.ControlAvailable) {
      lines.push({ status: 'FAIL', text: 'core.executor = "swarm", but the engine is a swarm worker: point docker.url at a manager' });
    } else {
      const nodes = swarm.Nodes ?? 1;
      const where = settings.hostname ? `core.hostname ${settings.hostname}` : `the manager's node address ${swarm.NodeAddr ?? '(unknown)'}`;
      lines.push({ status: 'ok', text: `swarm manager of ${nodes} node${nodes === 1 ? '' : 's'}; job containers reach the job API at ${where}` });
    }
  } catch (err) {
    lines.push({ status: 'FAIL', text: `could not read the engine's swarm state: ${describeHttpError(err)}` });
  }
  if (settings.runtime)
    lines.push({ status: 'FAIL', text: `docker.runtime "${settings.runtime}" cannot be used with core.executor = "swarm": services have no runtime setting` });

  const name = settings.networkName;
  try {
    const network = (await deadline(docker.getNetwork(name).inspect())) as { Driver?: string; Scope?: string };
    if (network.Driver === 'overlay' && network.Scope === 'swarm') {
      lines.push({
        status: 'note',
        text: `network "${name}" is an overlay network; job containers on it can reach each other (overlays have no enable_icc=false)`,
      });
    } else {
      lines.push({
        status: 'FAIL',
        text: `network "${name}" is a ${network.Scope ?? 'local'} ${network.Driver ?? ''} network; the swarm executor needs an overlay: set another core.network_name`,
      });
    }
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode === 404) {
      lines.push({ status: 'note', text: `network "${name}" does not exist yet; the agent creates it at start, as an attachable overlay` });
    } else {
      lines.push({ status: 'FAIL', text: `could not inspect network "${name}": ${describeHttpError(err)}` });
    }
  }
  return lines;
}
