// `foreman server`'s settings, with the agent's conventions: each key from a flag, else FOREMAN_SERVER_<KEY>, else
// the older CS_<KEY>, else the TOML file --config names (top-level keys), else its default; durations with units
// (15s, 30d); every bad value one line naming where it came from; the result frozen.
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { formatDuration, parseDuration } from '../config/formats.ts';
import { isPostgresUrl } from './db.ts';
import { DEFAULTS } from './app.ts';

export interface ServerConfig {
  readonly port: number;
  readonly host: string;
  /** A SQLite file or a postgres:// URL. */
  readonly database: string;
  readonly tokens: readonly string[];
  readonly adminTokens: readonly string[];
  readonly readOnlyTokens: readonly string[];
  readonly publicUrl: string | undefined;
  readonly agentTimeoutMs: number;
  readonly retentionMs: number;
  readonly redeliverAfterMs: number;
  readonly imagePreferenceMs: number;
  readonly maxQueuedJobs: number;
  readonly maxJobBytes: number;
  readonly tls: { readonly cert: Buffer; readonly key: Buffer; readonly certFile: string } | undefined;
  readonly logLevel: string;
}

type Kind = 'port' | 'string' | 'tokens' | 'file' | 'duration' | 'count' | 'url' | 'level';

interface Key {
  /** The TOML key and, upper-cased, the FOREMAN_SERVER_ variable's suffix. */
  readonly key: string;
  readonly flag: string;
  /** The variable the control server read before it was `foreman server`. */
  readonly legacy?: string;
  readonly kind: Kind;
  readonly help: string;
}

export const KEYS: readonly Key[] = [
  { key: 'port', flag: '--port', legacy: 'CS_PORT', kind: 'port', help: 'port to listen on (default 8888)' },
  { key: 'host', flag: '--host', legacy: 'CS_HOST', kind: 'string', help: 'address to listen on (default 127.0.0.1)' },
  { key: 'database', flag: '--db', legacy: 'CS_DB', kind: 'string', help: 'a SQLite file (default ./control-server.db) or a postgres:// URL' },
  {
    key: 'tokens',
    flag: '--token',
    legacy: 'CS_TOKENS',
    kind: 'tokens',
    help: 'a bearer token agents may poll with (repeatable; comma-separated in the environment)',
  },
  { key: 'token_file', flag: '--token-file', legacy: 'CS_TOKEN_FILE', kind: 'file', help: 'a file of agent tokens, one a line' },
  { key: 'admin_tokens', flag: '--admin-token', legacy: 'CS_ADMIN_TOKENS', kind: 'tokens', help: 'a token that may submit, cancel and read (repeatable)' },
  { key: 'admin_token_file', flag: '--admin-token-file', legacy: 'CS_ADMIN_TOKEN_FILE', kind: 'file', help: 'a file of admin tokens, one a line' },
  { key: 'read_only_tokens', flag: '--read-only-token', legacy: 'CS_READ_ONLY_TOKENS', kind: 'tokens', help: 'a token that may read only (repeatable)' },
  { key: 'read_only_token_file', flag: '--read-only-token-file', legacy: 'CS_READ_ONLY_TOKEN_FILE', kind: 'file', help: 'a file of read-only tokens' },
  { key: 'public_url', flag: '--public-url', legacy: 'CS_PUBLIC_URL', kind: 'url', help: 'base URL agents reach this server at, for callbackUrl and logsUrl' },
  {
    key: 'agent_timeout',
    flag: '--agent-timeout',
    legacy: 'CS_AGENT_TIMEOUT',
    kind: 'duration',
    help: 'no poll for this long: the agent is lost (default 15s; 0 never)',
  },
  {
    key: 'retention',
    flag: '--retention',
    legacy: 'CS_RETENTION',
    kind: 'duration',
    help: 'delete ended jobs and their logs this long after (default 30d; 0 never)',
  },
  {
    key: 'redeliver_after',
    flag: '--redeliver-after',
    legacy: 'CS_REDELIVER_AFTER',
    kind: 'duration',
    help: 'hand a job its agent never reported on again after (default 60s)',
  },
  {
    key: 'image_preference',
    flag: '--image-preference',
    kind: 'duration',
    help: 'a new job waits this long for a live agent that has its image (default 5s; 0 off)',
  },
  {
    key: 'max_queued_jobs',
    flag: '--max-queued-jobs',
    legacy: 'CS_MAX_QUEUED_JOBS',
    kind: 'count',
    help: 'POST /jobs answers 429 at this many queued jobs (default 10000)',
  },
  { key: 'max_job_size', flag: '--max-job-size', legacy: 'CS_MAX_JOB_SIZE', kind: 'count', help: 'the largest POST /jobs body in bytes (default 1048576)' },
  { key: 'tls_cert', flag: '--tls-cert', legacy: 'CS_TLS_CERT', kind: 'file', help: 'serve HTTPS with this certificate chain (PEM)' },
  { key: 'tls_key', flag: '--tls-key', legacy: 'CS_TLS_KEY', kind: 'file', help: "and this certificate's key (PEM)" },
  { key: 'log_level', flag: '--log-level', legacy: 'CS_LOG_LEVEL', kind: 'level', help: 'fatal, error, warn, info, debug, trace or silent (default info)' },
];

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ServerConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export function envName(key: Key): string {
  return `FOREMAN_SERVER_${key.key.toUpperCase()}`;
}

/** Where a raw value came from, for messages. */
interface Raw {
  readonly value: unknown;
  readonly origin: string;
}

export interface ServerConfigInput {
  /** Flag values by TOML key (`tokens` and the other token lists as arrays). */
  readonly flags: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** --config or FOREMAN_SERVER_CONFIG: a TOML file of these keys. */
  readonly configPath?: string | undefined;
}

export function loadServerConfig(input: ServerConfigInput): ServerConfig {
  const problems: string[] = [];
  let file: Record<string, unknown> = {};
  if (input.configPath !== undefined) {
    try {
      file = parseToml(readFileSync(input.configPath, 'utf8'));
    } catch (error) {
      throw new ServerConfigError([`cannot read ${input.configPath}: ${(error as Error).message.split('\n')[0] ?? ''}`]);
    }
    for (const name of Object.keys(file)) {
      if (!KEYS.some((key) => key.key === name))
        problems.push(`${input.configPath}: unknown key "${name}" (the keys: ${KEYS.map((key) => key.key).join(', ')})`);
    }
  }
  const raw = (key: Key): Raw | undefined => {
    const flag = input.flags[key.key];
    if (flag !== undefined && !(Array.isArray(flag) && flag.length === 0)) return { value: flag, origin: key.flag };
    for (const name of [envName(key), key.legacy]) {
      const value = name === undefined ? undefined : input.env[name];
      if (value !== undefined && value !== '') return { value, origin: name! };
    }
    if (Object.hasOwn(file, key.key)) return { value: file[key.key], origin: `${input.configPath ?? ''}: ${key.key}` };
    return undefined;
  };
  const values = new Map<string, unknown>();
  for (const key of KEYS) {
    const found = raw(key);
    if (found === undefined) continue;
    const parsed = parseValue(key, found);
    if (parsed instanceof Problem) problems.push(parsed.text);
    else values.set(key.key, parsed);
  }
  const get = <T>(key: string, fallback: T): T => (values.has(key) ? (values.get(key) as T) : fallback);

  const tokenList = (listKey: string, fileKey: string): string[] => {
    const listed = get<string[]>(listKey, []);
    const path = get<string | undefined>(fileKey, undefined);
    let fromFile: string[] = [];
    if (path !== undefined) {
      try {
        fromFile = readFileSync(path, 'utf8')
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line !== '' && !line.startsWith('#'));
      } catch (error) {
        problems.push(`cannot read the token file ${path}: ${(error as Error).message}`);
      }
    }
    return [...listed, ...fromFile];
  };
  const tokens = tokenList('tokens', 'token_file');
  const adminTokens = tokenList('admin_tokens', 'admin_token_file');
  const readOnlyTokens = tokenList('read_only_tokens', 'read_only_token_file');
  if (tokens.length === 0) problems.push('at least one agent token is required (--token, --token-file, FOREMAN_SERVER_TOKENS or FOREMAN_SERVER_TOKEN_FILE)');
  if (adminTokens.length === 0) {
    problems.push('at least one admin token is required (--admin-token, --admin-token-file, FOREMAN_SERVER_ADMIN_TOKENS or FOREMAN_SERVER_ADMIN_TOKEN_FILE)');
  }
  const shared = [...new Set(tokens)].filter((token) => adminTokens.includes(token) || readOnlyTokens.includes(token));
  if (shared.length > 0) problems.push('an agent token is also an admin or read-only token: give operators tokens of their own');

  let tls: ServerConfig['tls'];
  const certFile = get<string | undefined>('tls_cert', undefined);
  const keyFile = get<string | undefined>('tls_key', undefined);
  if ((certFile === undefined) !== (keyFile === undefined)) problems.push('--tls-cert and --tls-key go together: give both, or neither');
  else if (certFile !== undefined && keyFile !== undefined) {
    try {
      tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile };
    } catch (error) {
      problems.push(`cannot read the TLS certificate or key: ${(error as Error).message}`);
    }
  }
  const database = get('database', './control-server.db');
  if (problems.length > 0) throw new ServerConfigError(problems);
  return Object.freeze({
    port: get('port', 8888),
    host: get('host', '127.0.0.1'),
    database,
    tokens: Object.freeze(tokens),
    adminTokens: Object.freeze(adminTokens),
    readOnlyTokens: Object.freeze(readOnlyTokens),
    publicUrl: get<string | undefined>('public_url', undefined),
    agentTimeoutMs: get('agent_timeout', DEFAULTS.agentTimeoutMs),
    retentionMs: get('retention', DEFAULTS.retentionMs),
    redeliverAfterMs: get('redeliver_after', DEFAULTS.redeliverAfterMs),
    imagePreferenceMs: get('image_preference', DEFAULTS.imagePreferenceMs),
    maxQueuedJobs: get('max_queued_jobs', DEFAULTS.maxQueuedJobs),
    maxJobBytes: get('max_job_size', DEFAULTS.maxJobBytes),
    tls: tls === undefined ? undefined : Object.freeze(tls),
    logLevel: get('log_level', 'info'),
  });
}

class Problem {
  constructor(readonly text: string) {}
}

function parseValue(key: Key, raw: Raw): unknown {
  const bad = (expected: string) => new Problem(`${raw.origin}=${JSON.stringify(raw.value)}: expected ${expected}`);
  const { value } = raw;
  if (key.kind === 'tokens') {
    if (Array.isArray(value) && value.every((item): item is string => typeof item === 'string')) return value.flatMap(splitTokens);
    if (typeof value === 'string') return splitTokens(value);
    return bad('a token or a list of tokens');
  }
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') return bad('a string');
  switch (key.kind) {
    case 'port': {
      const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
      return port >= 0 && port <= 65535 ? port : bad('a port from 0 to 65535');
    }
    case 'count': {
      const count = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
      if (key.key === 'max_job_size') return count >= 1024 && count <= 1024 ** 3 ? count : bad('a number of bytes from 1024 to 1073741824');
      return count >= 1 && count <= 100_000_000 ? count : bad('a whole number from 1 to 100000000');
    }
    case 'duration': {
      const ms = parseDuration(text);
      const max = key.key === 'retention' ? 3650 * 86_400_000 : 2_147_483_647;
      return ms !== undefined && ms <= max ? ms : bad(`a duration such as 15s, 10m or 30d (at most ${formatDuration(max)}), or 0`);
    }
    case 'url': {
      try {
        const url = new URL(text);
        if (url.protocol === 'http:' || url.protocol === 'https:') return text;
      } catch {
        // below
      }
      return bad('an http:// or https:// URL');
    }
    case 'level':
      return LEVELS.includes(text) ? text : bad(LEVELS.join(', '));
    case 'string':
    case 'file':
      if (text.trim() === '') return bad('a non-empty value');
      if (key.key === 'database' && !isPostgresUrl(text) && /^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
        return bad('a SQLite file path or a postgres:// URL');
      }
      return text;
  }
}

function splitTokens(text: string): string[] {
  return text
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '');
}
