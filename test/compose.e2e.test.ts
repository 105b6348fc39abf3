/**
 * examples/compose/docker-compose.yml run by a real compose client (Debian's docker-compose, offline) on the real
 * engine: the agent image against the reference control server's image, the token from a file, data_dir on a
 * volume; a job submitted to the control server completes, the agent's healthcheck (foreman ping) says healthy,
 * and a stop drains and exits 0. Everything runs under a project name, job network and volumes of its own.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pkg from '../package.json' with { type: 'json' };
import { buildControlServerImage } from '../scripts/build-control-server-image.ts';
import { testJobImage } from './support/image.ts';
import { containersOf, docker, testEngine } from './support/containers.ts';
import { repoRoot } from './support/paths.ts';
import { freePort } from './support/ports.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

const execFileAsync = promisify(execFile);
const COMPOSE = process.env.COMPOSE_CLI ?? 'docker-compose';
const composeVersion = spawnSync(COMPOSE, ['version', '--short'], { encoding: 'utf8' });
const skip = testEngine
  ? `runs against the host's Docker engine only (not ${testEngine})`
  : composeVersion.status !== 0
    ? `${COMPOSE} is not installed (apt-get install docker-compose)`
    : false;

const suffix = randomUUID().slice(0, 8);
const project = `foreman-compose-test-${suffix}`;
const networkName = `foreman-compose-test-${suffix}`;
const dir = mkdtempSync(join(tmpdir(), 'foreman-compose-'));
const TOKEN = `compose-token-${suffix}`;
const ADMIN_TOKEN = `compose-admin-${suffix}`;
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
let port = 0;

/** docker-compose with this test's project, files and settings. */
async function compose(...args: string[]): Promise<string> {
  const files = ['-f', join(repoRoot, 'examples/compose/docker-compose.yml'), '-f', join(dir, 'docker-compose.test.yml')];
  const env = {
    ...process.env,
    FOREMAN_VERSION: pkg.version,
    FOREMAN_TOKEN_FILE: join(dir, 'token'),
    FOREMAN_ADMIN_TOKEN_FILE: join(dir, 'admin-token'),
    FOREMAN_NETWORK: networkName,
    CONTROL_SERVER_PORT: String(port),
  };
  const { stdout, stderr } = await execFileAsync(COMPOSE, ['--ansi', 'never', '-p', project, ...files, ...args], { env, maxBuffer: 16 * 1024 * 1024 });
  return `${stdout}${stderr}`;
}

/**
 * fetch, given up after 5 s. The published port is docker-proxy's, which takes the connection before the control
 * server listens and then holds it: undici keeps no handle on such a request, so without this ref'd timer a wait
 * for it would leave the event loop empty and the test cancelled.
 */
async function request(url: string, init: RequestInit = {}): Promise<Response | undefined> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`no answer from ${url} within 5 s`)), 5000);
  try {
    return await fetch(url, { ...init, signal: abort.signal });
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

async function inspect(container: string, format: string): Promise<string> {
  return (await execFileAsync(process.env.DOCKER_CLI ?? 'docker', ['inspect', '--format', format, container])).stdout.trim();
}

before(async () => {
  if (skip) return;
  await buildControlServerImage();
  await testJobImage();
  port = await freePort();
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'admin-token'), `${ADMIN_TOKEN}\n`, { mode: 0o600 });
  // The example's healthcheck, checked every 2 s instead of every 30 s so the test need not wait for it.
  writeFileSync(join(dir, 'docker-compose.test.yml'), "version: '3.8'\nservices:\n  agent:\n    healthcheck:\n      interval: 2s\n      start_period: 5s\n");
});

after(async () => {
  if (!skip) {
    const agentId = await request(`http://127.0.0.1:${port}/agents`, { headers: operator })
      .then(async (r) => ((await r?.json()) as Array<{ id: string }> | undefined)?.[0]?.id)
      .catch(() => undefined);
    await compose('down', '--volumes', '--timeout', '30').catch((err: unknown) => process.stderr.write(`# compose down failed: ${String(err)}\n`));
    for (const c of agentId ? await containersOf(agentId) : [])
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await docker
      .getNetwork(networkName)
      .remove()
      .catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('the compose example runs a job from the control server to completion; the agent is healthy; a stop exits 0', { skip }, async (t) => {
  t.diagnostic(`${COMPOSE} ${composeVersion.stdout.trim()}`);
  await compose('up', '--detach');
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the control server to answer', async () => (await request(`${base}/healthz`))?.ok, 60_000, 200);
  assert.equal((await request(`${base}/jobs`))?.status, 401, 'the API wants an operator token');
  const submitted = await request(`${base}/jobs`, {
    method: 'POST',
    headers: { ...operator, 'content-type': 'application/json' },
    body: JSON.stringify({ image: 'foreman-test-job:latest', body: { values: [20, 22] }, timeout: 60_000 }),
  });
  assert.equal(submitted?.status, 201, await submitted?.clone().text());
  const { id } = (await submitted.json()) as { id: string };
  const done = await waitFor(
    'the job to complete',
    async () => {
      const view = (await (await request(`${base}/jobs/${id}`, { headers: operator }))?.json()) as JobView | undefined;
      return view?.status === 'completed' ? view : undefined;
    },
    90_000,
    250,
  );
  assert.equal(done.outcome, 'succeeded', 'the agent ran it: it polled with the token from the secret file');
  assert.deepEqual(done.result, { result: 42 }, "the job's result came back");

  const agent = `${project}_agent_1`;
  const health = await waitFor(
    'the agent to be healthy',
    async () => ((await inspect(agent, '{{.State.Health.Status}}')) === 'healthy' ? true : undefined),
    60_000,
    500,
  );
  assert.ok(health, 'healthy');
  const log = JSON.parse(await inspect(agent, '{{json .State.Health.Log}}')) as Array<{ ExitCode: number; Output: string }>;
  assert.equal(log.at(-1)?.ExitCode, 0, 'foreman ping exits 0');
  assert.equal(log.at(-1)?.Output, 'ok: the agent is alive (/var/lib/foreman/foreman.sock)\n', 'and says so in one line');
  assert.equal(await inspect(agent, '{{.HostConfig.NetworkMode}}'), 'host', "the agent is on the host's network");
  assert.match(await inspect(agent, '{{json .Mounts}}'), new RegExp(`"Name":"${project}_foreman-data"`), 'data_dir is on the project volume');

  const stopped = Date.now();
  await compose('stop', 'agent');
  t.diagnostic(`docker-compose stop took ${Date.now() - stopped} ms`);
  assert.equal(await inspect(agent, '{{.State.ExitCode}}'), '0', 'the agent stops cleanly');
});
