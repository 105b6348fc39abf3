/**
 * `[[docker.registries]]`: the credentials job images are pulled with. Entries come from the file's array
 * of tables and from `FOREMAN_DOCKER_REGISTRIES_<N>_<FIELD>` variables, which set entry N field by field;
 * the schema checks them, then password files are read. With no entries at all, the `auths` of Docker's
 * own config.json are used, as `docker pull` on this host would.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { registryHostKey } from '../shared/registry-host.ts';
import { ConfigError } from './errors.ts';
import { readProblem, show, suggestion, where, type Origin } from './messages.ts';
import { expectedAt, type ValidConfig } from './schema.ts';
import type { ConfigSource, RegistryCredentials } from './types.ts';

export const REGISTRIES_KEY = 'docker.registries';
const ENV_PREFIX = 'FOREMAN_DOCKER_REGISTRIES';
const FIELDS = ['host', 'username', 'password', 'password_file'] as const;
type Field = (typeof FIELDS)[number];
const ENV_VARIABLE = /^FOREMAN_DOCKER_REGISTRIES_(0|[1-9]\d{0,2})_(HOST|USERNAME|PASSWORD|PASSWORD_FILE)$/;

interface FieldSetting {
  readonly value: unknown;
  readonly origin: Origin;
}
type Entry = Map<Field, FieldSetting>;

/** What the loader passes on: where `~` and relative paths lead, and the environment (for DOCKER_CONFIG). */
export interface RegistryContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly home: string;
  readonly cwd: string;
}

/** `docker.registries[1]`: how messages name an entry (numbered from 0, as the variables are). */
function keyOf(index: number): string {
  return `${REGISTRIES_KEY}[${index}]`;
}

export function envVariableOf(index: number, field: Field): string {
  return `${ENV_PREFIX}_${index}_${field.toUpperCase()}`;
}

/** The entries gathered from the file and the environment, before and after validation. */
export class RegistrySettings {
  private readonly entries = new Map<number, Entry>();

  constructor(private readonly warnings: string[]) {}

  /** `docker.registries` as the file wrote it: an array of tables. */
  fromFile(file: string, value: unknown): void {
    if (!Array.isArray(value))
      throw new ConfigError(`${file}: ${REGISTRIES_KEY} = ${show(REGISTRIES_KEY, value)}: expected ${expectedAt(['docker', 'registries'])}`);
    value.forEach((table: unknown, index) => {
      const key = keyOf(index);
      if (!isTable(table)) throw new ConfigError(`${file}: ${key} = ${show(key, table)}: expected a table ([[docker.registries]])`);
      const entry: Entry = new Map();
      for (const [name, fieldValue] of Object.entries(table)) {
        if (isField(name)) entry.set(name, { value: fieldValue, origin: { kind: 'file', file } });
        else
          this.warnings.push(
            `${file}: unknown key ${key}.${name} (ignored)${suggestion(
              `${key}.${name}`,
              FIELDS.map((f) => `${key}.${f}`),
            )}`,
          );
      }
      this.entries.set(index, entry);
    });
  }

  /** Takes a `FOREMAN_DOCKER_REGISTRIES…` variable (answering true), or leaves any other to the caller. */
  fromEnv(variable: string, value: string): boolean {
    if (variable !== ENV_PREFIX && !variable.startsWith(`${ENV_PREFIX}_`)) return false;
    const match = ENV_VARIABLE.exec(variable);
    if (!match) {
      const index = /^FOREMAN_DOCKER_REGISTRIES_(\d{1,3})_/.exec(variable)?.[1];
      const hint =
        index === undefined
          ? `; registries are set with ${ENV_PREFIX}_<N>_HOST, _USERNAME, _PASSWORD or _PASSWORD_FILE (N = 0, 1, …)`
          : suggestion(
              variable,
              FIELDS.map((field) => envVariableOf(Number(index), field)),
            );
      this.warnings.push(`env ${variable}: unknown setting (ignored)${hint}`);
      return true;
    }
    const index = Number(match[1]);
    const field = (match[2] ?? '').toLowerCase() as Field;
    const entry: Entry = this.entries.get(index) ?? new Map<Field, FieldSetting>();
    this.entries.set(index, entry);
    // password and password_file are one setting written two ways: the environment's replaces the file's.
    const other = field === 'password' ? 'password_file' : field === 'password_file' ? 'password' : undefined;
    if (other && entry.get(other)?.origin.kind === 'file') entry.delete(other);
    entry.set(field, { value, origin: { kind: 'env', variable } });
    return true;
  }

  /** The entries as the schema checks them. They are numbered from 0 without gaps, so N means one entry everywhere. */
  data(): Record<string, unknown>[] {
    const list: Record<string, unknown>[] = [];
    for (let index = 0; index < this.entries.size; index++) {
      const entry = this.entries.get(index);
      if (!entry) {
        const next = Math.min(...[...this.entries.keys()].filter((n) => n > index));
        const origin = [...(this.entries.get(next)?.values() ?? [])][0]?.origin;
        throw new ConfigError(`${where(origin)}${keyOf(next)} is set but ${keyOf(index)} is not: entries are numbered 0, 1, 2, … without gaps`);
      }
      list.push(Object.fromEntries([...entry].map(([field, setting]) => [field, setting.value])));
    }
    return list;
  }

  /** A schema error inside an entry as [key, one-line problem]; undefined for an error about anything else. */
  problem(error: ErrorObject, path: readonly string[], file: string | undefined): [key: string, problem: string] | undefined {
    if (path[0] !== 'docker' || path[1] !== 'registries' || path[2] === undefined) return undefined;
    const index = Number(path[2]);
    const key = keyOf(index);
    const entry = this.entries.get(index);
    const field = path[3];
    if (field !== undefined) {
      const dotted = `${key}.${field}`;
      const setting = entry?.get(field as Field);
      return [dotted, `${where(setting?.origin)}${dotted} = ${show(dotted, setting?.value)}: expected ${expectedAt(['docker', 'registries', path[2], field])}`];
    }
    const setIn = fileOf(entry) ?? file ?? 'foreman.toml';
    const missing = error.keyword === 'required' ? String(error.params.missingProperty) : undefined;
    if (missing === 'host' || missing === 'username') {
      return [`${key}.${missing}`, `${key}.${missing} is required: set it in ${setIn} or ${envVariableOf(index, missing)}`];
    }
    // What is left is about the password (the oneOf, or its `required`s): given both ways, or neither.
    if (entry?.has('password') && entry.has('password_file')) {
      return [`${key}.password`, `${where(entry.get('password_file')?.origin)}${key} sets both password and password_file: expected exactly one`];
    }
    return [`${key}.password`, `${key}.password or ${key}.password_file is required: set one in ${setIn} or ${envVariableOf(index, 'password')}`];
  }

  /** The credentials, password files read; with no entries, those of Docker's config.json. */
  compile(
    valid: ValidConfig['docker']['registries'],
    resolvePath: (path: string, origin: Origin | undefined) => string,
    context: RegistryContext,
  ): RegistryCredentials[] {
    if (valid.length === 0) return dockerConfigCredentials(context, this.warnings);
    const seen = new Map<string, number>();
    return valid.map((registry, index) => {
      const entry = this.entries.get(index);
      const key = keyOf(index);
      const first = seen.get(registryHostKey(registry.host));
      if (first !== undefined) {
        throw new ConfigError(
          `${where(entry?.get('host')?.origin)}${key}.host = ${show('', registry.host)}: expected each registry once, but ${keyOf(first)} names it too`,
        );
      }
      seen.set(registryHostKey(registry.host), index);
      let password: string;
      let passwordSource: string;
      if (registry.password_file !== undefined) {
        const origin = entry?.get('password_file')?.origin;
        const path = resolvePath(registry.password_file, origin);
        password = readPasswordFile(path, `${where(origin)}${key}.password_file = ${show('', registry.password_file)}`);
        passwordSource = `from file ${path}`;
      } else {
        const origin = entry?.get('password')?.origin;
        password = registry.password ?? '';
        passwordSource = origin?.kind === 'env' ? `from env ${origin.variable}` : `in ${origin?.kind === 'file' ? origin.file : 'the config file'}`;
      }
      const source = fileOf(entry) ?? 'env';
      return { host: registry.host, username: registry.username, password, identitytoken: undefined, source, password_source: passwordSource };
    });
  }

  /** `sources['docker.registries']`: `file` when the file wrote any entry, `env` when only the environment did. */
  source(): ConfigSource {
    const kinds = [...this.entries.values()].flatMap((entry) => [...entry.values()].map((setting) => setting.origin.kind));
    return kinds.includes('file') ? 'file' : kinds.length > 0 ? 'env' : 'default';
  }
}

function fileOf(entry: Entry | undefined): string | undefined {
  for (const { origin } of entry?.values() ?? []) if (origin.kind === 'file') return origin.file;
  return undefined;
}

function isField(name: string): name is Field {
  return (FIELDS as readonly string[]).includes(name);
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function readPasswordFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${what}: cannot read ${path}: ${readProblem(err)}`);
  }
  // `echo secret > file` ends it in a newline that is no part of the password.
  const password = text.replace(/[\r\n]+$/, '');
  if (password === '') throw new ConfigError(`${what}: ${path} is empty: expected the password`);
  return password;
}

/** `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: where `docker login` keeps credentials. */
export function dockerConfigPath(context: RegistryContext): string {
  const dir = context.env.DOCKER_CONFIG;
  return dir ? resolve(context.cwd, dir, 'config.json') : join(context.home, '.docker', 'config.json');
}

/** The `auths` of Docker's config.json. A missing file means none; a broken one is warned about, not fatal. */
function dockerConfigCredentials(context: RegistryContext, warnings: string[]): RegistryCredentials[] {
  const path = dockerConfigPath(context);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') warnings.push(`cannot read ${path}: ${readProblem(err)}; registry credentials in it are not used`);
    return [];
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the text, which may hold credentials.
    warnings.push(`${path} is not valid JSON; registry credentials in it are not used`);
    return [];
  }
  if (!isTable(doc)) {
    warnings.push(`${path} is not a JSON object; registry credentials in it are not used`);
    return [];
  }
  const unsupported = 'foreman reads only "auths" (set such credentials in [[docker.registries]])';
  if (typeof doc.credsStore === 'string' && doc.credsStore !== '')
    warnings.push(`${path}: credsStore ${JSON.stringify(doc.credsStore)} is not supported; ${unsupported}`);
  if (isTable(doc.credHelpers) && Object.keys(doc.credHelpers).length > 0) {
    warnings.push(`${path}: credHelpers (for ${Object.keys(doc.credHelpers).join(', ')}) are not supported; ${unsupported}`);
  }
  const found = new Map<string, RegistryCredentials>();
  for (const [server, value] of Object.entries(isTable(doc.auths) ? doc.auths : {})) {
    // Keys are hosts or URLs: "registry.example.com:5000", "https://index.docker.io/v1/".
    const host = server.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '').split('/')[0] ?? '';
    const credentials = isTable(value) ? credentialsOf(value) : undefined;
    if (credentials === 'invalid') warnings.push(`${path}: the "auth" of auths ${JSON.stringify(server)} is not base64 of user:password (ignored)`);
    if (!credentials || credentials === 'invalid' || host === '' || found.has(registryHostKey(host))) continue;
    found.set(registryHostKey(host), { host, ...credentials, source: path, password_source: `in ${path}` });
  }
  return [...found.values()];
}

function credentialsOf(entry: Record<string, unknown>): Pick<RegistryCredentials, 'username' | 'password' | 'identitytoken'> | 'invalid' | undefined {
  const identitytoken = typeof entry.identitytoken === 'string' && entry.identitytoken !== '' ? entry.identitytoken : undefined;
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return 'invalid';
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), identitytoken };
  }
  if (typeof entry.username === 'string' && entry.username !== '') {
    return { username: entry.username, password: typeof entry.password === 'string' ? entry.password : '', identitytoken };
  }
  // An empty entry is what `docker login` leaves when a credential store keeps the secret.
  return identitytoken ? { username: '', password: '', identitytoken } : undefined;
}

/** `foreman check`'s rows: host, user name and where the password came from, never the password; sourced `file`, `env` or Docker's config.json. */
export function registryRows(registries: readonly RegistryCredentials[], configFile: string | undefined): [key: string, value: string, source: string][] {
  if (registries.length === 0) return [[REGISTRIES_KEY, '(none)', 'default']];
  return registries.map((r, index) => {
    const secrets = [r.password ? `password: set (${r.password_source})` : '', r.identitytoken ? `identity token: set (${r.password_source})` : ''];
    return [
      keyOf(index),
      [r.host, `username ${JSON.stringify(r.username)}`, ...secrets.filter(Boolean)].join(', '),
      r.source === configFile ? 'file' : r.source,
    ];
  });
}

/** `registry credentials: 2 from /etc/foreman/foreman.toml`, for `foreman check`. */
export function registrySummary(registries: readonly RegistryCredentials[]): string {
  if (registries.length === 0)
    return 'registry credentials: none ([[docker.registries]] is empty and Docker\'s config.json has no "auths"): images are pulled anonymously';
  const counts = new Map<string, number>();
  for (const { source } of registries) counts.set(source, (counts.get(source) ?? 0) + 1);
  return `registry credentials: ${[...counts].map(([source, count]) => `${count} from ${source}`).join(', ')}`;
}
