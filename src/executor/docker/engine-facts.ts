import type Docker from 'dockerode';
import { statfs } from 'node:fs/promises';
import type { ImageInfo } from '../../shared/engine-facts.ts';
import type { HostFacts } from '../../protocol/wire.ts';

interface ImageInspect {
  Id?: string;
  RepoDigests?: string[];
  Size?: number;
}

/** The engine's view of `image`; undefined when it has none of that reference. */
export async function imageInfo(docker: Docker, image: string): Promise<ImageInfo | undefined> {
  let answer: ImageInspect;
  try {
    answer = await docker.getImage(image).inspect();
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode === 404) return undefined;
    throw err;
  }
  // The digest of the repository the reference names, when the image came from a registry.
  const repo = repositoryOf(image);
  const digest = answer.RepoDigests?.find((d) => d.startsWith(`${repo}@`)) ?? answer.RepoDigests?.[0];
  return { id: answer.Id ?? '', digest, sizeBytes: answer.Size ?? 0 };
}

/** Removes a reference; a missing one is fine. An image still used by a container is refused by the engine (409). */
export async function removeImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).remove();
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode !== 404) throw err;
  }
}

interface EngineInfoAnswer {
  Architecture?: string;
  OSType?: string;
  NCPU?: number;
  MemTotal?: number;
  ServerVersion?: string;
  DockerRootDir?: string;
  Runtimes?: Record<string, unknown>;
}

/** The engine's host, from `GET /info` and `GET /version`; free disk where the engine keeps images when this host can see it. */
export async function hostFacts(docker: Docker): Promise<HostFacts> {
  const [info, version] = await Promise.all([docker.info() as Promise<EngineInfoAnswer>, docker.version()]);
  const podman = (version as { Components?: Array<{ Name?: string }> }).Components?.some((c) => /podman/i.test(c.Name ?? '')) ?? false;
  return {
    arch: info.Architecture ?? 'unknown',
    os: info.OSType ?? 'unknown',
    cpus: info.NCPU ?? 0,
    memoryBytes: info.MemTotal ?? 0,
    engine: podman ? 'podman' : 'docker',
    engineVersion: info.ServerVersion ?? version.Version,
    runtimes: Object.keys(info.Runtimes ?? {}).sort(),
    diskFreeBytes: info.DockerRootDir ? await freeBytes(info.DockerRootDir) : undefined,
  };
}

/** Free bytes on the file system holding `path`; undefined when this host cannot see it (a remote engine, an agent in a container). */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const stats = await statfs(path);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
}

/** `registry/name` of a reference, without its tag or digest. */
function repositoryOf(image: string): string {
  const withoutDigest = image.split('@')[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  return colon > lastSlash ? withoutDigest.slice(0, colon) : withoutDigest;
}
