// FOREMAN_* variables: their names, their values turned into the types the keys want, and what a misspelled one meant.
import { leafKind, LEAF_KEYS, TABLES, type TableKey } from './schema.ts';
import { suggestion, type Origin } from './messages.ts';
import type { RegistrySettings } from './registries.ts';

/** The variable that names the config file: not a setting. */
export const CONFIG_ENV_VARIABLE = 'FOREMAN_CONFIG';

export interface Setting {
  readonly value: unknown;
  readonly origin: Origin;
}

/** Values gathered from the file and env before validation, keyed by dotted key. */
export interface RawSettings {
  readonly leaves: Map<string, Setting>;
  readonly tables: Record<TableKey, Map<string, Setting>>;
  /** `[[docker.registries]]`: entries set field by field, so they are gathered apart from the leaves. */
  readonly registries: RegistrySettings;
}

const TABLE_ENV_PREFIXES: Record<TableKey, string> = {
  'core.env': 'FOREMAN_CORE_ENV_',
  'core.labels': 'FOREMAN_CORE_LABELS_',
};

/** `core.max_concurrent_jobs` → `FOREMAN_CORE_MAX_CONCURRENT_JOBS`. */
export function envVariableFor(dotted: string): string {
  return `FOREMAN_${dotted.replaceAll('.', '_').toUpperCase()}`;
}

/** Every FOREMAN_* variable but FOREMAN_CONFIG, over what the file set; an unknown one is a warning. */
export function applyEnv(env: Readonly<Record<string, string | undefined>>, raw: RawSettings, warnings: string[]): void {
  const leafByVariable = new Map(LEAF_KEYS.map((key) => [envVariableFor(key), key]));
  const names = Object.keys(env)
    .filter((name) => name.startsWith('FOREMAN_') && name !== CONFIG_ENV_VARIABLE)
    .sort();
  for (const variable of names) {
    const value = env[variable];
    if (value === undefined) continue;
    if (raw.registries.fromEnv(variable, value)) continue;
    const origin: Origin = { kind: 'env', variable };
    const leaf = leafByVariable.get(variable);
    if (leaf !== undefined) {
      raw.leaves.set(leaf, { value: coerceEnvValue(leaf, value), origin });
      continue;
    }
    const table = TABLES.find((t) => variable.startsWith(TABLE_ENV_PREFIXES[t]) && variable.length > TABLE_ENV_PREFIXES[t].length);
    if (table !== undefined) {
      const name = variable.slice(TABLE_ENV_PREFIXES[table].length);
      // Env variable names are upper case by convention but labels are usually lower case;
      // the container env var names keep their case because programs read them verbatim.
      raw.tables[table].set(table === 'core.labels' ? name.toLowerCase() : name, { value, origin });
      continue;
    }
    warnings.push(`env ${variable}: unknown setting (ignored)${suggestion(variable, envCandidates(variable, [...leafByVariable.keys()]), 3)}`);
  }
}

/** The standard OpenTelemetry variables that give `[tracing] endpoint`, in the order they are looked at. */
export const OTEL_ENDPOINT_VARIABLES = ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'] as const;

/**
 * The standard OpenTelemetry variables, for the `[tracing]` keys neither the file nor FOREMAN_* set (which win):
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME; and OTEL_SDK_DISABLED=true,
 * which turns tracing off whatever set the endpoint. They are checked like the keys they give.
 */
export function applyOtelEnv(env: Readonly<Record<string, string | undefined>>, raw: RawSettings): void {
  if (!raw.leaves.has('tracing.endpoint')) {
    const variable = OTEL_ENDPOINT_VARIABLES.find((name) => (env[name] ?? '').trim() !== '');
    if (variable) raw.leaves.set('tracing.endpoint', { value: (env[variable] ?? '').trim(), origin: { kind: 'env', variable } });
  }
  const serviceName = env.OTEL_SERVICE_NAME;
  if (!raw.leaves.has('tracing.service_name') && serviceName !== undefined && serviceName.trim() !== '') {
    raw.leaves.set('tracing.service_name', { value: serviceName.trim(), origin: { kind: 'env', variable: 'OTEL_SERVICE_NAME' } });
  }
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') {
    raw.leaves.set('tracing.endpoint', { value: '', origin: { kind: 'env', variable: 'OTEL_SDK_DISABLED' } });
  }
}

/**
 * The URL spans are sent to: `[tracing] endpoint` and OTEL_EXPORTER_OTLP_ENDPOINT name the collector, whose
 * traces are at `/v1/traces` (a URL already ending so is kept); OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the URL itself.
 */
export function tracesUrl(endpoint: string, origin: Origin | undefined): string {
  if (endpoint === '' || (origin?.kind === 'env' && origin.variable === 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')) return endpoint;
  const url = new URL(endpoint);
  if (!/\/v1\/traces\/?$/.test(url.pathname)) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}

/** Prefixes under which the rest of a variable's name is a name of its own (a label, a container variable, a registry entry). */
const NAME_PREFIXES = [...Object.values(TABLE_ENV_PREFIXES), 'FOREMAN_DOCKER_REGISTRIES_'];

/**
 * What a misspelled variable may have meant: every setting's variable, FOREMAN_CONFIG, and for a slip in a
 * prefix (`FOREMAN_CORE_LABEL_QUEUE`, `FOREMAN_DOCKER_REGISTRY_0_HOST`) the right prefix with the same rest.
 */
function envCandidates(variable: string, leafVariables: readonly string[]): string[] {
  const parts = variable.split('_');
  const renamed = NAME_PREFIXES.flatMap((prefix) => {
    const rest = parts.slice(prefix.split('_').length - 1).join('_');
    return parts.length >= prefix.split('_').length && rest !== '' ? [`${prefix}${rest}`] : [];
  });
  return [...leafVariables, CONFIG_ENV_VARIABLE, ...renamed.filter((candidate) => candidate !== variable)];
}

/** Env values are text; turn them into the type the key wants, or leave them for validation to reject. */
export function coerceEnvValue(dotted: string, value: string): unknown {
  const trimmed = value.trim();
  switch (leafKind(dotted)) {
    case 'integer':
    case 'number':
      return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(trimmed) ? Number(trimmed) : value;
    case 'boolean': {
      const lower = trimmed.toLowerCase();
      if (lower === 'true' || lower === '1') return true;
      if (lower === 'false' || lower === '0') return false;
      return value;
    }
    case 'list':
      return value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    case 'string':
      return value;
  }
}
