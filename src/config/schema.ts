import { Type, type Static } from 'typebox';

// Every leaf carries an `expected` annotation: the phrase a user sees after
// "expected" when the value is wrong. Keeping it beside the rule keeps the two in step.

/** Largest delay Node timers accept; longer ones silently fire after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

/** How a duration may be written, for every duration's `expected` phrase. */
export const DURATION_FORMS = 'whole milliseconds (e.g. 1500) or a string with a unit: "500ms", "90s", "15m", "2h", "7d", or combined as "1h30m"';

// `duration: true` marks a key the loader accepts written with a unit ("90s"); the schema sees milliseconds.
const timerMs = (fallback: number, extra: { description?: string } = {}) =>
  Type.Integer({
    minimum: 0,
    maximum: MAX_TIMER_MS,
    default: fallback,
    duration: true,
    expected: `a duration of at most ${MAX_TIMER_MS} ms (about 24.8 days): ${DURATION_FORMS}`,
    ...extra,
  });

const ageMs = (fallback: number) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: fallback, duration: true, expected: `a duration: ${DURATION_FORMS}` });

/** A token: printable ASCII without spaces, as an `Authorization: Bearer` header carries it. */
export const TOKEN_PATTERN = '^[!-~]+$';

const hostLike = (what: string) => Type.String({ minLength: 1, pattern: '^[^\\s/]+$', expected: `a ${what} (no scheme, path or spaces)` });

/** Linux capabilities by their kernel names (without `CAP_`), as `docker.cap_add` accepts them. */
export const CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
] as const;

const CAPABILITY_PATTERN = `^(CAP_)?(${CAPABILITIES.join('|')})$`;

/** `host[:port]` of a registry: DNS labels or an IPv4 address, or a bracketed IPv6 address. */
const REGISTRY_HOST = '^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$';

/** One side of `docker.user`: a name or a numeric id. */
const USER_PART = '[A-Za-z0-9_][A-Za-z0-9_.-]*';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['json', 'text'] as const;

export const ConfigSchema = Type.Object({
  core: Type.Object({
    url: Type.String({ format: 'http-url', expected: 'an http:// or https:// URL' }),
    // One of token or token_file: the loader reads the file into `token` and checks that exactly one was given.
    token: Type.String({ minLength: 1, pattern: TOKEN_PATTERN, expected: 'a non-empty token of printable ASCII characters without spaces' }),
    token_file: Type.Optional(
      Type.String({
        minLength: 1,
        expected: 'the path of a file holding the token',
        description:
          'File holding the token (read at start, trailing newline dropped; relative to the file that set it), instead of core.token: e.g. a systemd credential or a compose secret.',
      }),
    ),
    hostname: Type.Optional(hostLike('host name or IP address')),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, expected: 'an integer from 0 to 65535' }),
    listen_address: Type.Optional(hostLike('host name or IP address')),
    executor: Type.Union([Type.Literal('docker'), Type.Literal('swarm')], {
      default: 'docker',
      expected: '"docker" (one container per job on the engine at docker.url) or "swarm" (one replicated-job service per job on the swarm docker.url manages)',
    }),
    network_name: Type.String({
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
      default: 'foreman',
      expected: 'a Docker network name (letters, digits, "_", "." and "-", starting with a letter or digit)',
    }),
    job_completion_timeout: timerMs(10_000),
    max_job_timeout: timerMs(0, {
      description:
        "The longest completion timeout a job may ask for with its own `timeout`; a job asking for more is rejected as invalid, nothing pulled. 0: no maximum. core.job_completion_timeout, the jobs' default, may not exceed it.",
    }),
    job_removal_timeout: timerMs(5_000),
    remove_stopped_containers_on_terminate: Type.Boolean({ default: true, expected: 'true or false' }),
    extra_hosts: Type.Array(Type.String({ pattern: '^[^\\s:]+:\\S+$' }), {
      default: [],
      expected: 'a list of "host:address" strings, e.g. ["host.docker.internal:host-gateway"]',
    }),
    poll_frequency: timerMs(5_000),
    poll_timeout: timerMs(30_000),
    max_concurrent_jobs: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 12, expected: 'an integer of at least 1' }),
    max_body_size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 10_485_760, expected: 'a positive integer number of bytes' }),
    // Its default depends on $HOME, so the loader fills it in before validation.
    data_dir: Type.String({ minLength: 1, expected: 'a non-empty directory path' }),
    callback_max_age: ageMs(86_400_000),
    job_retention: ageMs(604_800_000),
    shutdown_timeout: timerMs(15_000),
    cancel_grace_period: timerMs(10_000),
    stall_timeout: timerMs(0),
    drain_timeout: timerMs(0),
    detach_on_terminate: Type.Boolean({ default: false, expected: 'true or false' }),
    max_log_bytes: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 67_108_864, expected: 'a positive integer number of bytes' }),
    env: Type.Record(Type.String(), Type.String({ expected: 'a string' }), { default: {}, expected: 'a table of strings' }),
    labels: Type.Record(Type.String(), Type.String({ expected: 'a string, number or boolean' }), { default: {}, expected: 'a table of strings' }),
  }),
  docker: Type.Object({
    url: Type.String({
      format: 'docker-url',
      default: 'unix:///var/run/docker.sock',
      expected: 'a unix://, tcp://, http:// or https:// URL',
    }),
    // TLS to the engine, like DOCKER_CERT_PATH's ca.pem, cert.pem and key.pem; relative paths are relative to the file that set them.
    ca: Type.Optional(Type.String({ minLength: 1, expected: "the path of a PEM file with the CA certificate(s) the engine's certificate is checked against" })),
    cert: Type.Optional(Type.String({ minLength: 1, expected: 'the path of a PEM file with the client certificate the agent shows the engine' })),
    key: Type.Optional(Type.String({ minLength: 1, expected: 'the path of a PEM file with the private key of docker.cert' })),
    memory_limit: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 0,
      expected: 'a non-negative integer number of bytes (0 for no limit)',
    }),
    // The engine refuses a value below 0.01 or above its CPU count: checked at start, where that count is known.
    cpus: Type.Number({ minimum: 0, maximum: 65_536, default: 0, expected: 'a non-negative number of CPUs, e.g. 1.5 (0 for no limit)' }),
    pids_limit: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 1024,
      expected: 'a non-negative integer number of processes (0 for no limit)',
    }),
    cap_add: Type.Array(Type.String({ pattern: CAPABILITY_PATTERN }), {
      default: [],
      expected: 'a list of Linux capability names, e.g. ["NET_BIND_SERVICE"] (upper case, "CAP_" prefix optional; "ALL" is not accepted)',
    }),
    user: Type.Optional(Type.String({ pattern: `^${USER_PART}(:${USER_PART})?$`, expected: 'a user or user:group, by name or numeric id (e.g. "1000:1000")' })),
    read_only_rootfs: Type.Boolean({ default: false, expected: 'true or false' }),
    runtime: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', expected: 'the name of a runtime the engine offers, e.g. "runsc"' })),
    allowed_images: Type.Array(Type.String({ pattern: '^\\S+$' }), {
      default: [],
      expected: 'a list of image patterns without spaces, e.g. ["registry.example.com/ci/**"] (* matches within one path part, ** across parts)',
    }),
    // The loader reads password_file, and with no entries falls back to the `auths` of Docker's config.json.
    registries: Type.Array(
      Type.Object(
        {
          host: Type.String({
            pattern: REGISTRY_HOST,
            expected: 'a registry host or host:port without scheme or path, e.g. "registry.example.com" or "127.0.0.1:5000" ("docker.io" is Docker Hub)',
          }),
          // A ":" would end the user name early in the basic auth the registry is sent.
          username: Type.String({ pattern: '^[^:\\x00-\\x1f\\x7f]+$', expected: 'a non-empty user name without ":"' }),
          password: Type.Optional(Type.String({ minLength: 1, expected: 'a non-empty password' })),
          password_file: Type.Optional(Type.String({ minLength: 1, expected: 'the path of a file holding the password' })),
        },
        // Exactly one of the two ways to give the password.
        { oneOf: [Type.Object({ password: Type.Unknown() }), Type.Object({ password_file: Type.Unknown() })] },
      ),
      { default: [], expected: 'a list of [[docker.registries]] tables, each with host, username, and password or password_file' },
    ),
  }),
  metrics: Type.Object({
    address: Type.String({ format: 'host-port-or-empty', default: '', expected: 'host:port (e.g. "127.0.0.1:9464"), or "" to turn metrics off' }),
  }),
  health: Type.Object({
    address: Type.String({
      format: 'host-port-or-empty',
      default: '',
      expected: 'host:port (e.g. "127.0.0.1:3001"), or "" to serve no health listener',
      description:
        'host:port serving only /healthz and /readyz over HTTP (no metrics), for a load balancer or an orchestrator; "" serves none. `foreman ping` needs no listener: it asks the agent over <data_dir>/foreman.sock.',
    }),
  }),
  log: Type.Object({
    level: Type.Union(
      LOG_LEVELS.map((level) => Type.Literal(level)),
      { default: 'info', expected: `one of ${LOG_LEVELS.join(', ')}` },
    ),
    format: Type.Union(
      LOG_FORMATS.map((format) => Type.Literal(format)),
      {
        default: 'json',
        expected: `one of ${LOG_FORMATS.join(', ')}`,
        description:
          '"json": one JSON object a line (pino), for log collectors; "text": time, level, message and key=value pairs, for a terminal. --log-format wins.',
      },
    ),
  }),
});

export type ValidConfig = Static<typeof ConfigSchema>;

/** The sections and the tables of string values inside them. */
export const SECTIONS = ['core', 'docker', 'metrics', 'health', 'log'] as const;
export type Section = (typeof SECTIONS)[number];
export const TABLES = ['core.env', 'core.labels'] as const;
export type TableKey = (typeof TABLES)[number];

export type LeafKind = 'string' | 'integer' | 'number' | 'boolean' | 'list';

interface SchemaNode {
  type?: string;
  properties?: Record<string, SchemaNode>;
  patternProperties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  default?: unknown;
  expected?: string;
  duration?: boolean;
}

const root = ConfigSchema as unknown as SchemaNode;

/** Every dotted key that holds a single value (not a table), in schema order. */
export const LEAF_KEYS: readonly string[] = SECTIONS.flatMap((section) =>
  Object.keys(root.properties?.[section]?.properties ?? {})
    .map((key) => `${section}.${key}`)
    .filter((dotted) => !(TABLES as readonly string[]).includes(dotted)),
);

/** The schema node at a dotted path; table entries resolve to the table's value schema, list indexes to the item schema. */
function nodeAt(path: readonly string[]): SchemaNode | undefined {
  let node: SchemaNode | undefined = root;
  for (const part of path) {
    if (!node) return undefined;
    node = node.properties?.[part] ?? node.items ?? (node.patternProperties ? Object.values(node.patternProperties)[0] : undefined);
  }
  return node;
}

export function leafKind(dotted: string): LeafKind {
  const type = nodeAt(dotted.split('.'))?.type;
  if (type === 'integer' || type === 'number' || type === 'boolean') return type;
  if (type === 'array') return 'list';
  return 'string';
}

/** What a value at this path should look like, for error messages. */
export function expectedAt(path: readonly string[]): string {
  return nodeAt(path)?.expected ?? 'a valid value';
}

/** The schema default of a leaf, if it has one. */
export function defaultOf(dotted: string): unknown {
  return nodeAt(dotted.split('.'))?.default;
}

/** Whether a leaf is a duration (in milliseconds, or written with a unit). */
export function isDurationKey(dotted: string): boolean {
  return nodeAt(dotted.split('.'))?.duration === true;
}
