// The config's own string formats, which the generated validator calls (config-validator.generated.ts).
import { isHttpUrl } from '../shared/job-input.ts';

export function isHttpUrlOrEmpty(value: string): boolean {
  return value === '' || isHttpUrl(value);
}

export function isDockerUrl(value: string): boolean {
  try {
    const url = new URL(value);
    if (url.protocol === 'unix:') return url.pathname.length > 1;
    return ['tcp:', 'http:', 'https:'].includes(url.protocol) && url.hostname !== '';
  } catch {
    return false;
  }
}

export function isHostPortOrEmpty(value: string): boolean {
  if (value === '') return true;
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(value);
  return match !== null && Number(match[2]) <= 65535;
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/**
 * Milliseconds from a duration written with units, as Go and systemd write them: `500ms`, `90s`, `15m`, `2h`, `7d`,
 * or parts combined from the largest unit down (`1h30m`, `1m30s`); a part may have a fraction (`1.5s`). Undefined
 * for anything else, and for a total that is not a whole number of milliseconds (`0.5ms`). Digits alone are milliseconds.
 */
export function parseDuration(text: string): number | undefined {
  const compact = text.trim();
  if (/^\d{1,16}$/.test(compact)) return Number.isSafeInteger(Number(compact)) ? Number(compact) : undefined;
  if (!DURATION.test(compact)) return undefined;
  let total = 0;
  let previous = Number.POSITIVE_INFINITY;
  for (const [, amount = '', unit = 'ms'] of compact.matchAll(DURATION_PART)) {
    const factor = UNIT_MS[unit as keyof typeof UNIT_MS];
    // "30s1m" or "1m1m" is a slip, not a duration.
    if (factor >= previous) return undefined;
    previous = factor;
    total += Number(amount) * factor;
  }
  const rounded = Math.round(total);
  // Fractions such as 0.1s are not exact in binary; a total within a microsecond of a whole millisecond is one.
  return Math.abs(total - rounded) < 1e-3 && Number.isSafeInteger(rounded) ? rounded : undefined;
}

/** A number of milliseconds in the largest units that write it exactly: 90000 → `1m30s`, 1500 → `1s500ms`, 0 → `0`. */
export function formatDuration(ms: number): string {
  if (ms === 0 || !Number.isSafeInteger(ms) || ms < 0) return String(ms);
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, factor] of [...Object.entries(UNIT_MS)].reverse()) {
    const amount = Math.floor(rest / factor);
    if (amount > 0) parts.push(`${amount}${unit}`);
    rest -= amount * factor;
  }
  return parts.join('');
}
