/** Hiding secrets in what the agent logs and reports: URL credentials and known secret values. */

/** What replaces a hidden value. */
export const REDACTED = '[redacted]';

const USERINFO = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/;

/**
 * The URL as it may appear in a log line: a password shown as `***` (`http://user:***@host/…`), a
 * user name without a password too, since that is often a token (`https://***@host/…`), and the value
 * of a query parameter whose name says it is a secret (`?token=***`). In a URL that does not parse,
 * everything between `://` and an `@` is hidden.
 */
export function redactUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value.replace(USERINFO, '$1***@');
  }
  let changed = false;
  if (url.password) url.password = '***';
  else if (url.username) url.username = '***';
  if (url.password || url.username) changed = true;
  // Signed and token-bearing URLs carry their secret in the query (`?token=`, `?sig=`, `?api_key=`).
  for (const name of new Set(url.searchParams.keys())) {
    if (!SECRET_PARAM.test(name)) continue;
    url.searchParams.set(name, '***');
    changed = true;
  }
  return changed ? url.href : value;
}

const SECRET_PARAM = /token|secret|passw|pwd|key|sig|auth|cred/i;

/**
 * `text` with every non-empty value of `values` replaced by `[redacted]`, also where the text quotes it:
 * JSON-escaped, or Go-quoted as the Docker engine echoes a bad env entry (`"A=nul\x00value"`).
 * Longest first, so a value that holds another is hidden whole.
 */
export function redactValues(text: string, values: Iterable<string>): string {
  const forms = new Set<string>();
  for (const value of values) {
    if (value.length === 0) continue;
    forms.add(value);
    forms.add(JSON.stringify(value).slice(1, -1));
    forms.add(goQuoted(value));
  }
  if (forms.size === 0) return text;
  const sorted = [...forms].sort((a, b) => b.length - a.length);
  return text.replace(new RegExp(sorted.map(escapeRegExp).join('|'), 'g'), REDACTED);
}

const GO_ESCAPES: Record<string, string> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
  '"': '\\"',
  '\\': '\\\\',
};
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** The inside of Go's strconv.Quote(value) (what `%q` prints), close enough to find a value in it. */
function goQuoted(value: string): string {
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0) ?? 0;
    const named = GO_ESCAPES[char];
    if (named) out += named;
    else if (PRINTABLE.test(char)) out += char;
    else if (code < 0x20 || code === 0x7f) out += `\\x${hex(code, 2)}`;
    else if (code < 0x10000) out += `\\u${hex(code, 4)}`;
    else out += `\\U${hex(code, 8)}`;
  }
  return out;
}

function hex(code: number, width: number): string {
  return code.toString(16).padStart(width, '0');
}

export function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
