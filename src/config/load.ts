import { readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { ConfigError } from './errors.ts';
import { expectedAt, isDurationKey, LEAF_KEYS, SECTIONS, TABLES, type TableKey, type ValidConfig } from './schema.ts';
import { parseDuration } from './formats.ts';
// ConfigSchema compiled by ajv at development time (scripts/validators.ts), so the agent never runs ajv's compiler.
import { validate } from './config-validator.generated.ts';
import type { Config, ConfigSource, LoadedConfig } from './types.ts';
import { show, suggestion, where, type Origin } from './messages.ts';
import { readTokenFile } from './token.ts';
import { applyEnv, applyOtelEnv, coerceEnvValue, CONFIG_ENV_VARIABLE, envVariableFor, tracesUrl, type RawSettings } from './env.ts';
import { RegistrySettings, REGISTRIES_KEY } from './registries.ts';

export { CONFIG_ENV_VARIABLE, envVariableFor } from './env.ts';

export { ConfigError } from './errors.ts';
export { isSecretKey, show } from './messages.ts';

export interface LoadConfigOptions {
  /** Path given with `--config`; a missing file is an error. */
  argvConfigPath?: string | undefined;
  /** The environment to read FOREMAN_* variables from (the caller passes process.env). */
  env: Readonly<Record<string, string | undefined>>;
  /** Directory `./foreman.toml` is looked up in and env-relative paths resolve against. */
  cwd: string;
  /** Home directory for `$HOME/.foreman/foreman.toml` and the default data_dir. */
  home: string;
  /** The system-wide file; only tests change it. */
  systemConfigPath?: string;
  /** Settings from command-line flags (`--log-level`), which win over the environment and the file. */
  flags?: ReadonlyArray<{ readonly key: string; readonly flag: string; readonly value: string }>;
}

export const SYSTEM_CONFIG_PATH = '/etc/foreman/foreman.toml';

/**
 * Finds, reads and validates the configuration: file values first, then
 * FOREMAN_* env overrides, then defaults. Throws ConfigError on any problem.
 * Reads no global state: everything comes in through `options`.
 */
export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const warnings: string[] = [];
  try {
    const raw: RawSettings = { leaves: new Map(), tables: { 'core.env': new Map(), 'core.labels': new Map() }, registries: new RegistrySettings(warnings) };
    const file = findConfigFile(options);
    if (file !== undefined) readConfigFile(file, raw, warnings);
    applyEnv(options.env, raw, warnings);
    applyOtelEnv(options.env, raw);
    for (const { key, flag, value } of options.flags ?? []) raw.leaves.set(key, { value: coerceEnvValue(key, value), origin: { kind: 'flag', flag } });
    const config = compile(raw, file, options, warnings);
    return deepFreeze({ config, file, sources: sourcesOf(raw), warnings });
  } catch (err) {
    // FOREMAN_CORE_TOKN=x leaves core.token missing: the did-you-mean must reach the user with that error.
    if (err instanceof ConfigError && warnings.length > 0) throw new ConfigError(err.problems, [...err.warnings, ...warnings]);
    throw err;
  }
}

/**
 * Only `core.data_dir`, found as `loadConfig` finds it (file, then FOREMAN_* and flags), for `foreman ping`:
 * it needs no url or token, and reads no token file. Throws ConfigError when the file cannot be read or
 * data_dir itself is not a path.
 */
export function loadDataDir(options: LoadConfigOptions): string {
  const raw: RawSettings = { leaves: new Map(), tables: { 'core.env': new Map(), 'core.labels': new Map() }, registries: new RegistrySettings([]) };
  const file = findConfigFile(options);
  if (file !== undefined) readConfigFile(file, raw, []);
  applyEnv(options.env, raw, []);
  const setting = raw.leaves.get('core.data_dir');
  if (setting === undefined) return join(options.home, '.foreman', 'data');
  if (typeof setting.value !== 'string' || setting.value === '') {
    throw new ConfigError(`${where(setting.origin)}core.data_dir = ${show('core.data_dir', setting.value)}: expected ${expectedAt(['core', 'data_dir'])}`);
  }
  return resolvePath(setting.value, setting.origin, options);
}

function findConfigFile(options: LoadConfigOptions): string | undefined {
  const explicit =
    options.argvConfigPath !== undefined
      ? { path: options.argvConfigPath, from: '--config' }
      : options.env[CONFIG_ENV_VARIABLE]
        ? { path: options.env[CONFIG_ENV_VARIABLE], from: CONFIG_ENV_VARIABLE }
        : undefined;
  if (explicit) {
    if (explicit.path === '') throw new ConfigError(`${explicit.from} was given an empty path`);
    const path = resolve(options.cwd, explicit.path);
    const stats = statOrThrow(path);
    if (!stats) throw new ConfigError(`config file ${path} (from ${explicit.from}) does not exist`);
    return checkIsFile(path, stats);
  }
  const candidates = [join(options.cwd, 'foreman.toml'), options.systemConfigPath ?? SYSTEM_CONFIG_PATH, join(options.home, '.foreman', 'foreman.toml')];
  for (const candidate of candidates) {
    const path = resolve(options.cwd, candidate);
    const stats = statOrThrow(path);
    if (stats) return checkIsFile(path, stats);
  }
  return undefined;
}

function statOrThrow(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${describeFsError(err)}`);
  }
}

function checkIsFile(path: string, stats: Stats): string {
  if (!stats.isFile()) throw new ConfigError(`config file ${path} is not a regular file`);
  return path;
}

function describeFsError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return err instanceof Error ? err.message : String(err);
}

function readConfigFile(file: string, raw: RawSettings, warnings: string[]): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${describeFsError(err)}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text.replace(/^\uFEFF/, '')); // editors on Windows may add a byte-order mark
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
      throw new ConfigError(`${file}: invalid TOML at line ${err.line}, column ${err.column}: ${reason}`);
    }
    throw new ConfigError(`${file}: invalid TOML: ${err instanceof Error ? err.message : String(err)}`);
  }

  const origin: Origin = { kind: 'file', file };
  for (const [section, body] of Object.entries(doc)) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      warnings.push(`${file}: unknown key ${section} (ignored)${suggestion(section, [...SECTIONS])}`);
      continue;
    }
    if (!isTable(body)) throw new ConfigError(`${file}: ${section} = ${show(section, body)}: expected a table ([${section}])`);
    for (const [key, value] of Object.entries(body)) {
      const dotted = `${section}.${key}`;
      if (dotted === REGISTRIES_KEY) {
        raw.registries.fromFile(file, value);
      } else if (isTableKey(dotted)) {
        if (!isTable(value)) throw new ConfigError(`${file}: ${dotted} = ${show(dotted, value)}: expected a table ([${dotted}])`);
        for (const [name, entry] of Object.entries(value)) {
          if (dotted === 'core.env' && (name === '' || name.includes('='))) {
            throw new ConfigError(`${file}: core.env: ${JSON.stringify(name)} is not a valid environment variable name`);
          }
          raw.tables[dotted].set(name, { value: dotted === 'core.labels' ? labelValue(entry) : entry, origin });
        }
      } else if (LEAF_KEYS.includes(dotted)) {
        raw.leaves.set(dotted, { value, origin });
      } else {
        const known = [...LEAF_KEYS, ...TABLES].filter((k) => k.startsWith(`${section}.`));
        warnings.push(`${file}: unknown key ${dotted} (ignored)${suggestion(dotted, known)}`);
      }
    }
  }
}

/** Labels travel as text, so numbers and booleans are accepted and stringified. */
function labelValue(value: unknown): unknown {
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return String(value);
  return value;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function isTableKey(dotted: string): dotted is TableKey {
  return (TABLES as readonly string[]).includes(dotted);
}

function compile(raw: RawSettings, file: string | undefined, options: LoadConfigOptions, warnings: string[]): Config {
  const data: Record<string, Record<string, unknown>> = Object.fromEntries(SECTIONS.map((section) => [section, {}]));
  /** Durations written with a unit, as written: a message shows what the user wrote, not the milliseconds. */
  const written = new Map<string, unknown>();
  for (const [dotted, setting] of raw.leaves) {
    const [section = '', key = ''] = dotted.split('.');
    let value = setting.value;
    if (isDurationKey(dotted) && typeof value === 'string') {
      const ms = parseDuration(value);
      if (ms !== undefined) {
        written.set(dotted, value);
        value = ms;
      }
    }
    (data[section] ??= {})[key] = value;
  }
  const core = (data.core ??= {});
  core.data_dir ??= join(options.home, '.foreman', 'data');
  core.env = Object.fromEntries([...raw.tables['core.env']].map(([name, setting]) => [name, setting.value]));
  core.labels = Object.fromEntries([...raw.tables['core.labels']].map(([name, setting]) => [name, setting.value]));
  (data.docker ??= {}).registries = raw.registries.data();

  const problems = new Map<string, string>();
  const token = readTokenFile(
    { token: raw.leaves.get('core.token'), tokenFile: raw.leaves.get('core.token_file') },
    core,
    (path, origin) => resolvePath(path, origin, options),
    warnings,
  );
  if (token.problem) problems.set('core.token_file', token.problem);

  if (!validate(data) || problems.size > 0) {
    for (const error of validate.errors ?? []) {
      const path = error.instancePath
        .split('/')
        .slice(1)
        .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'));
      const registryProblem = raw.registries.problem(error, path, file);
      if (registryProblem) {
        if (!problems.has(registryProblem[0])) problems.set(...registryProblem);
        continue;
      }
      if (error.keyword === 'required') {
        const dotted = [...path, String(error.params.missingProperty)].join('.');
        if (dotted === 'core.token') {
          if (!problems.has('core.token_file')) {
            problems.set(
              dotted,
              `core.token or core.token_file is required: set one in ${file ?? 'foreman.toml'}, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE`,
            );
          }
          continue;
        }
        problems.set(dotted, `${dotted} is required: set it in ${file ?? 'foreman.toml'} or ${envVariableFor(dotted)}`);
        continue;
      }
      const keyLength = path.length >= 2 && isTableKey(`${path[0]}.${path[1]}`) ? 3 : 2;
      const keyPath = path.slice(0, keyLength);
      const dotted = keyPath.join('.');
      if (problems.has(dotted)) continue;
      const shownKey =
        dotted +
        path
          .slice(keyLength)
          .map((index) => `[${index}]`)
          .join('');
      const origin = originOf(raw, keyPath);
      const value = path.length === keyLength && written.has(dotted) ? written.get(dotted) : valueAt(data, path);
      problems.set(dotted, `${where(origin)}${shownKey} = ${show(dotted, value)}: expected ${expectedAt(keyPath)}`);
    }
    throw new ConfigError([...problems.values()]);
  }

  const valid = data as unknown as ValidConfig;
  checkJobTimeouts(raw, valid.core);
  const dataDirOrigin = raw.leaves.get('core.data_dir')?.origin;
  return {
    core: {
      url: valid.core.url,
      token: valid.core.token,
      token_file: token.path,
      hostname: valid.core.hostname,
      port: valid.core.port,
      listen_address: valid.core.listen_address,
      executor: valid.core.executor,
      network_name: valid.core.network_name,
      job_completion_timeout: valid.core.job_completion_timeout,
      max_job_timeout: valid.core.max_job_timeout,
      job_removal_timeout: valid.core.job_removal_timeout,
      remove_stopped_containers_on_terminate: valid.core.remove_stopped_containers_on_terminate,
      extra_hosts: [...valid.core.extra_hosts],
      poll_frequency: valid.core.poll_frequency,
      poll_timeout: valid.core.poll_timeout,
      max_concurrent_jobs: valid.core.max_concurrent_jobs,
      max_body_size: valid.core.max_body_size,
      max_log_bytes: valid.core.max_log_bytes,
      data_dir: resolvePath(valid.core.data_dir, dataDirOrigin, options),
      callback_max_age: valid.core.callback_max_age,
      job_retention: valid.core.job_retention,
      shutdown_timeout: valid.core.shutdown_timeout,
      cancel_grace_period: valid.core.cancel_grace_period,
      stall_timeout: valid.core.stall_timeout,
      usage_interval: valid.core.usage_interval,
      drain_timeout: valid.core.drain_timeout,
      detach_on_terminate: valid.core.detach_on_terminate,
      env: { ...valid.core.env },
      labels: { ...valid.core.labels },
    },
    docker: {
      url: valid.docker.url,
      ca: resolvePath(valid.docker.ca, raw.leaves.get('docker.ca')?.origin, options),
      cert: resolvePath(valid.docker.cert, raw.leaves.get('docker.cert')?.origin, options),
      key: resolvePath(valid.docker.key, raw.leaves.get('docker.key')?.origin, options),
      memory_limit: valid.docker.memory_limit,
      cpus: valid.docker.cpus,
      pids_limit: valid.docker.pids_limit,
      cap_add: [...valid.docker.cap_add],
      user: valid.docker.user,
      read_only_rootfs: valid.docker.read_only_rootfs,
      runtime: valid.docker.runtime,
      allowed_images: [...valid.docker.allowed_images],
      secrets_dir: valid.docker.secrets_dir,
      registries: raw.registries.compile(valid.docker.registries, (path, origin) => resolvePath(path, origin, options), options),
    },
    metrics: { address: valid.metrics.address },
    images: { budget_bytes: valid.images.budget_bytes, low_free_bytes: valid.images.low_free_bytes, high_free_bytes: valid.images.high_free_bytes },
    hooks: { pre_job: [...valid.hooks.pre_job], post_job: [...valid.hooks.post_job], timeout: valid.hooks.timeout },
    health: { address: valid.health.address },
    tracing: {
      endpoint: tracesUrl(valid.tracing.endpoint, raw.leaves.get('tracing.endpoint')?.origin),
      service_name: valid.tracing.service_name ?? 'foreman',
    },
    log: { level: valid.log.level, format: valid.log.format },
  };
}

/** A job's own `timeout` may not exceed `max_job_timeout`, so neither may the default every other job gets. */
function checkJobTimeouts(raw: RawSettings, core: ValidConfig['core']): void {
  const max = core.max_job_timeout;
  if (max === 0 || core.job_completion_timeout <= max) return;
  const origin = raw.leaves.get('core.job_completion_timeout')?.origin ?? raw.leaves.get('core.max_job_timeout')?.origin;
  throw new ConfigError(
    `${where(origin)}core.job_completion_timeout = ${core.job_completion_timeout}: expected at most core.max_job_timeout (${max}), the longest a job may run`,
  );
}

/** Relative paths are relative to the file that set them (or the cwd for env); `~/` means the home directory. */
function resolvePath<T extends string | undefined>(value: T, origin: Origin | undefined, options: LoadConfigOptions): T {
  if (value === undefined) return value;
  const expanded = value === '~' || value.startsWith('~/') ? join(options.home, value.slice(1)) : value;
  const base = origin?.kind === 'file' ? dirname(origin.file) : options.cwd;
  return resolve(base, expanded) as T;
}

function originOf(raw: RawSettings, keyPath: readonly string[]): Origin | undefined {
  const dotted = keyPath.join('.');
  const tableKey = `${keyPath[0]}.${keyPath[1]}`;
  if (keyPath.length === 3 && isTableKey(tableKey)) return raw.tables[tableKey].get(keyPath[2] ?? '')?.origin;
  return raw.leaves.get(dotted)?.origin;
}

function valueAt(data: unknown, path: readonly string[]): unknown {
  let node = data;
  for (const part of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function sourcesOf(raw: RawSettings): Record<string, ConfigSource> {
  const sources: [string, ConfigSource][] = LEAF_KEYS.map((key) => [
    key,
    key === REGISTRIES_KEY ? raw.registries.source() : (raw.leaves.get(key)?.origin.kind ?? 'default'),
  ]);
  for (const table of TABLES) {
    for (const [name, setting] of raw.tables[table]) sources.push([`${table}.${name}`, setting.origin.kind]);
  }
  return Object.fromEntries(sources);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
