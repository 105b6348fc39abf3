/**
 * Checks on a job's strings that a JSON schema cannot express: an image reference's grammar, a URL the
 * agent can deliver to, and text that survives the store, headers, URLs and labels unchanged.
 */

const COMPONENT = '[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*';
const DOMAIN_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const DOMAIN = `(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]+)?`;
const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}';

/**
 * Docker's reference grammar: `[host[:port]/]path[/path…][:tag][@algorithm:hex]`, path components of
 * letters and digits joined by `.`, `_`, `__` or dashes, separated by single `/`s. Letter case is left to the
 * engine, which says what is wrong with it. Nothing else may reach the engine: it answers `a//b`, `a/` or
 * `a/../b` with a redirect, as they sit in its URL paths.
 */
export const IMAGE_REFERENCE = `^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::${TAG})?(?:@${DIGEST})?$`;

/** http(s), case-insensitively: the schema's first word on a URL field. */
export const HTTP_URL_PREFIX = '^[hH][tT][tT][pP][sS]?://';

const SURROGATE = /\p{Surrogate}/u;

/**
 * False for a string holding a lone UTF-16 surrogate (legal in JSON as `"\ud800"`): it has no UTF-8 form,
 * so the store, a header or a URL would carry other characters than the control server sent.
 */
export function isWellFormedText(value: string): boolean {
  return !SURROGATE.test(value);
}

/** The string for a log line: lone surrogates written as `\uXXXX`, cut at 300 characters. */
export function showText(value: string): string {
  const shown = value.replace(/\p{Surrogate}/gu, (s) => `\\u${(s.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`);
  return shown.length > 300 ? `${shown.slice(0, 300)}…` : shown;
}

/**
 * Why `value` is not a URL the agent can send to, or undefined when it is: an absolute http(s) URL
 * that parses, with a host and, when one is given, a port from 1 to 65535.
 */
export function httpUrlProblem(value: string): string | undefined {
  if (!isWellFormedText(value)) return 'is not well-formed Unicode (it holds a lone surrogate)';
  if (!new RegExp(HTTP_URL_PREFIX).test(value)) return 'must be an http(s) URL';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a valid URL (an http(s) URL needs a host, and a port from 1 to 65535)';
  }
  if (url.hostname === '') return 'has no host';
  if (url.port === '0') return 'has port 0 (a port is from 1 to 65535)';
  return undefined;
}

/**
 * Reasons for the fields of a job entry that reach the store, a header, a label or a container and are
 * not well-formed Unicode (the URL fields are judged by `httpUrlProblem`). `body` and unknown fields
 * are stored as JSON text, which escapes a lone surrogate, so they round-trip as they are.
 */
export function illFormedFields(record: Readonly<Record<string, unknown>>): string[] {
  const problems: string[] = [];
  const bad = (value: unknown): boolean => typeof value === 'string' && !isWellFormedText(value);
  for (const field of ['id', 'image']) {
    if (bad(record[field])) problems.push(`${field} is not well-formed Unicode (it holds a lone surrogate)`);
  }
  const { command, env } = record;
  if (Array.isArray(command) && command.some(bad)) problems.push('command holds a string that is not well-formed Unicode');
  if (typeof env === 'object' && env !== null && Object.entries(env).some(([k, v]) => bad(k) || bad(v))) {
    problems.push('env holds a name or value that is not well-formed Unicode');
  }
  return problems;
}

/** `http:` or `https:` URL (the config's `http-url` format). */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
