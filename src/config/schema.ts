import { Type, type Static } from 'typebox';
import { HEADER } from '../protocol/wire.ts';

// Every leaf carries an `expected` annotation: the phrase a user sees after
// "expected" when the value is wrong. Keeping it beside the rule keeps the two in step.
// Every key also carries a one-line `description`: docs/configuration.md is generated from them
// (scripts/config-docs.ts, `npm run build:docs`), with each key's type, default and environment variable;
// `defaultText` says what an unset key means when the schema has no default to show.

import { timerMs, ageMs, TOKEN_PATTERN, hostLike, CAPABILITY_PATTERN, REGISTRY_HOST, USER_PART, LOG_LEVELS, LOG_FORMATS } from './schema-parts.ts';
import { HooksSection, ImagesSection, TracingSection } from './schema-sections.ts';

export { CAPABILITIES, DURATION_FORMS, LOG_FORMATS, LOG_LEVELS, MAX_TIMER_MS, TOKEN_PATTERN } from './schema-parts.ts';

export const ConfigSchema = Type.Object({
  core: Type.Object({
    url: Type.String({
      format: 'http-url',
      expected: 'an http:// or https:// URL',
      description: 'The control server URL the agent polls for jobs (`GET`); `http://` or `https://`.',
      defaultText: 'required',
    }),
    // One of token or token_file: the loader reads the file into `token` and checks that exactly one was given.
    token: Type.String({
      minLength: 1,
      pattern: TOKEN_PATTERN,
      expected: 'a non-empty token of printable ASCII characters without spaces',
      description: 'Sent on every poll as `Authorization: Bearer <token>`. Printable ASCII, no spaces. Never logged. One of `core.token` or `core.token_file`.',
      defaultText: 'required (or core.token_file)',
    }),
    token_file: Type.Optional(
      Type.String({
        minLength: 1,
        expected: 'the path of a file holding the token',
        description:
          'File holding the token (read at start, trailing newline dropped; relative to the file that set it), instead of core.token: e.g. a systemd credential or a compose secret.',
        defaultText: 'unset',
      }),
    ),
    hostname: Type.Optional(
      hostLike(
        'host name or IP address',
        'The host name or IP address job containers use to reach the job API.',
        "unset: the job network's gateway (on a swarm, the manager's node address)",
      ),
    ),
    port: Type.Integer({
      minimum: 0,
      maximum: 65535,
      default: 3000,
      expected: 'an integer from 0 to 65535',
      description: 'The job API port; `0` picks a free one. Keep it fixed in production: re-adopted containers keep the URL they were started with.',
    }),
    listen_address: Type.Optional(
      hostLike('host name or IP address', 'The address the job API binds to; `0.0.0.0` listens on every interface.', 'unset: derived from `core.hostname`'),
    ),
    executor: Type.Union([Type.Literal('docker'), Type.Literal('swarm')], {
      default: 'docker',
      expected: '"docker" (one container per job on the engine at docker.url) or "swarm" (one replicated-job service per job on the swarm docker.url manages)',
      description:
        'How jobs run: `docker`, a container per job on the engine at `docker.url`; `swarm`, a `replicated-job` service per job on the swarm that engine manages.',
    }),
    network_name: Type.String({
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
      default: 'foreman',
      expected: 'a Docker network name (letters, digits, "_", "." and "-", starting with a letter or digit)',
      description: 'The Docker network job containers join; created at start if missing (an attachable overlay with the swarm executor).',
    }),
    job_completion_timeout: timerMs(
      10_000,
      'How long a job may run, from its container start, without reporting `completed` before it is stopped and reported `timed-out`.',
    ),
    max_job_timeout: timerMs(
      0,
      "The longest completion timeout a job may ask for with its own `timeout`; a job asking for more is rejected as invalid, nothing pulled. 0: no maximum. core.job_completion_timeout, the jobs' default, may not exceed it.",
    ),
    job_removal_timeout: timerMs(5_000, 'How long a stopped job container is kept before it is removed.'),
    remove_stopped_containers_on_terminate: Type.Boolean({
      default: true,
      expected: 'true or false',
      description: 'Remove stopped job containers when the agent shuts down.',
    }),
    extra_hosts: Type.Array(Type.String({ pattern: '^[^\\s:]+:\\S+$' }), {
      default: [],
      expected: 'a list of "host:address" strings, e.g. ["host.docker.internal:host-gateway"]',
      description: 'Extra `"host:address"` entries for job containers\' `/etc/hosts`, e.g. `"host.docker.internal:host-gateway"`.',
    }),
    poll_frequency: timerMs(5_000, 'The pause between polls of the control server; a poll is also a heartbeat, sent even when every slot is taken.'),
    poll_timeout: timerMs(30_000, 'How long one poll may wait for an answer.'),
    max_concurrent_jobs: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 12,
      expected: 'an integer of at least 1',
      description: 'How many jobs run at the same time; jobs beyond it wait locally, in order.',
    }),
    max_body_size: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 10_485_760,
      expected: 'a positive integer number of bytes',
      description: 'The largest request body the job API accepts from a container (10 MiB); larger ones get `413`.',
    }),
    // Its default depends on $HOME, so the loader fills it in before validation.
    data_dir: Type.String({
      minLength: 1,
      expected: 'a non-empty directory path',
      description:
        'The state directory (the SQLite store, the live-log store, the agent id); one agent per directory. Relative to the config file (or the working directory, from the environment); `~/` is the home directory.',
      defaultText: '`$HOME/.foreman/data`',
    }),
    callback_max_age: ageMs(86_400_000, 'How long one callback or log delivery is retried before the agent gives up on it (1 day).'),
    job_retention: ageMs(604_800_000, 'How long finished job ids are remembered, so that a job sent again is never run twice (7 days).'),
    shutdown_timeout: timerMs(15_000, 'The upper bound on a graceful shutdown, after any drain.'),
    cancel_grace_period: timerMs(
      10_000,
      "When the control server cancels a running job: the time between its container's stop signal and the kill. A job's `cancelGracePeriod` wins.",
    ),
    stall_timeout: timerMs(
      0,
      "Stop a running job whose container sent no update for this long (from its start, then from its last accepted update) and report it `stalled`; `0` is off. A job's `stallTimeout` wins.",
    ),
    usage_interval: timerMs(
      2_000,
      "How often a running job's container is sampled for what it uses (CPU time, memory peak, processes, I/O), one engine stats call each, for the `usage` of its final report; `0` samples nothing and reports no usage.",
    ),
    drain_timeout: timerMs(
      0,
      'After the first SIGINT or SIGTERM, how long running jobs may go on (no new jobs are taken) before they are stopped; `0` stops them at once.',
    ),
    detach_on_terminate: Type.Boolean({
      default: false,
      expected: 'true or false',
      description: 'At the end of a shutdown, leave running jobs running and unreported, for the next agent on the same `data_dir` to re-adopt.',
    }),
    max_log_bytes: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 67_108_864,
      expected: 'a positive integer number of bytes',
      description: "The most one job's live log streams (64 MiB); past it one line `[foreman] log truncated after N bytes` is sent and the rest dropped.",
    }),
    env: Type.Record(Type.String(), Type.String({ expected: 'a string' }), {
      default: {},
      expected: 'a table of strings',
      description:
        "Environment variables for every job container, over the job's own. Their values never reach a live log or a report: each is replaced by `[redacted]`.",
    }),
    labels: Type.Record(Type.String(), Type.String({ expected: 'a string, number or boolean' }), {
      default: {},
      expected: 'a table of strings',
      description: `Labels sent in \`${HEADER.labels}\` on each poll, for the control server to route jobs by. Numbers and booleans are sent as text.`,
    }),
  }),
  docker: Type.Object({
    url: Type.String({
      format: 'docker-url',
      default: 'unix:///var/run/docker.sock',
      expected: 'a unix://, tcp://, http:// or https:// URL',
      description: 'The Docker engine (or Podman service) to run jobs on: `unix://`, `tcp://`, `http://` or `https://`.',
    }),
    // TLS to the engine, like DOCKER_CERT_PATH's ca.pem, cert.pem and key.pem; relative paths are relative to the file that set them.
    ca: Type.Optional(
      Type.String({
        minLength: 1,
        expected: "the path of a PEM file with the CA certificate(s) the engine's certificate is checked against",
        description: "PEM file of the CA the engine's TLS certificate is checked against (`$DOCKER_CERT_PATH/ca.pem`); relative to the file that set it.",
        defaultText: "unset: the system's CAs for `https://`, plain HTTP for `tcp://`",
      }),
    ),
    cert: Type.Optional(
      Type.String({
        minLength: 1,
        expected: 'the path of a PEM file with the client certificate the agent shows the engine',
        description: 'PEM file of the client certificate the agent presents to the engine (`cert.pem`); goes with `docker.key`.',
        defaultText: 'unset',
      }),
    ),
    key: Type.Optional(
      Type.String({
        minLength: 1,
        expected: 'the path of a PEM file with the private key of docker.cert',
        description: "PEM file of that certificate's private key (`key.pem`).",
        defaultText: 'unset',
      }),
    ),
    memory_limit: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 0,
      expected: 'a non-negative integer number of bytes (0 for no limit)',
      description:
        "The memory limit of each job container in bytes, and the most a job's `resources.memory` may ask for; `0` is none. A container over it is reported `oom-killed`.",
    }),
    // The engine refuses a value below 0.01 or above its CPU count: checked at start, where that count is known.
    cpus: Type.Number({
      minimum: 0,
      maximum: 65_536,
      default: 0,
      expected: 'a non-negative number of CPUs, e.g. 1.5 (0 for no limit)',
      description:
        "The CPUs each job container may use (e.g. `1.5`), and the most a job's `resources.cpus` may ask for; `0` is no limit. Above the engine host's CPU count the agent refuses to start.",
    }),
    pids_limit: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      default: 1024,
      expected: 'a non-negative integer number of processes (0 for no limit)',
      description: "The processes and threads each job container may hold, and the most a job's `resources.pids` may ask for; `0` is no limit.",
    }),
    secrets_dir: Type.String({
      minLength: 1,
      pattern: '^/',
      default: '/dev/shm',
      expected: 'an absolute path to a folder on a tmpfs (e.g. "/dev/shm")',
      description:
        "A folder on a tmpfs of the engine's host where jobs' `secrets` are written as files (a folder per job, bound read-only at /run/foreman/secrets, removed when the container stops). Not a tmpfs: jobs with secrets are refused.",
    }),
    cap_add: Type.Array(Type.String({ pattern: CAPABILITY_PATTERN }), {
      default: [],
      expected: 'a list of Linux capability names, e.g. ["NET_BIND_SERVICE"] (upper case, "CAP_" prefix optional; "ALL" is not accepted)',
      description: 'Linux capabilities added back after every job container drops them all, e.g. `["NET_BIND_SERVICE"]` (`CAP_` optional, `ALL` refused).',
    }),
    user: Type.Optional(
      Type.String({
        pattern: `^${USER_PART}(:${USER_PART})?$`,
        expected: 'a user or user:group, by name or numeric id (e.g. "1000:1000")',
        description: 'The `user[:group]` job containers run as, by name or numeric id (e.g. `"1000:1000"`).',
        defaultText: "unset: the image's user",
      }),
    ),
    read_only_rootfs: Type.Boolean({
      default: false,
      expected: 'true or false',
      description: 'Give job containers a read-only root file system, with a writable tmpfs at `/tmp`.',
    }),
    runtime: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
        expected: 'the name of a runtime the engine offers, e.g. "runsc"',
        description: 'The engine runtime for job containers, e.g. `"runsc"`; one the engine does not offer makes the agent refuse to start.',
        defaultText: "unset: the engine's default",
      }),
    ),
    allowed_images: Type.Array(Type.String({ pattern: '^\\S+$' }), {
      default: [],
      expected: 'a list of image patterns without spaces, e.g. ["registry.example.com/ci/**"] (* matches within one path part, ** across parts)',
      description:
        "Glob patterns a job's image must match (`*` within one path part, `**` across parts); a job whose image matches none is `invalid` and nothing is pulled. Empty: any image.",
    }),
    // The loader reads password_file, and with no entries falls back to the `auths` of Docker's config.json.
    registries: Type.Array(
      Type.Object(
        {
          host: Type.String({
            pattern: REGISTRY_HOST,
            expected: 'a registry host or host:port without scheme or path, e.g. "registry.example.com" or "127.0.0.1:5000" ("docker.io" is Docker Hub)',
            description: 'The registry, `host[:port]` as image references name it; `docker.io` is Docker Hub.',
          }),
          // A ":" would end the user name early in the basic auth the registry is sent.
          username: Type.String({ pattern: '^[^:\\x00-\\x1f\\x7f]+$', expected: 'a non-empty user name without ":"', description: 'The user name.' }),
          password: Type.Optional(
            Type.String({ minLength: 1, expected: 'a non-empty password', description: 'The password; never logged.', defaultText: 'unset' }),
          ),
          password_file: Type.Optional(
            Type.String({
              minLength: 1,
              expected: 'the path of a file holding the password',
              description: 'A file holding the password instead (relative to the file that set it; read at start, trailing newline dropped).',
              defaultText: 'unset',
            }),
          ),
        },
        // Exactly one of the two ways to give the password.
        { oneOf: [Type.Object({ password: Type.Unknown() }), Type.Object({ password_file: Type.Unknown() })] },
      ),
      {
        default: [],
        expected: 'a list of [[docker.registries]] tables, each with host, username, and password or password_file',
        description:
          "Registry credentials for pulls, one `[[docker.registries]]` table each, with exactly one of `password` or `password_file`. None: the `auths` of Docker's `config.json`.",
      },
    ),
  }),
  metrics: Type.Object({
    address: Type.String({
      format: 'host-port-or-empty',
      default: '',
      expected: 'host:port (e.g. "127.0.0.1:9464"), or "" to turn metrics off',
      description: '`host:port` to serve Prometheus metrics (`/metrics`) and the probes `/healthz` and `/readyz` on; empty turns them off.',
    }),
  }),
  images: ImagesSection,
  hooks: HooksSection,
  health: Type.Object({
    address: Type.String({
      format: 'host-port-or-empty',
      default: '',
      expected: 'host:port (e.g. "127.0.0.1:3001"), or "" to serve no health listener',
      description:
        'host:port serving only /healthz and /readyz over HTTP (no metrics), for a load balancer or an orchestrator; "" serves none. `foreman ping` needs no listener: it asks the agent over <data_dir>/foreman.sock.',
    }),
  }),
  tracing: TracingSection,
  log: Type.Object({
    level: Type.Union(
      LOG_LEVELS.map((level) => Type.Literal(level)),
      { default: 'info', expected: `one of ${LOG_LEVELS.join(', ')}`, description: 'The lowest level the agent logs. --log-level wins.' },
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
export const SECTIONS = ['core', 'docker', 'images', 'hooks', 'metrics', 'health', 'tracing', 'log'] as const;
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
