/** Where an effective config value came from, shown by `foreman check`. */
export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

/**
 * The compiled, frozen agent configuration. Keys mirror the TOML file
 * (snake_case); every duration is in milliseconds and every size in bytes.
 */
export interface Config {
  readonly core: {
    readonly url: string;
    /** The token itself, also when it was read from `token_file`. A secret: never logged or shown. */
    readonly token: string;
    /** The absolute path the token was read from, when `core.token_file` gave it. */
    readonly token_file: string | undefined;
    /** Host name containers use to reach the job API; undefined picks the network gateway. */
    readonly hostname: string | undefined;
    readonly port: number;
    /** Address the job API binds to; undefined derives it from hostname (see docs/configuration.md). */
    readonly listen_address: string | undefined;
    /** `docker`: a container per job; `swarm`: a replicated-job service per job on the swarm the engine manages. */
    readonly executor: 'docker' | 'swarm';
    readonly network_name: string;
    /** A job's completion timeout unless it sets its own `timeout`. */
    readonly job_completion_timeout: number;
    /** The most a job's own `timeout` may be; 0: no maximum. */
    readonly max_job_timeout: number;
    readonly job_removal_timeout: number;
    readonly remove_stopped_containers_on_terminate: boolean;
    readonly extra_hosts: readonly string[];
    readonly poll_frequency: number;
    readonly poll_timeout: number;
    readonly max_concurrent_jobs: number;
    /** Largest request body the job API accepts. */
    readonly max_body_size: number;
    /** What one job's live log streams at most, in bytes. */
    readonly max_log_bytes: number;
    /** Directory holding the agent's SQLite store and its agent id. */
    readonly data_dir: string;
    /** How long the outbox keeps retrying one callback before giving up. */
    readonly callback_max_age: number;
    /** How long finished job ids are remembered so a job never runs twice. */
    readonly job_retention: number;
    /** Upper bound on a graceful shutdown. */
    readonly shutdown_timeout: number;
    /** Between a canceled job's stop signal and its kill, unless the job sets `cancelGracePeriod`. */
    readonly cancel_grace_period: number;
    /** A running job with no update accepted for this long is stopped (`stalled`); 0 is off. */
    readonly stall_timeout: number;
    /** How often a running job's container is sampled for its usage; 0: never (no usage in reports). */
    readonly usage_interval: number;
    /** After the first SIGTERM/SIGINT, how long running jobs may go on before they are stopped. */
    readonly drain_timeout: number;
    /** At the end of a drain, leave running jobs running for the next agent instead of stopping them. */
    readonly detach_on_terminate: boolean;
    readonly env: Readonly<Record<string, string>>;
    readonly labels: Readonly<Record<string, string>>;
  };
  readonly docker: {
    readonly url: string;
    /** Absolute paths of the PEM files for TLS to the engine (CA, client certificate, its key); undefined when not set. */
    readonly ca: string | undefined;
    readonly cert: string | undefined;
    readonly key: string | undefined;
    /** Memory limit of each job container in bytes, and the most a job may ask for; 0 means none. */
    readonly memory_limit: number;
    /** CPUs each job container may use, and the most a job may ask for; 0 means no limit. */
    readonly cpus: number;
    /** Processes (and threads) each job container may hold, and the most a job may ask for; 0 means no limit. */
    readonly pids_limit: number;
    /** Capabilities added back after every job container drops them all. */
    readonly cap_add: readonly string[];
    /** `user[:group]` job containers run as; undefined keeps the image's user. */
    readonly user: string | undefined;
    /** Job containers get a read-only root file system, with a writable tmpfs at /tmp. */
    readonly read_only_rootfs: boolean;
    /** The engine runtime for job containers (e.g. runsc); undefined is the engine's default. */
    readonly runtime: string | undefined;
    /** Glob patterns a job's image must match; empty allows every image. */
    readonly allowed_images: readonly string[];
    /** A folder on a tmpfs where jobs' secret files go. */
    readonly secrets_dir: string;
    /** Credentials images are pulled with: `[[docker.registries]]`, or when there are none, Docker's config.json `auths`. */
    readonly registries: readonly RegistryCredentials[];
  };
  readonly metrics: {
    /** host:port for the Prometheus endpoint; empty disables it. */
    readonly address: string;
  };
  /** The image cache: what the agent removes of the images it pulled, and when. */
  readonly images: {
    readonly budget_bytes: number;
    readonly low_free_bytes: number;
    readonly high_free_bytes: number;
  };
  /** Commands run on the agent's host around each job (argv arrays, no shell; empty: none). */
  readonly hooks: {
    readonly pre_job: readonly string[];
    readonly post_job: readonly string[];
    /** Milliseconds each hook may run. */
    readonly timeout: number;
  };
  readonly health: {
    /** host:port serving /healthz and /readyz alone; empty: none (the agent's socket in data_dir still answers `foreman ping`). */
    readonly address: string;
  };
  readonly tracing: {
    /** The OTLP/HTTP traces URL spans are sent to (`…/v1/traces`); empty: tracing is off, OpenTelemetry not loaded. */
    readonly endpoint: string;
    /** `service.name` of the agent's spans. */
    readonly service_name: string;
  };
  readonly log: {
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
    /** `json` (one object a line) or `text` (for a terminal). */
    readonly format: 'json' | 'text';
  };
}

/** Credentials for one registry. The password is a secret: never logged, shown or reported. */
export interface RegistryCredentials {
  /** `host[:port]` as written; `docker.io` and `index.docker.io` are Docker Hub. */
  readonly host: string;
  readonly username: string;
  /** Empty only when an identity token stands in for it (from Docker's config.json). */
  readonly password: string;
  /** An identity token (OAuth refresh token) from Docker's config.json, sent with the credentials. */
  readonly identitytoken: string | undefined;
  /** Where the entry was set, for `foreman check`: the config file, `env`, or the Docker config.json read. */
  readonly source: string;
  /** Where the password came from, e.g. `from file /etc/foreman/registry-password` or `in /etc/foreman/foreman.toml`. */
  readonly password_source: string;
}

/** A compiled config together with its provenance. */
export interface LoadedConfig {
  readonly config: Config;
  /** The file read, if any. */
  readonly file: string | undefined;
  /** Source of each dotted key, e.g. `core.port` or `core.labels.queue`. */
  readonly sources: Readonly<Record<string, ConfigSource>>;
  /** Non-fatal problems such as unknown keys. */
  readonly warnings: readonly string[];
}
