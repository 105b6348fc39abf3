/** How configuration messages name where a value came from and show it, shared by the loader and `docker.registries`. */

/** Where a setting was written: a config file, one environment variable, or a command-line flag. */
export type Origin =
  { readonly kind: 'file'; readonly file: string } | { readonly kind: 'env'; readonly variable: string } | { readonly kind: 'flag'; readonly flag: string };

/** The prefix of a message about a value from `origin`: `<file>: ` or `env <VARIABLE>: `. */
export function where(origin: Origin | undefined): string {
  if (origin === undefined) return '';
  if (origin.kind === 'flag') return `${origin.flag}: `;
  return origin.kind === 'file' ? `${origin.file}: ` : `env ${origin.variable}: `;
}

/** Registry passwords, in any form a message names them (`docker.registries[0].password`, `docker.registries.0.password`). */
const REGISTRY_PASSWORD = /^docker\.registries(\[\d+\]|\.\d+)\.password$/;

/** Secrets never appear in messages or `foreman check` output. */
export function isSecretKey(dotted: string): boolean {
  return dotted === 'core.token' || dotted.startsWith('core.env.') || REGISTRY_PASSWORD.test(dotted);
}

/** A value as it appears in messages: strings quoted, secrets redacted. */
export function show(dotted: string, value: unknown): string {
  if (isSecretKey(dotted) && value !== '') return typeof value === 'string' ? '<redacted>' : `<redacted ${typeof value}>`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return `[${value.map((item) => show(dotted, item)).join(', ')}]`;
  if (typeof value === 'object' && value !== null) return 'a table';
  return String(value);
}

/** `; did you mean X?` for the closest candidate within `maxEdits` edits (two by default), else nothing. */
export function suggestion(input: string, candidates: readonly string[], maxEdits = 2): string {
  let best: string | undefined;
  let bestDistance = maxEdits + 1;
  for (const candidate of candidates) {
    const distance = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best === undefined ? '' : `; did you mean ${best}?`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Why a file could not be read, in a few words. */
export function readProblem(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}
