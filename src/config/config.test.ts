import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError, loadConfig, loadDataDir, type LoadConfigOptions } from './load.ts';
import { defaultOf, isDurationKey, LEAF_KEYS, TABLES } from './schema.ts';
import type { LoadedConfig } from './types.ts';

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

interface Scenario {
  /** Files to create, relative to a fresh temp root (e.g. `cwd/foreman.toml`). */
  files?: Record<string, string>;
  env?: Record<string, string>;
  argvConfigPath?: string;
  flags?: LoadConfigOptions['flags'];
}

interface Dirs {
  root: string;
  cwd: string;
  home: string;
  system: string;
}

/** A fresh directory tree per scenario: cwd/, home/ and etc/foreman.toml as the system file. */
function setup(scenario: Scenario): { options: LoadConfigOptions; dirs: Dirs } {
  const root = mkdtempSync(join(tmpdir(), 'foreman-config-'));
  roots.push(root);
  const dirs = { root, cwd: join(root, 'cwd'), home: join(root, 'home'), system: join(root, 'etc', 'foreman.toml') };
  mkdirSync(dirs.cwd, { recursive: true });
  mkdirSync(dirs.home, { recursive: true });
  for (const [relative, content] of Object.entries(scenario.files ?? {})) {
    const path = join(root, relative);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
  const options: LoadConfigOptions = {
    env: scenario.env ?? {},
    cwd: dirs.cwd,
    home: dirs.home,
    systemConfigPath: dirs.system,
    argvConfigPath: scenario.argvConfigPath,
    flags: scenario.flags,
  };
  return { options, dirs };
}

function load(scenario: Scenario): LoadedConfig & { dirs: Dirs } {
  const { options, dirs } = setup(scenario);
  return { ...loadConfig(options), dirs };
}

function loadError(scenario: Scenario): { message: string; dirs: Dirs } {
  const { options, dirs } = setup(scenario);
  try {
    loadConfig(options);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), `message should be one line: ${err.message}`);
    return { message: err.message, dirs };
  }
  assert.fail('expected loadConfig to throw');
}

const REQUIRED_ENV = { FOREMAN_CORE_URL: 'http://control.test/jobs', FOREMAN_CORE_TOKEN: 'secret-token' };
const REQUIRED_TOML = '[core]\nurl = "http://control.test/jobs"\ntoken = "file-token"\n';
const FORMS = 'whole milliseconds (e.g. 1500) or a string with a unit: "500ms", "90s", "15m", "2h", "7d", or combined as "1h30m"';
const TIMER = `a duration of at most 2147483647 ms (about 24.8 days): ${FORMS}`;

describe('defaults', () => {
  it('fills every option when env supplies only url and token, with no file at all', () => {
    const { config, file, sources, warnings, dirs } = load({ env: REQUIRED_ENV });
    assert.equal(file, undefined);
    assert.deepEqual(warnings, []);
    assert.deepEqual(config, {
      core: {
        url: 'http://control.test/jobs',
        token: 'secret-token',
        token_file: undefined,
        hostname: undefined,
        port: 3000,
        listen_address: undefined,
        executor: 'docker',
        network_name: 'foreman',
        job_completion_timeout: 10000,
        max_job_timeout: 0,
        job_removal_timeout: 5000,
        remove_stopped_containers_on_terminate: true,
        extra_hosts: [],
        poll_frequency: 5000,
        poll_timeout: 30000,
        max_concurrent_jobs: 12,
        max_body_size: 10485760,
        max_log_bytes: 67108864,
        data_dir: join(dirs.home, '.foreman', 'data'),
        callback_max_age: 86400000,
        job_retention: 604800000,
        shutdown_timeout: 15000,
        cancel_grace_period: 10000,
        stall_timeout: 0,
        usage_interval: 2000,
        drain_timeout: 0,
        detach_on_terminate: false,
        env: {},
        labels: {},
      },
      docker: {
        url: 'unix:///var/run/docker.sock',
        ca: undefined,
        cert: undefined,
        key: undefined,
        memory_limit: 0,
        cpus: 0,
        pids_limit: 1024,
        cap_add: [],
        user: undefined,
        read_only_rootfs: false,
        runtime: undefined,
        allowed_images: [],
        secrets_dir: '/dev/shm',
        registries: [],
      },
      images: { budget_bytes: 0, low_free_bytes: 0, high_free_bytes: 0 },
      hooks: { pre_job: [], post_job: [], timeout: 300_000 },
      metrics: { address: '' },
      health: { address: '' },
      tracing: { endpoint: '', service_name: 'foreman' },
      log: { level: 'info', format: 'json' },
    });
    assert.equal(sources['core.url'], 'env');
    assert.equal(sources['core.port'], 'default');
    assert.equal(sources['log.level'], 'default');
    assert.equal(sources['core.hostname'], 'default');
  });

  it('deeply freezes the result', () => {
    const loaded = loadConfig(setup({ env: { ...REQUIRED_ENV, FOREMAN_CORE_LABELS_QUEUE: 'high' } }).options);
    for (const object of [
      loaded,
      loaded.config,
      loaded.config.core,
      loaded.config.core.labels,
      loaded.config.core.extra_hosts,
      loaded.sources,
      loaded.warnings,
    ]) {
      assert.ok(Object.isFrozen(object), 'the compiled config is frozen all the way down');
    }
    assert.throws(() => {
      (loaded.config.core as { port: number }).port = 1;
    }, TypeError);
  });
});

describe('precedence: env over file over default', () => {
  const cases: { name: string; toml?: string; env?: Record<string, string>; key: string; expected: unknown; source: string }[] = [
    { name: 'default only', key: 'port', expected: 3000, source: 'default' },
    { name: 'file only', toml: 'port = 4000\n', key: 'port', expected: 4000, source: 'file' },
    { name: 'env only', env: { FOREMAN_CORE_PORT: '5000' }, key: 'port', expected: 5000, source: 'env' },
    { name: 'env beats file', toml: 'port = 4000\n', env: { FOREMAN_CORE_PORT: '5000' }, key: 'port', expected: 5000, source: 'env' },
    { name: 'port 0 (ephemeral) is allowed', toml: 'port = 0\n', key: 'port', expected: 0, source: 'file' },
    {
      name: 'env beats file for a string',
      toml: 'network_name = "a"\n',
      env: { FOREMAN_CORE_NETWORK_NAME: 'b' },
      key: 'network_name',
      expected: 'b',
      source: 'env',
    },
    { name: 'env beats file for url', env: { FOREMAN_CORE_URL: 'https://other.test/' }, key: 'url', expected: 'https://other.test/', source: 'env' },
    { name: 'env beats file for token', env: { FOREMAN_CORE_TOKEN: 'env-token' }, key: 'token', expected: 'env-token', source: 'env' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { config, sources } = load({ files: { 'cwd/foreman.toml': REQUIRED_TOML + (c.toml ?? '') }, env: c.env ?? {} });
      assert.deepEqual((config.core as Record<string, unknown>)[c.key], c.expected);
      assert.equal(sources[`core.${c.key}`], c.source);
    });
  }

  it('merges label tables entry by entry, env winning per key', () => {
    const toml = REQUIRED_TOML + '[core.labels]\nqueue = "low"\ncpu = 4\ngpu = true\n';
    const { config, sources } = load({ files: { 'cwd/foreman.toml': toml }, env: { FOREMAN_CORE_LABELS_QUEUE: 'high' } });
    assert.deepEqual(config.core.labels, { queue: 'high', cpu: '4', gpu: 'true' });
    assert.equal(sources['core.labels.queue'], 'env');
    assert.equal(sources['core.labels.cpu'], 'file');
  });
});

describe('env variable mapping', () => {
  const cases: { variable: string; value: string; path: string[]; expected: unknown }[] = [
    { variable: 'FOREMAN_CORE_MAX_CONCURRENT_JOBS', value: '3', path: ['core', 'max_concurrent_jobs'], expected: 3 },
    { variable: 'FOREMAN_CORE_JOB_COMPLETION_TIMEOUT', value: '250', path: ['core', 'job_completion_timeout'], expected: 250 },
    {
      variable: 'FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE',
      value: 'false',
      path: ['core', 'remove_stopped_containers_on_terminate'],
      expected: false,
    },
    { variable: 'FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE', value: '0', path: ['core', 'remove_stopped_containers_on_terminate'], expected: false },
    { variable: 'FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE', value: '1', path: ['core', 'remove_stopped_containers_on_terminate'], expected: true },
    {
      variable: 'FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE',
      value: 'TRUE',
      path: ['core', 'remove_stopped_containers_on_terminate'],
      expected: true,
    },
    {
      variable: 'FOREMAN_CORE_EXTRA_HOSTS',
      value: 'a:1.2.3.4, host.docker.internal:host-gateway',
      path: ['core', 'extra_hosts'],
      expected: ['a:1.2.3.4', 'host.docker.internal:host-gateway'],
    },
    { variable: 'FOREMAN_CORE_EXTRA_HOSTS', value: '', path: ['core', 'extra_hosts'], expected: [] },
    { variable: 'FOREMAN_CORE_HOSTNAME', value: 'agent.internal', path: ['core', 'hostname'], expected: 'agent.internal' },
    { variable: 'FOREMAN_CORE_LISTEN_ADDRESS', value: '0.0.0.0', path: ['core', 'listen_address'], expected: '0.0.0.0' },
    { variable: 'FOREMAN_CORE_LABELS_QUEUE', value: 'high', path: ['core', 'labels', 'queue'], expected: 'high' },
    { variable: 'FOREMAN_CORE_LABELS_GPU_COUNT', value: '2', path: ['core', 'labels', 'gpu_count'], expected: '2' },
    { variable: 'FOREMAN_CORE_ENV_NODE_ENV', value: 'production', path: ['core', 'env', 'NODE_ENV'], expected: 'production' },
    { variable: 'FOREMAN_CORE_ENV_MixedCase', value: 'x', path: ['core', 'env', 'MixedCase'], expected: 'x' },
    { variable: 'FOREMAN_DOCKER_URL', value: 'tcp://127.0.0.1:2375', path: ['docker', 'url'], expected: 'tcp://127.0.0.1:2375' },
    { variable: 'FOREMAN_METRICS_ADDRESS', value: '127.0.0.1:9464', path: ['metrics', 'address'], expected: '127.0.0.1:9464' },
    { variable: 'FOREMAN_HEALTH_ADDRESS', value: '0.0.0.0:3001', path: ['health', 'address'], expected: '0.0.0.0:3001' },
    { variable: 'FOREMAN_LOG_LEVEL', value: 'debug', path: ['log', 'level'], expected: 'debug' },
    { variable: 'FOREMAN_LOG_FORMAT', value: 'text', path: ['log', 'format'], expected: 'text' },
    { variable: 'FOREMAN_CORE_POLL_FREQUENCY', value: '500ms', path: ['core', 'poll_frequency'], expected: 500 },
    { variable: 'FOREMAN_CORE_DRAIN_TIMEOUT', value: '15m', path: ['core', 'drain_timeout'], expected: 900_000 },
    { variable: 'FOREMAN_CORE_JOB_RETENTION', value: '30d', path: ['core', 'job_retention'], expected: 2_592_000_000 },
    { variable: 'FOREMAN_CORE_MAX_JOB_TIMEOUT', value: '2h', path: ['core', 'max_job_timeout'], expected: 7_200_000 },
  ];
  for (const c of cases) {
    it(`${c.variable}=${JSON.stringify(c.value)} sets ${c.path.join('.')}`, () => {
      const { config, sources, warnings } = load({ env: { ...REQUIRED_ENV, [c.variable]: c.value } });
      let node: unknown = config;
      for (const part of c.path) node = (node as Record<string, unknown>)[part];
      assert.deepEqual(node, c.expected);
      assert.equal(sources[c.path.join('.')], 'env');
      assert.deepEqual(warnings, []);
    });
  }
});

describe('errors', () => {
  const FILE = 'cwd/foreman.toml';
  const cases: { name: string; scenario: Scenario; expected: (dirs: Dirs) => string }[] = [
    {
      name: 'missing url names the file and the env variable',
      scenario: { files: { [FILE]: '[core]\ntoken = "t"\n' } },
      expected: (d) => `core.url is required: set it in ${join(d.cwd, 'foreman.toml')} or FOREMAN_CORE_URL`,
    },
    {
      name: 'missing url and no file at all',
      scenario: { env: { FOREMAN_CORE_TOKEN: 't' } },
      expected: () => 'core.url is required: set it in foreman.toml or FOREMAN_CORE_URL',
    },
    {
      name: 'missing token',
      scenario: { files: { [FILE]: '[core]\nurl = "http://x.test/"\n' } },
      expected: (d) => `core.token or core.token_file is required: set one in ${join(d.cwd, 'foreman.toml')}, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE`,
    },
    {
      name: 'port that is not a number, from the file',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'port = "abc"\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.port = "abc": expected an integer from 0 to 65535`,
    },
    {
      name: 'port that is not a number, from env',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_PORT: 'abc' } },
      expected: () => 'env FOREMAN_CORE_PORT: core.port = "abc": expected an integer from 0 to 65535',
    },
    {
      name: 'port out of range',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_PORT: '70000' } },
      expected: () => 'env FOREMAN_CORE_PORT: core.port = 70000: expected an integer from 0 to 65535',
    },
    {
      name: 'negative duration',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'poll_frequency = -5\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.poll_frequency = -5: expected ${TIMER}`,
    },
    {
      name: 'fractional duration from env',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_JOB_RETENTION: '1.5' } },
      expected: () => `env FOREMAN_CORE_JOB_RETENTION: core.job_retention = 1.5: expected a duration: ${FORMS}`,
    },
    {
      name: 'timer longer than Node timers allow',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_SHUTDOWN_TIMEOUT: '2147483648' } },
      expected: () => `env FOREMAN_CORE_SHUTDOWN_TIMEOUT: core.shutdown_timeout = 2147483648: expected ${TIMER}`,
    },
    {
      name: 'a duration with a unit past what Node timers allow is shown as written',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'job_completion_timeout = "30d"\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.job_completion_timeout = "30d": expected ${TIMER}`,
    },
    {
      name: 'a duration in words names the key and the forms accepted',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_POLL_TIMEOUT: '90 seconds' } },
      expected: () => `env FOREMAN_CORE_POLL_TIMEOUT: core.poll_timeout = "90 seconds": expected ${TIMER}`,
    },
    {
      name: 'a duration with units out of order',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'stall_timeout = "30s1m"\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.stall_timeout = "30s1m": expected ${TIMER}`,
    },
    {
      name: 'a default completion timeout above the maximum a job may have',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_MAX_JOB_TIMEOUT: '1h', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '2h' } },
      expected: () =>
        'env FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: core.job_completion_timeout = 7200000: expected at most core.max_job_timeout (3600000), the longest a job may run',
    },
    {
      name: 'token and token_file both in the file',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'token_file = "token"\n', 'cwd/token': 'from-file\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.token and core.token_file are both set: expected exactly one`,
    },
    {
      name: 'a token file that does not exist',
      scenario: { env: { FOREMAN_CORE_URL: 'http://x.test/', FOREMAN_CORE_TOKEN_FILE: 'missing-token' } },
      expected: (d) => `env FOREMAN_CORE_TOKEN_FILE: core.token_file = "missing-token": cannot read ${join(d.cwd, 'missing-token')}: no such file`,
    },
    {
      name: 'an empty token file',
      scenario: { files: { 'cwd/token': '\n' }, env: { FOREMAN_CORE_URL: 'http://x.test/', FOREMAN_CORE_TOKEN_FILE: 'token' } },
      expected: (d) => `env FOREMAN_CORE_TOKEN_FILE: core.token_file = "token": ${join(d.cwd, 'token')} is empty: expected the token`,
    },
    {
      name: 'a token file that holds no token is never echoed',
      scenario: { files: { 'cwd/token': 'two words\n' }, env: { FOREMAN_CORE_URL: 'http://x.test/', FOREMAN_CORE_TOKEN_FILE: 'token' } },
      expected: (d) =>
        `env FOREMAN_CORE_TOKEN_FILE: core.token_file = "token": ${join(d.cwd, 'token')} does not hold a token: expected a non-empty token of printable ASCII characters without spaces`,
    },
    {
      name: 'an unknown log format, from a flag',
      scenario: { env: REQUIRED_ENV, flags: [{ key: 'log.format', flag: '--log-format', value: 'yaml' }] },
      expected: () => '--log-format: log.format = "yaml": expected one of json, text',
    },
    {
      name: 'non-http url',
      scenario: { files: { [FILE]: '[core]\nurl = "ftp://x.test/jobs"\ntoken = "t"\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.url = "ftp://x.test/jobs": expected an http:// or https:// URL`,
    },
    {
      name: 'url that is not a URL at all',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_URL: 'localhost:8888' } },
      expected: () => 'env FOREMAN_CORE_URL: core.url = "localhost:8888": expected an http:// or https:// URL',
    },
    {
      name: 'invalid TOML reports the line number',
      scenario: { files: { [FILE]: '[core]\nurl = "http://x.test/"\ntoken = \n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: invalid TOML at line 3, column 9: invalid value`,
    },
    {
      name: 'max_concurrent_jobs below 1',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_MAX_CONCURRENT_JOBS: '0' } },
      expected: () => 'env FOREMAN_CORE_MAX_CONCURRENT_JOBS: core.max_concurrent_jobs = 0: expected an integer of at least 1',
    },
    {
      name: 'boolean from env that is not a boolean',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE: 'yes' } },
      expected: () => 'env FOREMAN_CORE_REMOVE_STOPPED_CONTAINERS_ON_TERMINATE: core.remove_stopped_containers_on_terminate = "yes": expected true or false',
    },
    {
      name: 'docker url with an unsupported scheme',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_DOCKER_URL: 'npipe:////./pipe/docker_engine' } },
      expected: () => 'env FOREMAN_DOCKER_URL: docker.url = "npipe:////./pipe/docker_engine": expected a unix://, tcp://, http:// or https:// URL',
    },
    {
      name: 'metrics address without a port',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_METRICS_ADDRESS: 'localhost' } },
      expected: () => 'env FOREMAN_METRICS_ADDRESS: metrics.address = "localhost": expected host:port (e.g. "127.0.0.1:9464"), or "" to turn metrics off',
    },
    {
      name: 'unknown log level',
      scenario: { files: { [FILE]: REQUIRED_TOML + '[log]\nlevel = "loud"\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: log.level = "loud": expected one of fatal, error, warn, info, debug, trace, silent`,
    },
    {
      name: 'malformed extra_hosts entry names its index',
      scenario: { files: { [FILE]: REQUIRED_TOML + 'extra_hosts = ["a:1.2.3.4", "nocolon"]\n' } },
      expected: (d) =>
        `${join(d.cwd, 'foreman.toml')}: core.extra_hosts[1] = "nocolon": expected a list of "host:address" strings, e.g. ["host.docker.internal:host-gateway"]`,
    },
    {
      name: 'label that is a table',
      scenario: { files: { [FILE]: REQUIRED_TOML + '[core.labels.nested]\na = 1\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.labels.nested = a table: expected a string, number or boolean`,
    },
    {
      name: 'container env values must be strings and stay redacted',
      scenario: { files: { [FILE]: REQUIRED_TOML + '[core.env]\nPORT = 8080\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core.env.PORT = <redacted number>: expected a string`,
    },
    {
      name: 'a bad token is never echoed',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CORE_TOKEN: 'has a space' } },
      expected: () => 'env FOREMAN_CORE_TOKEN: core.token = <redacted>: expected a non-empty token of printable ASCII characters without spaces',
    },
    {
      name: 'a section that is not a table',
      scenario: { files: { [FILE]: 'core = 5\n' } },
      expected: (d) => `${join(d.cwd, 'foreman.toml')}: core = 5: expected a table ([core])`,
    },
    {
      name: 'several problems are reported together',
      scenario: { env: { FOREMAN_CORE_PORT: 'abc' } },
      expected: () =>
        'core.url is required: set it in foreman.toml or FOREMAN_CORE_URL; core.token or core.token_file is required: set one in foreman.toml, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE; env FOREMAN_CORE_PORT: core.port = "abc": expected an integer from 0 to 65535',
    },
    {
      name: '--config naming a missing file',
      scenario: { argvConfigPath: 'nope.toml', env: REQUIRED_ENV },
      expected: (d) => `config file ${join(d.cwd, 'nope.toml')} (from --config) does not exist`,
    },
    {
      name: 'FOREMAN_CONFIG naming a missing file',
      scenario: { env: { ...REQUIRED_ENV, FOREMAN_CONFIG: '/nonexistent/foreman.toml' } },
      expected: () => 'config file /nonexistent/foreman.toml (from FOREMAN_CONFIG) does not exist',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { message, dirs } = loadError(c.scenario);
      assert.equal(message, c.expected(dirs));
    });
  }
});

describe('warnings', () => {
  it('names the file and the unknown key, with a suggestion when one is close', () => {
    const toml = REQUIRED_TOML + 'poll_frequncy = 100\n[server]\nport = 1\n[docker]\ntls = true\n';
    const { warnings, dirs, config } = load({ files: { 'cwd/foreman.toml': toml } });
    const file = join(dirs.cwd, 'foreman.toml');
    assert.deepEqual(warnings, [
      `${file}: unknown key core.poll_frequncy (ignored); did you mean core.poll_frequency?`,
      `${file}: unknown key server (ignored)`,
      `${file}: unknown key docker.tls (ignored)`,
    ]);
    assert.equal(config.core.poll_frequency, 5000);
  });

  it('names unknown FOREMAN_ variables but not FOREMAN_CONFIG or other programs variables', () => {
    const { warnings } = load({
      files: { 'cwd/foreman.toml': REQUIRED_TOML },
      env: { FOREMAN_CORE_PROT: '1', FOREMAN_NOPE: 'x', FOREMAN_CORE_LABELS_: 'x', FOREMAN_CONFIG: 'foreman.toml', PATH: '/bin', MY_FOREMAN_X: '1' },
    });
    assert.deepEqual(warnings, [
      'env FOREMAN_CORE_LABELS_: unknown setting (ignored)',
      'env FOREMAN_CORE_PROT: unknown setting (ignored); did you mean FOREMAN_CORE_PORT?',
      'env FOREMAN_NOPE: unknown setting (ignored)',
    ]);
  });

  it('suggests the variable meant for a slip anywhere in its name, as for a key in the file', () => {
    const { warnings } = load({
      env: {
        ...REQUIRED_ENV,
        FOREMAN_CORE_LABEL_QUEUE: 'high',
        FOREMAN_CORE_EVN_NODE_ENV: 'x',
        FOREMAN_DOCKER_REGISTRY_0_HOST: 'r.test',
        FOREMAN_CONFG: '/etc/foreman/foreman.toml',
        FOREMAN_CORE_JOB_COMPLETION_TIMOUT: '1m',
        FOREMAN_LOG_FROMAT: 'text',
      },
    });
    assert.deepEqual(warnings, [
      'env FOREMAN_CONFG: unknown setting (ignored); did you mean FOREMAN_CONFIG?',
      'env FOREMAN_CORE_EVN_NODE_ENV: unknown setting (ignored); did you mean FOREMAN_CORE_ENV_NODE_ENV?',
      'env FOREMAN_CORE_JOB_COMPLETION_TIMOUT: unknown setting (ignored); did you mean FOREMAN_CORE_JOB_COMPLETION_TIMEOUT?',
      'env FOREMAN_CORE_LABEL_QUEUE: unknown setting (ignored); did you mean FOREMAN_CORE_LABELS_QUEUE?',
      'env FOREMAN_DOCKER_REGISTRY_0_HOST: unknown setting (ignored); did you mean FOREMAN_DOCKER_REGISTRIES_0_HOST?',
      'env FOREMAN_LOG_FROMAT: unknown setting (ignored); did you mean FOREMAN_LOG_FORMAT?',
    ]);
  });

  it('keeps its did-you-mean when the config fails, as the misspelling is often why a value is missing', () => {
    const { options } = setup({
      files: { 'cwd/foreman.toml': '[core]\nurl = "http://control.test/jobs"\npoll_frequncy = 5\n' },
      env: { FOREMAN_CORE_TOKN: 'x' },
    });
    let thrown: unknown;
    try {
      loadConfig(options);
    } catch (err) {
      thrown = err;
    }
    assert.ok(thrown instanceof ConfigError, `a ConfigError: ${String(thrown)}`);
    assert.deepEqual(
      thrown.problems,
      [`core.token or core.token_file is required: set one in ${join(options.cwd, 'foreman.toml')}, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE`],
      'the problem',
    );
    assert.deepEqual(
      thrown.warnings,
      [
        `${join(options.cwd, 'foreman.toml')}: unknown key core.poll_frequncy (ignored); did you mean core.poll_frequency?`,
        'env FOREMAN_CORE_TOKN: unknown setting (ignored); did you mean FOREMAN_CORE_TOKEN?',
      ],
      'and the warnings that say why',
    );
    assert.ok(!thrown.message.includes('did you mean'), 'the message stays the problems alone');
  });
});

describe('durations', () => {
  it('accept whole milliseconds or a string with units, in the file as in the environment', () => {
    const toml =
      REQUIRED_TOML + 'job_completion_timeout = "1h30m"\npoll_frequency = 250\npoll_timeout = "90s"\ncallback_max_age = "7d"\nstall_timeout = "1.5s"\n';
    const { config, sources } = load({ files: { 'cwd/foreman.toml': toml }, env: { FOREMAN_CORE_SHUTDOWN_TIMEOUT: '2m' } });
    assert.deepEqual(
      [config.core.job_completion_timeout, config.core.poll_frequency, config.core.poll_timeout, config.core.callback_max_age, config.core.stall_timeout],
      [5_400_000, 250, 90_000, 604_800_000, 1500],
      'each in milliseconds',
    );
    assert.equal(config.core.shutdown_timeout, 120_000, 'FOREMAN_CORE_SHUTDOWN_TIMEOUT=2m');
    assert.equal(sources['core.shutdown_timeout'], 'env', 'its source');
  });

  it('every duration key takes units; no other integer key does', () => {
    const durations = LEAF_KEYS.filter((key) => isDurationKey(key));
    assert.deepEqual(durations, [
      'core.job_completion_timeout',
      'core.max_job_timeout',
      'core.job_removal_timeout',
      'core.poll_frequency',
      'core.poll_timeout',
      'core.callback_max_age',
      'core.job_retention',
      'core.shutdown_timeout',
      'core.cancel_grace_period',
      'core.stall_timeout',
      'core.usage_interval',
      'core.drain_timeout',
      'hooks.timeout',
    ]);
    assert.throws(() => loadConfig(setup({ env: { ...REQUIRED_ENV, FOREMAN_CORE_PORT: '1s' } }).options), /core\.port = "1s": expected an integer/);
  });
});

describe('token_file', () => {
  it('reads the token from a file relative to the config file, without its trailing newline', () => {
    const { config, warnings, dirs } = load({
      files: { 'etc/foreman.toml': '[core]\nurl = "http://x.test/"\ntoken_file = "secrets/token"\n', 'etc/secrets/token': 's3cret-token\n' },
    });
    chmodSync(join(dirs.root, 'etc/secrets/token'), 0o600);
    assert.equal(config.core.token, 's3cret-token', 'the token read');
    assert.equal(config.core.token_file, join(dirs.root, 'etc', 'secrets', 'token'), 'the path, absolute');
    assert.deepEqual(
      warnings.filter((w) => !w.includes('may be read by')),
      [],
      'no other warning',
    );
  });

  it('warns when the file may be read by its group or every user, never showing the token', () => {
    const { options, dirs } = setup({ files: { 'cwd/token': 'tok-123\n' }, env: { FOREMAN_CORE_URL: 'http://x.test/', FOREMAN_CORE_TOKEN_FILE: 'token' } });
    const file = join(dirs.cwd, 'token');
    for (const [mode, expected] of [
      [0o600, []],
      [0o400, []],
      [
        0o640,
        [
          `env FOREMAN_CORE_TOKEN_FILE: core.token_file = "token": ${file} may be read by its group (mode 0640); make it readable by the agent's user alone (chmod 600)`,
        ],
      ],
      [
        0o644,
        [
          `env FOREMAN_CORE_TOKEN_FILE: core.token_file = "token": ${file} may be read by every user (mode 0644); make it readable by the agent's user alone (chmod 600)`,
        ],
      ],
    ] as const) {
      chmodSync(file, mode);
      const { warnings, config } = loadConfig(options);
      assert.deepEqual(warnings, expected, `mode ${mode.toString(8)}`);
      assert.equal(config.core.token, 'tok-123', 'the token is read whatever the mode');
      assert.ok(!warnings.join('').includes('tok-123'), 'no warning shows the token');
    }
  });

  it("the environment's token or token_file replaces the file's other form", () => {
    const withFile = load({
      files: { 'cwd/foreman.toml': REQUIRED_TOML, 'cwd/token': 'env-file-token\n' },
      env: { FOREMAN_CORE_TOKEN_FILE: 'token' },
    });
    assert.equal(withFile.config.core.token, 'env-file-token', "FOREMAN_CORE_TOKEN_FILE wins over the file's token");
    const withToken = load({
      files: { 'cwd/foreman.toml': '[core]\nurl = "http://x.test/"\ntoken_file = "nope"\n' },
      env: { FOREMAN_CORE_TOKEN: 'env-token' },
    });
    assert.equal(withToken.config.core.token, 'env-token', "FOREMAN_CORE_TOKEN wins over the file's token_file, which is not read");
    assert.equal(withToken.config.core.token_file, undefined, 'and not in effect');
  });
});

describe('flags', () => {
  it('--log-level and --log-format win over the environment and the file', () => {
    const { config, sources } = load({
      files: { 'cwd/foreman.toml': REQUIRED_TOML + '[log]\nlevel = "warn"\nformat = "json"\n' },
      env: { FOREMAN_LOG_LEVEL: 'error' },
      flags: [
        { key: 'log.level', flag: '--log-level', value: 'debug' },
        { key: 'log.format', flag: '--log-format', value: 'text' },
      ],
    });
    assert.deepEqual(config.log, { level: 'debug', format: 'text' }, 'the flags apply');
    assert.equal(sources['log.level'], 'flag', 'and are their source');
  });
});

describe('loadDataDir (foreman ping)', () => {
  it('finds data_dir as loadConfig does, with no url or token and without reading a token file', () => {
    const fromFile = setup({ files: { 'etc/foreman.toml': '[core]\ndata_dir = "state"\ntoken_file = "/nonexistent"\n' } });
    assert.equal(loadDataDir(fromFile.options), join(fromFile.dirs.root, 'etc', 'state'), 'relative to the file that set it');
    const fromEnv = setup({ files: { 'etc/foreman.toml': '[core]\ndata_dir = "state"\n' }, env: { FOREMAN_CORE_DATA_DIR: '/var/lib/foreman' } });
    assert.equal(loadDataDir(fromEnv.options), '/var/lib/foreman', 'the environment wins');
    const none = setup({});
    assert.equal(loadDataDir(none.options), join(none.dirs.home, '.foreman', 'data'), 'the default');
    const bad = setup({ files: { 'cwd/foreman.toml': '[core]\ndata_dir = 5\n' } });
    assert.throws(() => loadDataDir(bad.options), /core\.data_dir = 5: expected a non-empty directory path/, 'a data_dir that is not a path');
  });
});

describe('config file lookup', () => {
  const all = {
    'explicit.toml': REQUIRED_TOML + 'port = 1\n',
    'fromenv.toml': REQUIRED_TOML + 'port = 2\n',
    'cwd/foreman.toml': REQUIRED_TOML + 'port = 3\n',
    'etc/foreman.toml': REQUIRED_TOML + 'port = 4\n',
    'home/.foreman/foreman.toml': REQUIRED_TOML + 'port = 5\n',
  };
  const cases: { name: string; omit: string[]; argv?: boolean; env?: boolean; port: number; file: string }[] = [
    { name: '--config beats everything', omit: [], argv: true, env: true, port: 1, file: 'explicit.toml' },
    { name: 'FOREMAN_CONFIG beats the search path', omit: [], env: true, port: 2, file: 'fromenv.toml' },
    { name: './foreman.toml comes first in the search', omit: [], port: 3, file: 'cwd/foreman.toml' },
    { name: 'then /etc/foreman/foreman.toml', omit: ['cwd/foreman.toml'], port: 4, file: 'etc/foreman.toml' },
    { name: 'then $HOME/.foreman/foreman.toml', omit: ['cwd/foreman.toml', 'etc/foreman.toml'], port: 5, file: 'home/.foreman/foreman.toml' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const files = Object.fromEntries(Object.entries(all).filter(([path]) => !c.omit.includes(path)));
      const { options, dirs } = setup({ files });
      const loaded = loadConfig({
        ...options,
        argvConfigPath: c.argv ? '../explicit.toml' : undefined,
        env: c.env ? { FOREMAN_CONFIG: join(dirs.root, 'fromenv.toml') } : {},
      });
      assert.equal(loaded.config.core.port, c.port);
      assert.equal(loaded.file, join(dirs.root, c.file));
    });
  }

  it('uses no file when none exists', () => {
    assert.equal(load({ env: REQUIRED_ENV }).file, undefined);
  });
});

describe('data_dir', () => {
  it('resolves a relative path against the directory of the file that set it', () => {
    const { config, dirs } = load({ files: { 'etc/foreman.toml': REQUIRED_TOML + 'data_dir = "state"\n' } });
    assert.equal(config.core.data_dir, join(dirs.root, 'etc', 'state'));
  });

  it('resolves a relative path from env against the working directory', () => {
    const { config, dirs } = load({ env: { ...REQUIRED_ENV, FOREMAN_CORE_DATA_DIR: 'state' } });
    assert.equal(config.core.data_dir, join(dirs.cwd, 'state'));
  });

  it('expands ~/ to the home directory', () => {
    const { config, dirs } = load({ env: { ...REQUIRED_ENV, FOREMAN_CORE_DATA_DIR: '~/foreman-data' } });
    assert.equal(config.core.data_dir, join(dirs.home, 'foreman-data'));
  });
});

describe('documentation stays in step with the schema', () => {
  const repoRoot = join(import.meta.dirname, '..', '..');

  it('foreman.example.toml loads without warnings and mentions every option', () => {
    const path = join(repoRoot, 'foreman.example.toml');
    const loaded = loadConfig({ argvConfigPath: path, env: {}, cwd: repoRoot, home: '/nonexistent' });
    assert.deepEqual(loaded.warnings, []);
    const text = readFileSync(path, 'utf8');
    for (const key of [...LEAF_KEYS, ...TABLES]) {
      const name = key.split('.')[1] ?? '';
      const mentioned = (TABLES as readonly string[]).includes(key) ? text.includes(`[${key}]`) : new RegExp(`^(# )?${name} = `, 'm').test(text);
      assert.ok(mentioned, `${key} is missing from foreman.example.toml`);
    }
  });

  it("foreman.example.toml's listeners take no port a node exporter (9100) or the job API (3000) holds", () => {
    const text = readFileSync(join(repoRoot, 'foreman.example.toml'), 'utf8');
    for (const section of ['metrics', 'health']) {
      const body = text.split(`[${section}]`)[1]?.split(/^\[/m)[0] ?? '';
      const ports = [...body.matchAll(/^# address = "[^"]*:(\d+)"$/gm)].map((m) => Number(m[1]));
      assert.equal(ports.length, 1, `[${section}] shows one address with a port`);
      for (const port of ports)
        assert.ok(![9100, Number(defaultOf('core.port'))].includes(port), `[${section}] example port ${port} is taken by another listener`);
    }
  });

  it('docs/configuration.md has a row for every option', () => {
    const text = readFileSync(join(repoRoot, 'docs/configuration.md'), 'utf8');
    for (const key of LEAF_KEYS) {
      assert.ok(text.includes(`| \`${key}\` |`) || text.includes(`| \`[[${key}]]\` |`), `${key} is missing from the key reference (npm run build:docs)`);
    }
    for (const table of TABLES) assert.ok(text.includes(`| \`[${table}]\` |`), `${table} is missing from the key reference (npm run build:docs)`);
  });
});

describe('[tracing]', () => {
  it('is off by default; [tracing] endpoint names the collector, whose /v1/traces gets the spans', () => {
    assert.equal(load({ env: REQUIRED_ENV }).config.tracing.endpoint, '', 'off');
    const { config, sources } = load({ files: { 'cwd/foreman.toml': `${REQUIRED_TOML}[tracing]\nendpoint = "http://collector:4318"\n` } });
    assert.equal(config.tracing.endpoint, 'http://collector:4318/v1/traces');
    assert.equal(sources['tracing.endpoint'], 'file');
    for (const [written, used] of [
      ['http://collector:4318/', 'http://collector:4318/v1/traces'],
      ['https://otel.example.com/base', 'https://otel.example.com/base/v1/traces'],
      ['http://jaeger:4318/v1/traces', 'http://jaeger:4318/v1/traces'],
    ] as const) {
      assert.equal(load({ env: { ...REQUIRED_ENV, FOREMAN_TRACING_ENDPOINT: written } }).config.tracing.endpoint, used, written);
    }
  });

  it('takes the standard OTEL_* variables when neither the file nor FOREMAN_* set the keys', () => {
    const base = load({ env: { ...REQUIRED_ENV, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SERVICE_NAME: 'ci-agents' } });
    assert.deepEqual(base.config.tracing, { endpoint: 'http://collector:4318/v1/traces', service_name: 'ci-agents' }, 'the base URL gets /v1/traces');
    assert.equal(base.sources['tracing.endpoint'], 'env');
    const full = load({
      env: { ...REQUIRED_ENV, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/custom/path' },
    });
    assert.equal(full.config.tracing.endpoint, 'http://collector:4318/custom/path', 'the traces endpoint is used as it is, and wins');
    const ours = load({
      env: { ...REQUIRED_ENV, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318', FOREMAN_TRACING_ENDPOINT: 'http://ours:4318', OTEL_SERVICE_NAME: 'x' },
      files: { 'cwd/foreman.toml': `${REQUIRED_TOML}[tracing]\nservice_name = "from-file"\n` },
    });
    assert.deepEqual(ours.config.tracing, { endpoint: 'http://ours:4318/v1/traces', service_name: 'from-file' }, "foreman's own keys win");
    const disabled = load({ env: { ...REQUIRED_ENV, FOREMAN_TRACING_ENDPOINT: 'http://ours:4318', OTEL_SDK_DISABLED: 'true' } });
    assert.equal(disabled.config.tracing.endpoint, '', 'OTEL_SDK_DISABLED=true turns it off');
  });

  it('a bad endpoint is an error naming where it came from', () => {
    assert.equal(
      loadError({ env: { ...REQUIRED_ENV, OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' } }).message,
      'env OTEL_EXPORTER_OTLP_ENDPOINT: tracing.endpoint = "collector:4318": expected an http:// or https:// URL (e.g. "http://127.0.0.1:4318"), or "" to turn tracing off',
    );
    assert.match(
      loadError({ env: { ...REQUIRED_ENV, FOREMAN_TRACING_ENDPOINT: 'ftp://x' } }).message,
      /^env FOREMAN_TRACING_ENDPOINT: tracing\.endpoint = "ftp:\/\/x": expected/,
    );
  });
});
