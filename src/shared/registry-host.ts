/** Which registry an image comes from, and registry hosts as credentials are looked up by. */
import { fullImageReference } from './image-pattern.ts';

export const DOCKER_HUB = 'docker.io';

/** What Docker itself sends as Docker Hub's `serveraddress` (and keys its credentials by in config.json). */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';

const HUB_NAMES = new Set([DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io']);

/** A registry `host[:port]` in the one form credentials are matched by: lower case, Docker Hub's names as `docker.io`. */
export function registryHostKey(host: string): string {
  const lower = host.toLowerCase();
  return HUB_NAMES.has(lower) ? DOCKER_HUB : lower;
}

/**
 * The registry the engine pulls `image` from, by Docker's rule: the first path part is a registry when it
 * has a `.` or a `:` or is `localhost`; otherwise the image is on Docker Hub (`node`, `team/app`).
 */
export function registryOfImage(image: string): string {
  const full = fullImageReference(image);
  return registryHostKey(full.slice(0, full.indexOf('/')));
}
