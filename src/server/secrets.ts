// Secrets of the control server: each job's, which its callbackUrl and logsUrl carry, and the tokens of agents and
// operators; every comparison in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 random bits, URL-safe. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Compares in constant time (of the digests). A job without a secret (made before secrets) takes any. */
export function secretMatches(stored: string | null, presented: string | undefined): boolean {
  if (stored === null) return true;
  if (presented === undefined) return false;
  return timingSafeEqual(digest(stored), digest(presented));
}

/** A set of tokens, kept as digests, checked in constant time each. */
export class TokenSet {
  readonly #digests: Buffer[];

  constructor(tokens: readonly string[]) {
    this.#digests = tokens.filter((token) => token !== '').map(digest);
  }

  get size(): number {
    return this.#digests.length;
  }

  has(presented: string | undefined): boolean {
    if (presented === undefined) return false;
    const presentedDigest = digest(presented);
    // Every one compared, so the time says nothing about which matched.
    let found = false;
    for (const known of this.#digests) found = timingSafeEqual(known, presentedDigest) || found;
    return found;
  }
}
