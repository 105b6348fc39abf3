import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Executor } from '../executor/executor.ts';

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

function docker0Address(): string | undefined {
  return networkInterfaces().docker0?.find((a) => a.family === 'IPv4')?.address;
}

/**
 * Listens only where containers reach the agent:
 * - `listen_address` when set;
 * - no `hostname`: the job network's gateway, advertised as is;
 * - `hostname` mapped to `host-gateway` in extra_hosts: docker0's address, which host-gateway means;
 * - `hostname` that is, or resolves to, a local address: that address;
 * - otherwise every interface, since we cannot tell where the name leads.
 */
export async function resolveListenAddress(core: ListenSettings, executor: Executor): Promise<ListenAddress> {
  if (!core.hostname) {
    const gateway = await executor.gatewayAddress();
    if (!gateway) throw new Error(`network ${core.network_name} has no gateway address; set core.hostname`);
    return { advertise: gateway, bind: core.listen_address ?? gateway };
  }
  const advertise = core.hostname;
  if (core.listen_address) return { advertise, bind: core.listen_address };
  const hostGateway = core.extra_hosts.some((h) => h.toLowerCase() === `${advertise.toLowerCase()}:host-gateway`);
  if (hostGateway) return { advertise, bind: docker0Address() ?? '0.0.0.0' };
  const local = localAddresses();
  const candidates = isIP(advertise) ? [advertise] : await lookup(advertise, { all: true }).then((r) => r.map((a) => a.address), () => []);
  const match = candidates.find((a) => local.has(a));
  return { advertise, bind: match ?? '0.0.0.0' };
}
