/** `[[docker.registries]]`: file and env entries, password files, one-line errors, and Docker's config.json fallback. */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError, isSecretKey, loadConfig, show } from './load.ts';
import { registryRows, registrySummary } from './registries.ts';
import type { LoadedConfig } from './types.ts';

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

const REQUIRED_TOML = '[core]\nurl = "http://control.test/jobs"\ntoken = "t"\n[docker]\n';
const SECRET = 'S3cret-Pa55';

interface Scenario {
  /** foreman.toml's [docker] part and what follows it; no file when undefined. */
  toml?: string;
  /** Files relative to the temp root (the config file is root/foreman.toml; home is root/home). */
  files?: Record<string, string>;
  env?: Record<string, string>;
}

function setup(scenario: Scenario): { root: string; load: () => LoadedConfig } {
  const root = mkdtempSync(join(tmpdir(), 'foreman-registries-'));
  roots.push(root);
  mkdirSync(join(root, 'home'));
  mkdirSync(join(root, 'cwd'));
  for (const [relative, content] of Object.entries(scenario.files ?? {})) {
    mkdirSync(dirname(join(root, relative)), { recursive: true });
    writeFileSync(join(root, relative), content);
  }
  if (scenario.toml !== undefined) writeFileSync(join(root, 'foreman.toml'), REQUIRED_TOML + scenario.toml);
  const env = scenario.toml === undefined ? { FOREMAN_CORE_URL: 'http://control.test/jobs', FOREMAN_CORE_TOKEN: 't', ...scenario.env } : (scenario.env ?? {});
  const options = {
    env,
    cwd: join(root, 'cwd'),
    home: join(root, 'home'),
    systemConfigPath: join(root, 'none.toml'),
    argvConfigPath: scenario.toml === undefined ? undefined : join(root, 'foreman.toml'),
  };
  return { root, load: () => loadConfig(options) };
}

function load(scenario: Scenario): LoadedConfig & { root: string } {
  const { root, load: run } = setup(scenario);
  return { ...run(), root };
}

function loadError(scenario: Scenario): { message: string; root: string } {
  const { root, load: run } = setup(scenario);
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), err.message);
    assert.ok(!err.message.includes(SECRET), `the password leaked: ${err.message}`);
    return { message: err.message, root };
  }
  return assert.fail('expected a ConfigError');
}

const entry = (fields: string): string => `[[docker.registries]]\n${fields}`;

describe('[[docker.registries]] in the file', () => {
  test('entries with password_file (relative to the file, newline dropped) and password', () => {
    const { config, sources, warnings, root } = load({
      toml:
        entry('host = "127.0.0.1:5000"\nusername = "ci"\npassword_file = "secrets/registry"\n') +
        entry(`host = "docker.io"\nusername = "me"\npassword = "${SECRET}"\n`),
      files: { 'secrets/registry': `${SECRET}-file\n` },
    });
    const file = join(root, 'foreman.toml');
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.docker.registries, [
      {
        host: '127.0.0.1:5000',
        username: 'ci',
        password: `${SECRET}-file`,
        identitytoken: undefined,
        source: file,
        password_source: `from file ${join(root, 'secrets/registry')}`,
      },
      { host: 'docker.io', username: 'me', password: SECRET, identitytoken: undefined, source: file, password_source: `in ${file}` },
    ]);
    assert.equal(sources['docker.registries'], 'file');
    assert.ok(Object.isFrozen(config.docker.registries[0]), 'each registry entry is frozen');
  });

  test("the environment sets entry N field by field; its password replaces the file's password_file", () => {
    const { config, sources, warnings, root } = load({
      toml: entry('host = "registry.example.com"\nusername = "file-user"\npassword_file = "missing-file"\n'),
      env: {
        FOREMAN_DOCKER_REGISTRIES_0_USERNAME: 'env-user',
        FOREMAN_DOCKER_REGISTRIES_0_PASSWORD: SECRET,
        FOREMAN_DOCKER_REGISTRIES_1_HOST: 'localhost:5001',
        FOREMAN_DOCKER_REGISTRIES_1_USERNAME: 'u1',
        FOREMAN_DOCKER_REGISTRIES_1_PASSWORD_FILE: 'pw1',
      },
      files: { 'cwd/pw1': 'from-cwd' },
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(
      config.docker.registries.map((r) => [r.host, r.username, r.password, r.source, r.password_source]),
      [
        ['registry.example.com', 'env-user', SECRET, join(root, 'foreman.toml'), 'from env FOREMAN_DOCKER_REGISTRIES_0_PASSWORD'],
        ['localhost:5001', 'u1', 'from-cwd', 'env', `from file ${join(root, 'cwd', 'pw1')}`],
      ],
    );
    assert.equal(sources['docker.registries'], 'file');
  });

  test('from the environment only', () => {
    const { config, sources } = load({
      env: { FOREMAN_DOCKER_REGISTRIES_0_HOST: 'index.docker.io', FOREMAN_DOCKER_REGISTRIES_0_USERNAME: 'me', FOREMAN_DOCKER_REGISTRIES_0_PASSWORD: SECRET },
    });
    assert.equal(config.docker.registries[0]?.password, SECRET);
    assert.equal(sources['docker.registries'], 'env');
  });

  test('unknown fields and variables are warned about, with a suggestion', () => {
    const { warnings, root } = load({
      toml: entry(`host = "r.example.com"\nusername = "u"\npassword = "${SECRET}"\npasword_file = "x"\n`),
      env: { FOREMAN_DOCKER_REGISTRIES_0_PASWORD: 'x', FOREMAN_DOCKER_REGISTRIES_HOST: 'x' },
    });
    assert.deepEqual(warnings, [
      `${join(root, 'foreman.toml')}: unknown key docker.registries[0].pasword_file (ignored); did you mean docker.registries[0].password_file?`,
      'env FOREMAN_DOCKER_REGISTRIES_0_PASWORD: unknown setting (ignored); did you mean FOREMAN_DOCKER_REGISTRIES_0_PASSWORD?',
      'env FOREMAN_DOCKER_REGISTRIES_HOST: unknown setting (ignored); registries are set with FOREMAN_DOCKER_REGISTRIES_<N>_HOST, _USERNAME, _PASSWORD or _PASSWORD_FILE (N = 0, 1, …)',
    ]);
  });
});

describe('errors are one line naming the entry, and never show a password', () => {
  const cases: { name: string; scenario: Scenario; expected: (file: string, root: string) => string }[] = [
    {
      name: 'a host with a scheme',
      scenario: { toml: entry(`host = "https://r.example.com"\nusername = "u"\npassword = "${SECRET}"\n`) },
      expected: (f) =>
        `${f}: docker.registries[0].host = "https://r.example.com": expected a registry host or host:port without scheme or path, e.g. "registry.example.com" or "127.0.0.1:5000" ("docker.io" is Docker Hub)`,
    },
    {
      name: 'a user name with a colon, in the second entry',
      scenario: {
        toml:
          entry(`host = "a.example.com"\nusername = "u"\npassword = "${SECRET}"\n`) +
          entry(`host = "b.example.com"\nusername = "u:x"\npassword = "${SECRET}"\n`),
      },
      expected: (f) => `${f}: docker.registries[1].username = "u:x": expected a non-empty user name without ":"`,
    },
    {
      name: 'a missing username',
      scenario: { toml: entry(`host = "r.example.com"\npassword = "${SECRET}"\n`) },
      expected: (f) => `docker.registries[0].username is required: set it in ${f} or FOREMAN_DOCKER_REGISTRIES_0_USERNAME`,
    },
    {
      name: 'no password at all',
      scenario: { toml: entry('host = "r.example.com"\nusername = "u"\n') },
      expected: (f) =>
        `docker.registries[0].password or docker.registries[0].password_file is required: set one in ${f} or FOREMAN_DOCKER_REGISTRIES_0_PASSWORD`,
    },
    {
      name: 'both password and password_file',
      scenario: { toml: entry(`host = "r.example.com"\nusername = "u"\npassword = "${SECRET}"\npassword_file = "pw"\n`) },
      expected: (f) => `${f}: docker.registries[0] sets both password and password_file: expected exactly one`,
    },
    {
      name: 'a password that is not a string is not echoed',
      scenario: { toml: entry('host = "r.example.com"\nusername = "u"\npassword = 123456\n') },
      expected: (f) => `${f}: docker.registries[0].password = <redacted number>: expected a non-empty password`,
    },
    {
      name: 'an empty password from env',
      scenario: {
        env: { FOREMAN_DOCKER_REGISTRIES_0_HOST: 'r.example.com', FOREMAN_DOCKER_REGISTRIES_0_USERNAME: 'u', FOREMAN_DOCKER_REGISTRIES_0_PASSWORD: '' },
      },
      expected: () => 'env FOREMAN_DOCKER_REGISTRIES_0_PASSWORD: docker.registries[0].password = "": expected a non-empty password',
    },
    {
      name: 'the same registry twice (Docker Hub by two names)',
      scenario: {
        toml:
          entry(`host = "docker.io"\nusername = "u"\npassword = "${SECRET}"\n`) + entry(`host = "index.docker.io"\nusername = "v"\npassword = "${SECRET}"\n`),
      },
      expected: (f) => `${f}: docker.registries[1].host = "index.docker.io": expected each registry once, but docker.registries[0] names it too`,
    },
    {
      name: 'a password_file that does not exist',
      scenario: { toml: entry('host = "r.example.com"\nusername = "u"\npassword_file = "nope"\n') },
      expected: (f, root) => `${f}: docker.registries[0].password_file = "nope": cannot read ${join(root, 'nope')}: no such file`,
    },
    {
      name: 'an empty password_file',
      scenario: { toml: entry('host = "r.example.com"\nusername = "u"\npassword_file = "empty"\n'), files: { empty: '\n' } },
      expected: (f, root) => `${f}: docker.registries[0].password_file = "empty": ${join(root, 'empty')} is empty: expected the password`,
    },
    {
      name: 'a gap in the numbering',
      scenario: { env: { FOREMAN_DOCKER_REGISTRIES_2_HOST: 'r.example.com' } },
      expected: () =>
        'env FOREMAN_DOCKER_REGISTRIES_2_HOST: docker.registries[2] is set but docker.registries[0] is not: entries are numbered 0, 1, 2, … without gaps',
    },
    {
      name: 'a single table instead of an array of tables',
      scenario: { toml: `[docker.registries]\nhost = "r.example.com"\n` },
      expected: (f) =>
        `${f}: docker.registries = a table: expected a list of [[docker.registries]] tables, each with host, username, and password or password_file`,
    },
    {
      name: 'an entry that is not a table',
      scenario: { toml: 'registries = ["r.example.com"]\n' },
      expected: (f) => `${f}: docker.registries[0] = "r.example.com": expected a table ([[docker.registries]])`,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { message, root } = loadError(c.scenario);
      assert.equal(message, c.expected(join(root, 'foreman.toml'), root));
    });
  }

  test('an unreadable password_file names the key', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, () => {
    const { root, load: run } = setup({ toml: entry('host = "r.example.com"\nusername = "u"\npassword_file = "locked"\n'), files: { locked: SECRET } });
    chmodSync(join(root, 'locked'), 0o000);
    assert.throws(run, {
      message: `${join(root, 'foreman.toml')}: docker.registries[0].password_file = "locked": cannot read ${join(root, 'locked')}: permission denied`,
    });
  });

  test('a directory as password_file', () => {
    const { message, root } = loadError({ toml: entry('host = "r.example.com"\nusername = "u"\npassword_file = "."\n') });
    assert.equal(message, `${join(root, 'foreman.toml')}: docker.registries[0].password_file = ".": cannot read ${root}: it is a directory`);
  });

  test('passwords are secret keys: shown redacted', () => {
    assert.ok(isSecretKey('docker.registries[3].password'), 'password of a registry (bracket form) is secret');
    assert.ok(isSecretKey('docker.registries.0.password'), 'password of a registry (dotted form) is secret');
    assert.ok(!isSecretKey('docker.registries[0].password_file'), 'password_file names a file, not a secret');
    assert.equal(show('docker.registries[0].password', SECRET), '<redacted>');
  });
});

describe("Docker's config.json when no registries are configured", () => {
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  const dockerConfig = JSON.stringify({
    auths: {
      'https://index.docker.io/v1/': { auth: b64(`hubuser:${SECRET}`) },
      '127.0.0.1:5000': { username: 'local', password: SECRET },
      'ghcr.io': {},
      'https://token.example.com/v2/': { auth: b64('<token>:'), identitytoken: 'refresh-token' },
    },
  });

  test('reads the auths of ~/.docker/config.json: auth, username/password and identitytoken', () => {
    const { config, warnings, root } = load({ files: { 'home/.docker/config.json': dockerConfig } });
    const path = join(root, 'home', '.docker', 'config.json');
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.docker.registries, [
      { host: 'index.docker.io', username: 'hubuser', password: SECRET, identitytoken: undefined, source: path, password_source: `in ${path}` },
      { host: '127.0.0.1:5000', username: 'local', password: SECRET, identitytoken: undefined, source: path, password_source: `in ${path}` },
      { host: 'token.example.com', username: '<token>', password: '', identitytoken: 'refresh-token', source: path, password_source: `in ${path}` },
    ]);
    assert.equal(registrySummary(config.docker.registries), `registry credentials: 3 from ${path}`);
  });

  test('$DOCKER_CONFIG wins over the home directory (relative to the working directory)', () => {
    const { config, root } = load({
      env: { DOCKER_CONFIG: '../elsewhere' },
      files: { 'home/.docker/config.json': dockerConfig, 'elsewhere/config.json': JSON.stringify({ auths: { 'r.example.com': { auth: b64('other:pw') } } }) },
    });
    assert.deepEqual(
      config.docker.registries.map((r) => [r.host, r.username, r.source]),
      [['r.example.com', 'other', join(root, 'elsewhere', 'config.json')]],
    );
  });

  test('is not read when [[docker.registries]] has entries', () => {
    const { config } = load({
      toml: entry(`host = "r.example.com"\nusername = "u"\npassword = "${SECRET}"\n`),
      files: { 'home/.docker/config.json': dockerConfig },
    });
    assert.deepEqual(
      config.docker.registries.map((r) => r.host),
      ['r.example.com'],
    );
  });

  test('a missing file is no credentials, quietly', () => {
    const { config, warnings } = load({});
    assert.deepEqual([config.docker.registries, warnings], [[], []]);
    assert.match(registrySummary([]), /^registry credentials: none .*pulled anonymously$/);
  });

  test('invalid JSON, a file that cannot be read, credsStore, credHelpers and a bad auth are warnings, never quoting the file', () => {
    const invalid = load({ files: { 'home/.docker/config.json': `{"auths": {"x": {"auth": "${SECRET}"` } });
    assert.deepEqual(invalid.config.docker.registries, []);
    assert.deepEqual(invalid.warnings, [`${join(invalid.root, 'home/.docker/config.json')} is not valid JSON; registry credentials in it are not used`]);

    const unreadable = load({ files: { 'home/.docker/config.json/x': '' } });
    assert.deepEqual(unreadable.warnings, [
      `cannot read ${join(unreadable.root, 'home/.docker/config.json')}: it is a directory; registry credentials in it are not used`,
    ]);

    const helpers = load({
      files: {
        'home/.docker/config.json': JSON.stringify({
          credsStore: 'desktop',
          credHelpers: { 'gcr.io': 'gcloud' },
          auths: { 'bad.example.com': { auth: b64(SECRET) } },
        }),
      },
    });
    const path = join(helpers.root, 'home/.docker/config.json');
    assert.deepEqual(helpers.warnings, [
      `${path}: credsStore "desktop" is not supported; foreman reads only "auths" (set such credentials in [[docker.registries]])`,
      `${path}: credHelpers (for gcr.io) are not supported; foreman reads only "auths" (set such credentials in [[docker.registries]])`,
      `${path}: the "auth" of auths "bad.example.com" is not base64 of user:password (ignored)`,
    ]);
    for (const warning of [...invalid.warnings, ...helpers.warnings]) assert.ok(!warning.includes(SECRET), 'no warning shows the secret');
  });
});

test('foreman check rows name host, user and where the password is, never the password', () => {
  const { config, root } = load({
    toml: entry('host = "127.0.0.1:5000"\nusername = "ci"\npassword_file = "pw"\n'),
    env: { FOREMAN_DOCKER_REGISTRIES_1_HOST: 'docker.io', FOREMAN_DOCKER_REGISTRIES_1_USERNAME: 'me', FOREMAN_DOCKER_REGISTRIES_1_PASSWORD: SECRET },
    files: { pw: SECRET },
  });
  const file = join(root, 'foreman.toml');
  assert.deepEqual(registryRows(config.docker.registries, file), [
    ['docker.registries[0]', `127.0.0.1:5000, username "ci", password: set (from file ${join(root, 'pw')})`, 'file'],
    ['docker.registries[1]', 'docker.io, username "me", password: set (from env FOREMAN_DOCKER_REGISTRIES_1_PASSWORD)', 'env'],
  ]);
  assert.equal(registrySummary(config.docker.registries), `registry credentials: 1 from ${file}, 1 from env`);
  assert.deepEqual(registryRows([], file), [['docker.registries', '(none)', 'default']]);
});
