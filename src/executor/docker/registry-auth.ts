import type Docker from 'dockerode';
import { redactValues } from '../../shared/redact.ts';
import { DOCKER_HUB, DOCKER_HUB_SERVER, registryHostKey, registryOfImage } from '../../shared/registry-host.ts';

/** Credentials for one registry, as `docker.registries` (or Docker's config.json) gives them. */
export interface RegistryCredential {
  /** `host[:port]`; `docker.io` and `index.docker.io` are Docker Hub. */
  readonly host: string;
  readonly username: string;
  readonly password: string;
  /** An identity token (OAuth refresh token) Docker's config.json may hold instead of a password. */
  readonly identitytoken?: string | undefined;
}

/**
 * The credentials the engine pulls an image with, chosen by the image's registry. dockerode sends what
 * `authFor` returns as the `X-Registry-Auth` header: to a pull here, and to a swarm service's create or
 * update, so every node can pull. Secrets it holds are hidden from the engine's messages by `redact`.
 */
export class RegistryAuth {
  private readonly byHost = new Map<string, RegistryCredential>();

  constructor(credentials: readonly RegistryCredential[] = []) {
    // The first entry for a host wins, as the config loader already refuses duplicates.
    for (const credential of credentials) {
      const key = registryHostKey(credential.host);
      if (!this.byHost.has(key)) this.byHost.set(key, credential);
    }
  }

  /** The auth config for pulling `image`; undefined when no credentials match its registry (an anonymous pull). */
  authFor(image: string): Docker.AuthConfig | undefined {
    const registry = registryOfImage(image);
    const credential = this.byHost.get(registry);
    if (!credential) return undefined;
    return {
      username: credential.username,
      password: credential.password,
      serveraddress: registry === DOCKER_HUB ? DOCKER_HUB_SERVER : registry,
      ...(credential.identitytoken ? { identitytoken: credential.identitytoken } : {}),
    };
  }

  /** Every password and identity token held, for redaction elsewhere. */
  get secrets(): string[] {
    return [...this.byHost.values()].flatMap((c) => [c.password, c.identitytoken ?? '']).filter((secret) => secret !== '');
  }

  /** `text` with every secret held replaced by `[redacted]`: an engine message must never carry one into a log or report. */
  redact(text: string): string {
    return redactValues(text, this.secrets);
  }
}
