import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pkg from '../package.json' with { type: 'json' };
import { createDockerClient } from '../src/executor/docker/client.ts';

const BIN = fileURLToPath(new URL('../bin/foreman.js', import.meta.url));
const DOCKER_URL = 'unix:///var/run/docker.sock';
const TOKEN = 's3cret-token-value';

const workDir = mkdtempSync(join(tmpdir(), 'foreman-cli-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real binary with a clean env whose HOME is a temp dir, so no real config is picked up. */
async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: workDir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

let fileCounter = 0;
function writeConfig(toml: string): string {
  const path = join(workDir, `config-${++fileCounter}.toml`);
  writeFileSync(path, toml);
  return path;
}

function assertNoStackTrace(result: CliResult): void {
  assert.doesNotMatch(result.stderr, /^\s+at /m, `stack trace leaked:\n${result.stderr}`);
  assert.doesNotMatch(result.stdout, /^\s+at /m, `stack trace leaked:\n${result.stdout}`);
}

describe('foreman CLI basics', () => {
  it('--help prints usage and exits 0', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: foreman/);
    assert.match(result.stdout, /check/);
    assert.match(result.stdout, /--config PATH/);
    assert.equal(result.stderr, '');
  });

  it('--version prints the package version and the Node.js version it runs on', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `foreman ${pkg.version} (node ${process.version})\n`, 'foreman and Node versions');
  });

  it('an unknown flag is a usage error (exit 2)', async () => {
    const result = await runCli(['--frobnicate']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, 'foreman: unknown option --frobnicate (see foreman --help)\n');
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const result = await runCli(['launch']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, 'foreman: unknown command "launch" (see foreman --help)\n');
  });
});

describe('foreman with a bad configuration', () => {
  const cases: { name: string; args: (file: string) => string[]; toml: string; env?: Record<string, string>; stderr: (file: string) => string }[] = [
    {
      name: 'a value of the wrong type',
      args: (file) => ['--config', file],
      toml: '[core]\nurl = "http://127.0.0.1:9/"\ntoken = "t"\nport = "abc"\n',
      stderr: (file) => `foreman: ${file}: core.port = "abc": expected an integer from 0 to 65535\n`,
    },
    {
      name: 'invalid TOML',
      args: (file) => ['check', '-c', file],
      toml: '[core]\nurl = "http://127.0.0.1:9/"\ntoken = \n',
      stderr: (file) => `foreman: ${file}: invalid TOML at line 3, column 9: invalid value\n`,
    },
    {
      name: 'a bad env override',
      args: (file) => ['check', '--config', file],
      toml: '[core]\nurl = "http://127.0.0.1:9/"\ntoken = "t"\n',
      env: { FOREMAN_CORE_POLL_TIMEOUT: '-1' },
      stderr: () =>
        'foreman: env FOREMAN_CORE_POLL_TIMEOUT: core.poll_timeout = -1: expected a duration of at most 2147483647 ms (about 24.8 days): whole milliseconds (e.g. 1500) or a string with a unit: "500ms", "90s", "15m", "2h", "7d", or combined as "1h30m"\n',
    },
    {
      name: 'no url anywhere',
      args: (file) => ['--config', file],
      toml: '[core]\ntoken = "t"\n',
      stderr: (file) => `foreman: core.url is required: set it in ${file} or FOREMAN_CORE_URL\n`,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: one line on stderr, exit 2, no stack trace`, async () => {
      const file = writeConfig(c.toml);
      const result = await runCli(c.args(file), c.env);
      assert.equal(result.code, 2);
      assert.equal(result.stderr, c.stderr(file));
      assertNoStackTrace(result);
    });
  }

  it('several problems: one line each, each naming where its value came from, exit 2', async () => {
    const file = writeConfig('[core]\nport = "abc"\npoll_frequency = "soon"\n');
    const result = await runCli(['run', '--config', file], { FOREMAN_CORE_STALL_TIMEOUT: '-1', FOREMAN_LOG_FORMAT: 'yaml' });
    assert.equal(result.code, 2, result.stderr);
    const forms = 'whole milliseconds (e.g. 1500) or a string with a unit: "500ms", "90s", "15m", "2h", "7d", or combined as "1h30m"';
    assert.deepEqual(
      result.stderr.split('\n').filter(Boolean),
      [
        `foreman: core.url is required: set it in ${file} or FOREMAN_CORE_URL`,
        `foreman: core.token or core.token_file is required: set one in ${file}, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE`,
        `foreman: ${file}: core.port = "abc": expected an integer from 0 to 65535`,
        `foreman: ${file}: core.poll_frequency = "soon": expected a duration of at most 2147483647 ms (about 24.8 days): ${forms}`,
        `foreman: env FOREMAN_CORE_STALL_TIMEOUT: core.stall_timeout = -1: expected a duration of at most 2147483647 ms (about 24.8 days): ${forms}`,
        'foreman: env FOREMAN_LOG_FORMAT: log.format = "yaml": expected one of json, text',
      ],
      'one line per problem',
    );
    assertNoStackTrace(result);
  });

  it('a misspelled FOREMAN_ variable gets a did-you-mean, as a misspelled key does', async () => {
    const file = writeConfig('[core]\nurl = "http://127.0.0.1:9/"\ntoken = "t"\npoll_frequncy = 5\n');
    const result = await runCli(['ping', '--config', file], { FOREMAN_CORE_LABEL_QUEUE: 'high' });
    // ping repeats no warning (a HEALTHCHECK runs it every few seconds); run and check do.
    assert.doesNotMatch(result.stderr, /warning/, 'ping prints no config warning');
    const check = await runCli(['check', '--config', file, '--log-level', 'silent'], {
      FOREMAN_CORE_LABEL_QUEUE: 'high',
      FOREMAN_DOCKER_URL: 'unix:///nonexistent.sock',
    });
    assert.match(check.stderr, /^foreman: warning: env FOREMAN_CORE_LABEL_QUEUE: unknown setting \(ignored\); did you mean FOREMAN_CORE_LABELS_QUEUE\?$/m);
    assert.match(
      check.stderr,
      new RegExp(`^foreman: warning: ${file}: unknown key core.poll_frequncy \\(ignored\\); did you mean core.poll_frequency\\?$`, 'm'),
    );
  });

  it('a misspelled variable that leaves a required value missing: its did-you-mean comes with the error (exit 2)', async () => {
    for (const command of ['check', 'run']) {
      const result = await runCli([command], { FOREMAN_CORE_URL: 'http://127.0.0.1:9/', FOREMAN_CORE_TOKN: 'x' });
      assert.equal(result.code, 2, `${command}: ${result.stderr}`);
      assert.deepEqual(
        result.stderr.split('\n').filter(Boolean),
        [
          'foreman: warning: env FOREMAN_CORE_TOKN: unknown setting (ignored); did you mean FOREMAN_CORE_TOKEN?',
          'foreman: core.token or core.token_file is required: set one in foreman.toml, FOREMAN_CORE_TOKEN or FOREMAN_CORE_TOKEN_FILE',
        ],
        `${command}: the hint, then the problem, one a line`,
      );
      assertNoStackTrace(result);
    }
  });

  it('ping with no agent running: one line on stderr, exit 1 (never 2, which Docker reserves)', async () => {
    const dataDir = join(workDir, 'ping-data');
    const result = await runCli(['ping'], { FOREMAN_CORE_URL: 'http://127.0.0.1:9/', FOREMAN_CORE_TOKEN: 't', FOREMAN_CORE_DATA_DIR: dataDir });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `foreman: no agent answers at ${join(dataDir, 'foreman.sock')}: is it running, with this core.data_dir?\n`);
    // It needs data_dir alone: no url, no token, no token file it may not read.
    const bare = await runCli(['ping'], { FOREMAN_CORE_DATA_DIR: dataDir, FOREMAN_CORE_TOKEN_FILE: '/nonexistent/token' });
    assert.equal(bare.stderr, result.stderr, 'the same answer with nothing but data_dir set');
    const unreadable = await runCli(['ping', '--config', join(workDir, 'missing.toml')]);
    assert.equal(unreadable.code, 1, 'a config file that cannot be read is exit 1 too');
    assert.equal(unreadable.stderr, `foreman: cannot ping: config file ${join(workDir, 'missing.toml')} (from --config) does not exist\n`, 'in one line');
  });

  it('a missing --config file is an error', async () => {
    const result = await runCli(['check', '--config', 'missing.toml']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `foreman: config file ${join(workDir, 'missing.toml')} (from --config) does not exist\n`);
  });
});

describe('foreman check', () => {
  const docker = createDockerClient(DOCKER_URL);
  const networkName = `foreman-cli-test-${process.pid}`;
  let engineVersion = '';
  let server: Server | undefined;
  let serverUrl = '';
  let status = 204;
  let lastHeaders: IncomingHttpHeaders | undefined;

  before(async () => {
    engineVersion = (await docker.version()).Version;
    // As the agent makes it: a network that lets containers reach each other is only a warning.
    await docker.createNetwork({ Name: networkName, Labels: { 'foreman.test': 'cli' }, Options: { 'com.docker.network.bridge.enable_icc': 'false' } });
    server = createServer((req, res) => {
      lastHeaders = req.headers;
      res.statusCode = status;
      res.end(status === 200 ? '[]' : undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jobs`;
  });

  after(async () => {
    server?.closeAllConnections();
    server?.close();
    await docker.getNetwork(networkName).remove();
  });

  function checkConfig(extra = ''): string {
    return writeConfig(
      `[core]\nurl = "${serverUrl}"\ntoken = "${TOKEN}"\nnetwork_name = "${networkName}"\nunknown_option = 1\n${extra}` +
        `[core.labels]\nqueue = "high"\n[core.env]\nAPI_KEY = "do-not-print"\n`,
    );
  }

  it('an engine over TCP that does not answer: one FAIL line, and no deprecation warning from the engine client', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const result = await runCli(['check', '--config', checkConfig()], { FOREMAN_DOCKER_URL: `tcp://127.0.0.1:${port}` });
    assert.equal(result.code, 1, `exit code; ${result.stdout}${result.stderr}`);
    assert.match(result.stdout, new RegExp(`FAIL +no Docker engine at tcp://127\\.0\\.0\\.1:${port}`), `the engine line: ${result.stdout}`);
    // docker-modem parses a TCP address with url.parse(), which Node 24 warns about (DEP0169): foreman keeps it quiet.
    assert.doesNotMatch(result.stderr, /DeprecationWarning/, `stderr: ${result.stderr}`);
    assertNoStackTrace(result);
  });

  it('reports the engine, the network, the server and the effective config (exit 0)', async () => {
    status = 204;
    const file = checkConfig();
    const result = await runCli(['check', '--config', file], { FOREMAN_CORE_POLL_TIMEOUT: '5000' });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`ok +Docker engine ${engineVersion.replaceAll('.', '\\.').replaceAll('+', '\\+')} \\(API [\\d.]+\\)`));
    assert.match(result.stdout, new RegExp(`ok +network "${networkName}" exists`));
    assert.match(
      result.stdout,
      /ok +host facts sent on each poll \(x-foreman-attributes\): arch=[^,]+,os=linux,cpus=\d+,memory=\d+,.*engine=(docker|podman),.*executor=docker$/m,
    );
    assert.match(result.stdout, /ok +control server http:\/\/127\.0\.0\.1:\d+\/jobs answered HTTP 204/);
    assert.match(result.stdout, /core\.token +=  ?<redacted> +\(file\)/);
    assert.match(result.stdout, /core\.env\.API_KEY +=  ?<redacted> +\(file\)/);
    assert.match(result.stdout, /core\.poll_timeout += 5000 \(5s\) +\(env\)/);
    assert.match(result.stdout, /core\.port += 3000 +\(default\)/);
    assert.match(result.stdout, /core\.labels\.queue += "high" +\(file\)/);
    assert.match(result.stdout, new RegExp(`core\\.data_dir += "${join(workDir, '.foreman', 'data')}"`));
    assert.match(result.stdout, /All checks passed\./);
    assert.ok(!result.stdout.includes(TOKEN) && !result.stderr.includes(TOKEN), 'token leaked');
    assert.ok(!result.stdout.includes('do-not-print'), 'core.env value leaked');
    assert.equal(result.stderr, `foreman: warning: ${file}: unknown key core.unknown_option (ignored)\n`);

    assert.equal(lastHeaders?.authorization, `Bearer ${TOKEN}`);
    assert.equal(lastHeaders?.['user-agent'], `foreman/${pkg.version} (${platform()}, ${arch()})`);
    assert.equal(lastHeaders?.['x-foreman-capacity'], '0');
    assert.equal(lastHeaders?.['x-foreman-labels'], 'queue=high');
  });

  it('warns about a completion timeout under a minute and a token sent over plain http to another host; reads a token file', async () => {
    status = 204;
    const tokenFile = join(workDir, 'check-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const file = writeConfig(`[core]\nurl = "${serverUrl}"\ntoken_file = "check-token"\nnetwork_name = "${networkName}"\n`);
    const quiet = await runCli(['check', '--config', file], { FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '1h' });
    assert.equal(quiet.code, 0, quiet.stdout + quiet.stderr);
    assert.doesNotMatch(quiet.stdout, /^ {2}warn /m, 'no warning for an hour over loopback');
    assert.match(quiet.stdout, new RegExp(`core\\.token += <redacted> +\\(core\\.token_file ${tokenFile}\\)`), 'the token row names its file');
    assert.match(quiet.stdout, new RegExp(`core\\.token_file += "${tokenFile}" +\\(file\\)`));
    assert.equal(lastHeaders?.authorization, `Bearer ${TOKEN}`, 'the token from the file is sent');

    const warned = await runCli(['check', '--config', file], { FOREMAN_CORE_URL: 'http://control.invalid:8888/jobs', FOREMAN_CORE_POLL_TIMEOUT: '2000' });
    assert.equal(warned.code, 1, 'the control server cannot be reached; the warnings alone would not fail the check');
    assert.match(warned.stdout, /^ {2}warn {2}core\.job_completion_timeout is 10s, under a minute: .*e\.g\. "1h"$/m);
    assert.match(
      warned.stdout,
      /^ {2}warn {2}core\.url sends the token over plain http:\/\/ to control\.invalid, which is not this host's loopback: .*use https:\/\/$/m,
    );
    assert.ok(!(warned.stdout + warned.stderr).includes(TOKEN), 'token leaked');
  });

  it('shows registries by host, user and where the password is, never the password', async () => {
    status = 204;
    const passwordFile = join(workDir, 'registry-password');
    writeFileSync(passwordFile, 'file-registry-secret\n');
    const file = writeConfig(
      `[core]\nurl = "${serverUrl}"\ntoken = "${TOKEN}"\nnetwork_name = "${networkName}"\n` +
        `[[docker.registries]]\nhost = "127.0.0.1:5000"\nusername = "ci"\npassword_file = "registry-password"\n`,
    );
    const result = await runCli(['check', '--config', file], {
      FOREMAN_DOCKER_REGISTRIES_1_HOST: 'docker.io',
      FOREMAN_DOCKER_REGISTRIES_1_USERNAME: 'me',
      FOREMAN_DOCKER_REGISTRIES_1_PASSWORD: 'env-registry-secret',
    });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`docker\\.registries\\[0\\] += 127\\.0\\.0\\.1:5000, username "ci", password: set \\(from file ${passwordFile}\\) +\\(file\\)`),
    );
    assert.match(
      result.stdout,
      /docker\.registries\[1\] += docker\.io, username "me", password: set \(from env FOREMAN_DOCKER_REGISTRIES_1_PASSWORD\) +\(env\)/,
    );
    assert.match(result.stdout, new RegExp(`note +registry credentials: 1 from ${file}, 1 from env`));
    for (const secret of ['file-registry-secret', 'env-registry-secret']) assert.ok(!(result.stdout + result.stderr).includes(secret), `${secret} leaked`);

    // None configured: Docker's config.json, named where it was found.
    const dockerConfig = join(workDir, 'docker-config');
    mkdirSync(dockerConfig, { recursive: true });
    writeFileSync(
      join(dockerConfig, 'config.json'),
      JSON.stringify({ auths: { '127.0.0.1:5000': { auth: Buffer.from('ci:json-registry-secret').toString('base64') } } }),
    );
    const fallback = await runCli(['check', '--config', checkConfig()], { DOCKER_CONFIG: dockerConfig });
    const jsonPath = join(dockerConfig, 'config.json');
    assert.match(
      fallback.stdout,
      new RegExp(`docker\\.registries\\[0\\] += 127\\.0\\.0\\.1:5000, username "ci", password: set \\(in ${jsonPath}\\) +\\(${jsonPath}\\)`),
    );
    assert.match(fallback.stdout, new RegExp(`note +registry credentials: 1 from ${jsonPath}`));
    assert.ok(!fallback.stdout.includes('json-registry-secret'), 'the config.json password leaked');
  });

  it('says the token was rejected when the server answers 401 (exit 1)', async () => {
    status = 401;
    const result = await runCli(['check', '--config', checkConfig()], { FOREMAN_CORE_NETWORK_NAME: `${networkName}-missing` });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /FAIL +control server http:\/\/127\.0\.0\.1:\d+\/jobs: token rejected \(HTTP 401\)/);
    // A missing network is only noted: the agent creates it at start.
    assert.match(result.stdout, new RegExp(`note +network "${networkName}-missing" does not exist yet`));
    assert.match(result.stdout, /1 check failed\./);
    assertNoStackTrace(result);
  });

  it('says the control server is unreachable (exit 1)', async () => {
    status = 204;
    const result = await runCli(['check', '--config', checkConfig()], { FOREMAN_CORE_URL: 'http://127.0.0.1:1/jobs' });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /FAIL +control server http:\/\/127\.0\.0\.1:1\/jobs did not answer: .*ECONNREFUSED/);
    assertNoStackTrace(result);
  });

  it('prints one clear line when the Docker engine is not there (exit 1)', async () => {
    status = 204;
    const socket = join(workDir, 'no-such-docker.sock');
    const result = await runCli(['check', '--config', checkConfig()], { FOREMAN_DOCKER_URL: `unix://${socket}` });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const failures = result.stdout.split('\n').filter((line) => line.includes('FAIL'));
    assert.equal(failures.length, 1, result.stdout);
    assert.match(failures[0] ?? '', new RegExp(`^  FAIL  no Docker engine at unix://${socket}: start Docker or set docker.url \\(.*ENOENT.*\\)$`));
    assert.match(result.stdout, /ok +control server .* answered HTTP 204/);
    assertNoStackTrace(result);
  });
});
