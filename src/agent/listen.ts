import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { promisify } from 'node:util';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Executor } from '../executor/executor.ts';

const run = promisify(execFile);

/** The settings that decide where the job API listens (from `[core]`). */
export interface ListenSettings {
  readonly hostname: string | undefined;
  readonly listen_address: string | undefined;
  readonly extra_hosts: readonly string[];
  readonly network_name: string;
}

export interface ListenAddress {
  /** Host put in the job endpoint URLs. */
  readonly advertise: string;
  /** Local address the job API binds to. */
  readonly bind: string;
}

function localAddresses(): Map<string, string> {
  const byAddress = new Map<string, string>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) byAddress.set(a.address, name);
  }
  return byAddress;
}

/** docker0's IPv4 address as the kernel has it (`ip -4 -o addr show dev docker0`), for engines whose default bridge reports no gateway. */
async function docker0FromKernel(): Promise<string | undefined> {
  try {
    const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0'], { timeout: 2000 });
    return /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Listens only where containers reach the agent, and never on every interface unless told to:
 * - `listen_address` when set (`0.0.0.0` included);
 * - no `hostname`: the job network's gateway, advertised as is;
 * - `hostname` mapped to `host-gateway` in extra_hosts: the default bridge's gateway, which
 *   host-gateway means. It comes from the engine (or the kernel), not from Node's interface list,
 *   which leaves out docker0 while no container uses the default bridge (no carrier);
 * - `hostname` that is, or resolves to, a local address: that address;
 * - otherwise it refuses: it cannot tell where the name leads.
 */
export async function resolveListenAddress(core: ListenSettings, executor: Executor, kernelDocker0 = docker0FromKernel): Promise<ListenAddress> {
  if (!core.hostname) {
    const gateway = await executor.gatewayAddress();
    if (!gateway) throw new Error(`network ${core.network_name} has no gateway address; set core.hostname and core.listen_address`);
    return { advertise: gateway, bind: core.listen_address ?? gateway };
  }
  const advertise = core.hostname;
  if (core.listen_address) return { advertise, bind: core.listen_address };
  const hostGateway = core.extra_hosts.some((h) => h.toLowerCase() === `${advertise.toLowerCase()}:host-gateway`);
  if (hostGateway) {
    const bridge = (await executor.gatewayAddress('bridge').catch(() => undefined)) ?? (await kernelDocker0());
    if (bridge) return { advertise, bind: bridge };
    throw new Error(`core.hostname ${advertise} means host-gateway, but the engine's default bridge has no gateway address; set core.listen_address`);
  }
  const local = localAddresses();
  const candidates = isIP(advertise)
    ? [advertise]
    : await lookup(advertise, { all: true }).then(
        (r) => r.map((a) => a.address),
        () => [],
      );
  const match = candidates.find((a) => local.has(a));
  if (match) return { advertise, bind: match };
  const seen = candidates.length > 0 ? ` (it resolves to ${candidates.join(', ')})` : ' (it does not resolve here)';
  throw new Error(
    `core.hostname ${advertise} is not an address of this host${seen}, so foreman cannot tell where to listen; set core.listen_address (0.0.0.0 listens on every interface)`,
  );
}
