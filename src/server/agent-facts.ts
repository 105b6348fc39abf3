// What an agent tells about itself and its jobs beyond the seed protocol (docs/protocol.md): a poll's host facts
// (x-foreman-attributes) and images (x-foreman-images), a final report's usage (x-foreman-usage). Each is bounded,
// and a bad value is ignored (undefined), never an error: these are hints for the dashboard and the hand-out.
import { randomBytes } from 'node:crypto';

const MAX_HEADER = 8 * 1024;
const MAX_ATTRIBUTES = 32;
const MAX_VALUE = 256;
const MAX_IMAGES = 50;
const MAX_IMAGE = 512;
const MAX_USAGE = 4 * 1024;

function decode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** `k=v` pairs, URL-encoded, joined by commas; undefined when absent or malformed. */
export function parseAttributes(header: string | undefined): Record<string, string> | undefined {
  if (header === undefined || header.length > MAX_HEADER || header.trim() === '') return undefined;
  const facts: Record<string, string> = {};
  const pairs = header.split(',');
  if (pairs.length > MAX_ATTRIBUTES) return undefined;
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return undefined;
    const key = decode(pair.slice(0, eq).trim());
    const value = decode(pair.slice(eq + 1).trim());
    if (key === undefined || value === undefined || key.length > 64 || value.length > MAX_VALUE || key === '__proto__') return undefined;
    facts[key] = value;
  }
  return facts;
}

/** `<reference>@<digest>` entries, the reference URL-encoded, joined by commas: the references; [] when absent or malformed. */
export function parseImages(header: string | undefined): string[] {
  if (header === undefined || header.length > MAX_HEADER) return [];
  const images = new Set<string>();
  for (const entry of header.split(',')) {
    const at = entry.indexOf('@');
    const reference = decode((at < 0 ? entry : entry.slice(0, at)).trim());
    if (reference === undefined || reference === '' || reference.length > MAX_IMAGE) continue;
    images.add(reference);
    if (images.size >= MAX_IMAGES) break;
  }
  return [...images];
}

/** The usage JSON as received, when it is a JSON object of a bounded size; undefined otherwise. */
export function checkUsage(header: string | undefined): string | undefined {
  if (header === undefined || header.length > MAX_USAGE) return undefined;
  try {
    const value: unknown = JSON.parse(header);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? JSON.stringify(value) : undefined;
  } catch {
    return undefined;
  }
}

/** A new trace for a job submitted without one: a sampled root, as the submission's own span. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}
