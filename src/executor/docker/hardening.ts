import type Docker from 'dockerode';
import type { ContainerResources } from '../executor.ts';

/**
 * The admin's `[docker]` settings for every job container. Numbers of 0 mean no limit; the limits are what
 * a container gets when its job asks for nothing (a job may ask for less, never for more).
 */
export interface ContainerSettings {
  /** Bytes. */
  readonly memoryLimit: number;
  readonly cpus?: number | undefined;
  readonly pidsLimit?: number | undefined;
  /** Capabilities added back after all are dropped. */
  readonly capAdd?: readonly string[] | undefined;
  /** `user[:group]`; unset keeps the image's. */
  readonly user?: string | undefined;
  readonly readOnlyRootfs?: boolean | undefined;
  /** An engine runtime (daemon.json `runtimes`), e.g. runsc; unset is the engine's default. */
  readonly runtime?: string | undefined;
}

/** The network option that keeps containers on one bridge from reaching each other (they still reach the host). */
export const ICC_OPTION = 'com.docker.network.bridge.enable_icc';

/** /tmp with a read-only root: writable by any user (sticky), no devices or setuid; exec allowed, as many tools run what they unpack there. */
export const TMP_MOUNT_OPTIONS = 'rw,nosuid,nodev,exec,mode=1777';

/**
 * What every job container is created with beyond its network: no capabilities but those added back,
 * no privilege gain through setuid binaries or file capabilities, and the limits.
 */
export function hardenedHostConfig(settings: ContainerSettings, resources: ContainerResources | undefined): Docker.HostConfig {
  const memory = resources?.memory ?? settings.memoryLimit;
  const cpus = resources?.cpus ?? settings.cpus ?? 0;
  const pids = resources?.pids ?? settings.pidsLimit ?? 0;
  const capAdd = settings.capAdd ?? [];
  return {
    CapDrop: ['ALL'],
    ...(capAdd.length > 0 ? { CapAdd: [...capAdd] } : {}),
    SecurityOpt: ['no-new-privileges'],
    ...(memory > 0 ? { Memory: memory } : {}),
    ...(cpus > 0 ? { NanoCpus: Math.round(cpus * 1e9) } : {}),
    ...(pids > 0 ? { PidsLimit: pids } : {}),
    ...(settings.readOnlyRootfs ? { ReadonlyRootfs: true, Tmpfs: { '/tmp': TMP_MOUNT_OPTIONS } } : {}),
    ...(settings.runtime ? { Runtime: settings.runtime } : {}),
  };
}

/** The parts of the engine's `GET /info` the settings are checked against. */
export interface EngineInfo {
  readonly Runtimes?: Record<string, unknown>;
  readonly NCPU?: number;
}

/** Settings this engine cannot honour, each one line naming its key; retrying will not help. */
export function settingProblems(settings: ContainerSettings, info: EngineInfo): string[] {
  const problems: string[] = [];
  const runtimes = Object.keys(info.Runtimes ?? {});
  if (settings.runtime && !runtimes.includes(settings.runtime)) {
    problems.push(
      `docker.runtime "${settings.runtime}" is not offered by the Docker engine (it offers: ${runtimes.join(', ') || 'none'}); install it and register it in the engine's daemon.json "runtimes", or unset docker.runtime`,
    );
  }
  const cpus = settings.cpus ?? 0;
  const hostCpus = info.NCPU ?? 0;
  if (cpus > 0 && (cpus < 0.01 || (hostCpus > 0 && cpus > hostCpus))) {
    problems.push(
      `docker.cpus = ${cpus}: expected 0 (no limit) or from 0.01 to ${hostCpus || 'the number of CPUs'} (the engine's host has ${hostCpus || 'an unknown number of'} CPUs)`,
    );
  }
  return problems;
}

/** True when containers on the network may reach each other: anything but a bridge with inter-container traffic off. */
export function allowsInterContainerTraffic(network: { Driver?: string; Options?: Record<string, string> | null }): boolean {
  return network.Driver !== 'bridge' || network.Options?.[ICC_OPTION] !== 'false';
}

/**
 * The warning for a job network whose containers may reach each other: one made elsewhere (or by an older
 * foreman), whose settings stay as they are; or, when `created`, one the engine made without honouring the option.
 */
export function iccWarning(name: string, created = false): string {
  if (created) {
    return `network "${name}" lets job containers reach each other: the engine ignored ${ICC_OPTION}=false when creating it (Podman does); it cannot keep them apart`;
  }
  return (
    `network "${name}" lets job containers reach each other: an existing network keeps its settings, and this one was not created ` +
    `with ${ICC_OPTION}=false; remove it (docker network rm ${name}) so foreman creates it anew, or set another core.network_name`
  );
}
