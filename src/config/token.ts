// `core.token` and `core.token_file`: which of the two applies, the file read and its mode checked.
import { readFileSync, statSync } from 'node:fs';
import { readProblem, show, where, type Origin } from './messages.ts';
import { expectedAt, TOKEN_PATTERN } from './schema.ts';

interface Setting {
  readonly value: unknown;
  readonly origin: Origin;
}

/**
 * Reads `core.token_file` into `core.token` (of `core`, the values the schema checks next). One of token and
 * token_file is given: the environment's (or a flag's) replaces the file's other form, as for registry
 * passwords; both from the same place is an error. A file its group or every user may read is a warning. Returns
 * the file's absolute path, or the problem, in one line that never holds the token.
 */
export function readTokenFile(
  settings: { readonly token: Setting | undefined; readonly tokenFile: Setting | undefined },
  core: Record<string, unknown>,
  resolvePath: (path: string, origin: Origin) => string,
  warnings: string[],
): { path?: string; problem?: string } {
  const { token, tokenFile } = settings;
  if (!tokenFile) return {};
  if (token) {
    const rank = (origin: Origin): number => ['file', 'env', 'flag'].indexOf(origin.kind);
    if (rank(token.origin) === rank(tokenFile.origin)) {
      delete core.token;
      return { problem: `${where(tokenFile.origin)}core.token and core.token_file are both set: expected exactly one` };
    }
    if (rank(token.origin) > rank(tokenFile.origin)) {
      delete core.token_file;
      return {};
    }
  }
  delete core.token;
  if (typeof tokenFile.value !== 'string' || tokenFile.value === '') return {}; // the schema says what is wrong with it
  const path = resolvePath(tokenFile.value, tokenFile.origin);
  const what = `${where(tokenFile.origin)}core.token_file = ${show('core.token_file', tokenFile.value)}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { problem: `${what}: cannot read ${path}: ${readProblem(err)}` };
  }
  // `echo token > file` ends it in a newline that is no part of the token.
  const value = text.replace(/[\r\n]+$/, '');
  if (value === '') return { problem: `${what}: ${path} is empty: expected the token` };
  if (!new RegExp(TOKEN_PATTERN).test(value)) return { problem: `${what}: ${path} does not hold a token: expected ${expectedAt(['core', 'token'])}` };
  core.token = value;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o044) !== 0) {
    const who = (mode & 0o004) !== 0 ? 'every user' : 'its group';
    warnings.push(`${what}: ${path} may be read by ${who} (mode ${mode.toString(8).padStart(4, '0')}); make it readable by the agent's user alone (chmod 600)`);
  }
  return { path };
}
