/** `x-foreman-cancel`: a control server's list of job ids to cancel, on a poll reply or a callback reply. */
export const CANCEL_HEADER = 'x-foreman-cancel';

/** Most ids taken from one header; a longer list is cut (the server repeats it on the next reply). */
const MAX_IDS = 1000;
const MAX_ID_LENGTH = 256;

/**
 * The ids in a cancel header: comma-separated, each percent-encoded. Empty entries, entries that do
 * not decode, and ids longer than a job id may be are skipped; repeated headers are joined.
 */
export function parseCancelHeader(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = typeof value === 'string' ? value : value.join(',');
  const ids = new Set<string>();
  for (const part of joined.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    let id: string;
    try {
      id = decodeURIComponent(trimmed);
    } catch {
      continue;
    }
    if (id.length === 0 || id.length > MAX_ID_LENGTH) continue;
    ids.add(id);
    if (ids.size >= MAX_IDS) break;
  }
  return [...ids];
}
