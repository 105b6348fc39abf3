/** `x-foreman-cancel`: job ids an agent should cancel, on poll replies and callback replies. */
export const CANCEL_HEADER = 'x-foreman-cancel';

/**
 * Agents (node's HTTP client) refuse replies with more than 16 KiB of headers, so one reply carries
 * at most this much; the ids left out go in later replies, since a pending cancel is repeated until
 * its job ends.
 */
const MAX_HEADER_LENGTH = 8 * 1024;

/** Percent-encodes each id and joins them with `,`, oldest first; undefined when there is nothing to send. */
export function formatCancelHeader(ids: readonly string[]): string | undefined {
  let value = '';
  for (const id of ids) {
    const encoded = encodeURIComponent(id);
    const next = value === '' ? encoded : `${value},${encoded}`;
    if (next.length > MAX_HEADER_LENGTH) break;
    value = next;
  }
  return value === '' ? undefined : value;
}

/** The inverse of formatCancelHeader, for clients and tests; entries that do not decode are skipped. */
export function parseCancelHeader(value: string | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return value.split(',').flatMap((part) => {
    try {
      const id = decodeURIComponent(part.trim());
      return id === '' ? [] : [id];
    } catch {
      return [];
    }
  });
}
