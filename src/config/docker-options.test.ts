/** The `[docker]` hardening options: defaults, env overrides and one-line errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './load.ts';
import type { LoadedConfig } from './types.ts';

const REQUIRED = { FOREMAN_CORE_URL: 'http://control.test/jobs', FOREMAN_CORE_TOKEN: 't' };

function load(env: Record<string, string>, toml?: string): LoadedConfig {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-docker-options-'));
  try {
    if (toml !== undefined) writeFileSync(join(dir, 'foreman.toml'), `[core]\nurl = "http://control.test/jobs"\ntoken = "t"\n[docker]\n${toml}`);
    return loadConfig({ env: toml === undefined ? { ...REQUIRED, ...env } : env, cwd: dir, home: dir, systemConfigPath: join(dir, 'none.toml') });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function loadError(env: Record<string, string>, toml?: string): string {
  try {
    load(env, toml);
  } catch (err) {
    assert.ok(err instanceof ConfigError, 'a ConfigError');
    assert.ok(!err.message.includes('\n'), 'the error is one line');
    return err.message;
  }
  return assert.fail('expected a ConfigError');
}

test('every [docker] hardening option can come from the environment', () => {
  const { config, sources, warnings } = load({
    FOREMAN_DOCKER_CPUS: '1.5',
    FOREMAN_DOCKER_PIDS_LIMIT: '0',
    FOREMAN_DOCKER_CAP_ADD: 'NET_BIND_SERVICE, CAP_CHOWN',
    FOREMAN_DOCKER_USER: '1000:1000',
    FOREMAN_DOCKER_READ_ONLY_ROOTFS: 'true',
    FOREMAN_DOCKER_RUNTIME: 'runsc',
    FOREMAN_DOCKER_ALLOWED_IMAGES: 'foreman-test-job:*,registry.example.com/ci/**',
    FOREMAN_DOCKER_SECRETS_DIR: '/run/foreman-secrets',
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.docker, {
    url: 'unix:///var/run/docker.sock',
    ca: undefined,
    cert: undefined,
    key: undefined,
    memory_limit: 0,
    cpus: 1.5,
    pids_limit: 0,
    cap_add: ['NET_BIND_SERVICE', 'CAP_CHOWN'],
    user: '1000:1000',
    read_only_rootfs: true,
    runtime: 'runsc',
    allowed_images: ['foreman-test-job:*', 'registry.example.com/ci/**'],
    secrets_dir: '/run/foreman-secrets',
    registries: [],
  });
  for (const key of ['cpus', 'pids_limit', 'cap_add', 'user', 'read_only_rootfs', 'runtime', 'allowed_images', 'secrets_dir'])
    assert.equal(sources[`docker.${key}`], 'env');
});

test('docker.ca, cert and key are paths: relative to the file that set them, or to the working directory from env', () => {
  const fromFile = load({}, 'url = "tcp://127.0.0.1:2376"\nca = "certs/ca.pem"\ncert = "/abs/cert.pem"\nkey = "~/key.pem"\n');
  assert.match(fromFile.config.docker.ca ?? '', /^\/.+\/foreman-docker-options-[^/]+\/certs\/ca\.pem$/);
  assert.equal(fromFile.config.docker.cert, '/abs/cert.pem');
  assert.match(fromFile.config.docker.key ?? '', /^\/.+\/foreman-docker-options-[^/]+\/key\.pem$/);
  const fromEnv = load({ FOREMAN_DOCKER_CA: 'ca.pem', FOREMAN_DOCKER_CERT: 'c.pem', FOREMAN_DOCKER_KEY: 'k.pem' });
  assert.match(fromEnv.config.docker.ca ?? '', /\/ca\.pem$/);
  assert.equal(fromEnv.sources['docker.cert'], 'env');
  assert.match(loadError({ FOREMAN_DOCKER_KEY: '' }), /^env FOREMAN_DOCKER_KEY: docker\.key = "": expected the path of a PEM file/);
});

test('the file sets them too, and an unset user or runtime stays unset', () => {
  const { config } = load({}, 'cpus = 2\npids_limit = 64\ncap_add = ["SYS_PTRACE"]\nallowed_images = ["node:*"]\n');
  assert.equal(config.docker.cpus, 2);
  assert.equal(config.docker.pids_limit, 64);
  assert.deepEqual(config.docker.cap_add, ['SYS_PTRACE']);
  assert.equal(config.docker.user, undefined);
  assert.equal(config.docker.runtime, undefined);
});

test('bad values are one line naming the key, the value and what was expected', () => {
  assert.equal(
    loadError({ FOREMAN_DOCKER_CAP_ADD: 'NET_ADMIN,net_raw' }),
    'env FOREMAN_DOCKER_CAP_ADD: docker.cap_add[1] = "net_raw": expected a list of Linux capability names, e.g. ["NET_BIND_SERVICE"] (upper case, "CAP_" prefix optional; "ALL" is not accepted)',
  );
  assert.match(loadError({ FOREMAN_DOCKER_CAP_ADD: 'ALL' }), /docker\.cap_add\[0\] = "ALL"/);
  assert.equal(
    loadError({ FOREMAN_DOCKER_CPUS: '-1' }),
    'env FOREMAN_DOCKER_CPUS: docker.cpus = -1: expected a non-negative number of CPUs, e.g. 1.5 (0 for no limit)',
  );
  assert.match(loadError({ FOREMAN_DOCKER_CPUS: 'two' }), /docker\.cpus = "two": expected a non-negative number of CPUs/);
  assert.match(loadError({ FOREMAN_DOCKER_PIDS_LIMIT: '1.5' }), /docker\.pids_limit = 1\.5: expected a non-negative integer number of processes/);
  assert.match(loadError({ FOREMAN_DOCKER_USER: 'root:wheel:x' }), /docker\.user = "root:wheel:x": expected a user or user:group/);
  assert.match(loadError({ FOREMAN_DOCKER_RUNTIME: 'run sc' }), /docker\.runtime = "run sc": expected the name of a runtime/);
  assert.match(loadError({}, 'allowed_images = ["ok/*", "has space"]\n'), /docker\.allowed_images\[1\] = "has space": expected a list of image patterns/);
  assert.match(loadError({}, 'read_only_rootfs = "yes"\n'), /docker\.read_only_rootfs = "yes": expected true or false/);
});
