/**
 * Private registries against a real one: Debian's docker-registry (distribution 2.8) with htpasswd auth on
 * 127.0.0.1, which the engine talks to over plain HTTP. The test job image is pushed to it and its local tag
 * dropped, so the real agent must pull it: with the right credentials from `[[docker.registries]]` (a
 * password_file) or from `~/.docker/config.json`, and not with a wrong password, which is reported
 * `pull-failed`. No password may show up in the agent's output or in a report.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testJobImage } from './support/image.ts';
import { readLog, spawnAgent, type SpawnedAgent, spawnStack, type TestEnv } from './support/agents.ts';
import { docker } from './support/containers.ts';
import { repoRoot } from './support/paths.ts';
import { job, reportOf } from './support/reports.ts';
import type { RecordedRequest } from './support/servers.ts';
import { follow, Registry } from './support/registry.ts';

const missing = ['docker-registry', 'htpasswd'].filter((name) => spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0);
const skip = missing.length > 0 ? `${missing.join(' and ')} not installed (apt-get install docker-registry apache2-utils; .ci/run does)` : false;

const USER = 'foreman-ci';
const RIGHT = `right-${randomBytes(8).toString('hex')}`;
const WRONG = `wrong-${randomBytes(8).toString('hex')}`;

/** What one agent run left behind: the job's final report, the agent's whole output and the registry's log lines of the run. */
interface Run {
  readonly report: RecordedRequest;
  readonly everything: RecordedRequest[];
  readonly agentLog: string;
  readonly registryLog: string;
  readonly tookMs: number;
}

/** Starts `foreman run` with the config file given, the rest of its settings from FOREMAN_* variables. */
function spawnWithConfig(t: TestEnv, configFile: string): SpawnedAgent {
  const logFile = join(t.dir, 'agent-process.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [join(repoRoot, 'bin/foreman.js'), 'run', '--config', configFile], {
    env: { PATH: process.env.PATH ?? '', HOME: t.dir, ...t.env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, logFile, exited };
}

describe('private registry', { skip }, () => {
  let registry: Registry;
  let image = '';

  /** Drops the local tag, so only a pull brings the image back. */
  const forgetLocal = (): Promise<unknown> =>
    docker
      .getImage(image)
      .remove()
      .catch(() => undefined);

  before(async () => {
    const local = await testJobImage();
    // Assigned before it starts, so that `after` stops a registry whose start failed half-way.
    registry = new Registry({ user: USER, password: RIGHT });
    await registry.start();
    const tag = local.slice(local.lastIndexOf(':') + 1);
    const repo = `127.0.0.1:${registry.port}/foreman-test/job`;
    image = `${repo}:${tag}`;
    await docker.getImage(local).tag({ repo, tag });
    const pushStarted = Date.now();
    await follow(await docker.getImage(image).push({ authconfig: { username: USER, password: RIGHT, serveraddress: `127.0.0.1:${registry.port}` } }));
    console.log(`pushed ${image} in ${Date.now() - pushStarted} ms`);
    await forgetLocal();
  });

  after(async () => {
    if (image) await forgetLocal();
    await registry?.stop();
  });

  /** Offers one job using the registry's image to a fresh agent that `start` spawns, and collects what it did. */
  async function offer(id: string, start: (t: TestEnv) => SpawnedAgent): Promise<Run> {
    await forgetLocal();
    await assert.rejects(docker.getImage(image).inspect(), 'the image must not be local before the run');
    const s = await spawnStack({}, { spawn: start });
    const { control, callbacks } = s;
    try {
      const mark = registry.log.length;
      const offeredAt = Date.now();
      control.reply([job(id, callbacks.url(), { values: [20, 22] }, { image })]);
      const report = await callbacks.waitForCompletion(id, 60_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${readLog(s.agent.logFile).slice(-3000)}`);
      });
      await s.stop();
      return {
        report,
        everything: [...callbacks.requests],
        agentLog: readLog(s.agent.logFile),
        registryLog: registry.log.slice(mark),
        tookMs: report.at - offeredAt,
      };
    } finally {
      await s.close({ signal: 'SIGKILL' });
    }
  }

  function assertNoPassword(run: Run, id: string): void {
    assert.match(run.agentLog, new RegExp(`"jobId":"${id}"`), 'the agent logged the job');
    const reports = run.everything.map((r) => JSON.stringify(r.headers) + r.body.toString()).join('\n');
    for (const password of [RIGHT, WRONG]) {
      assert.ok(!run.agentLog.includes(password), `a password is in the agent's output:\n${run.agentLog}`);
      assert.ok(!reports.includes(password), `a password is in a report:\n${reports}`);
    }
  }

  const authorizedPull = (): RegExp => new RegExp(`msg=GetImageManifest auth\\.user\\.name=${USER} .*http\\.request\\.uri="?/v2/foreman-test/job/manifests/`);

  test('[[docker.registries]] with the right password (password_file): the image is pulled and the job completes', async (t) => {
    const run = await offer('registry-file-1', (env) => {
      writeFileSync(join(env.dir, 'registry-password'), `${RIGHT}\n`);
      const configFile = join(env.dir, 'registry.toml');
      writeFileSync(configFile, `[[docker.registries]]\nhost = "127.0.0.1:${registry.port}"\nusername = "${USER}"\npassword_file = "registry-password"\n`);
      return spawnWithConfig(env, configFile);
    });
    t.diagnostic(`pulled and completed ${run.tookMs} ms after the job was offered`);
    assert.equal(run.report.headers['x-foreman-job-outcome'], 'succeeded', run.agentLog.slice(-3000));
    assert.deepEqual(JSON.parse(run.report.body.toString()), { result: 42 });
    assert.match(run.registryLog, authorizedPull(), 'the registry saw the pull, authenticated as the user');
    await docker.getImage(image).inspect();
    assertNoPassword(run, 'registry-file-1');
  });

  test("a wrong password (set from the environment): reported pull-failed with the engine's reason, and no password anywhere", async (t) => {
    const run = await offer('registry-wrong-1', (env) =>
      spawnAgent(env, {
        FOREMAN_DOCKER_REGISTRIES_0_HOST: `127.0.0.1:${registry.port}`,
        FOREMAN_DOCKER_REGISTRIES_0_USERNAME: USER,
        FOREMAN_DOCKER_REGISTRIES_0_PASSWORD: WRONG,
      }),
    );
    const report = reportOf(run.report);
    t.diagnostic(`reported ${run.tookMs} ms after the job was offered: ${run.report.body.toString()}`);
    assert.equal(run.report.headers['x-foreman-job-outcome'], 'pull-failed', run.agentLog.slice(-3000));
    assert.equal(report.reason, 'pull');
    assert.equal(report.message, `pulling image ${image} failed: unauthorized: authentication required`);
    assert.match(run.registryLog, new RegExp(`error authenticating user \\\\"${USER}\\\\"`), 'the registry refused the user');
    await assert.rejects(docker.getImage(image).inspect());
    assert.match(run.agentLog, /unauthorized: authentication required/, "the agent logged the engine's reason");
    assertNoPassword(run, 'registry-wrong-1');
  });

  test('no registries configured: the credentials in ~/.docker/config.json are used', async (t) => {
    const run = await offer('registry-home-1', (env) => {
      mkdirSync(join(env.dir, '.docker'));
      const auth = Buffer.from(`${USER}:${RIGHT}`).toString('base64');
      writeFileSync(join(env.dir, '.docker', 'config.json'), JSON.stringify({ auths: { [`127.0.0.1:${registry.port}`]: { auth } } }));
      return spawnAgent(env);
    });
    t.diagnostic(`pulled and completed ${run.tookMs} ms after the job was offered`);
    assert.equal(run.report.headers['x-foreman-job-outcome'], 'succeeded', run.agentLog.slice(-3000));
    assert.match(run.registryLog, authorizedPull());
    await docker.getImage(image).inspect();
    assertNoPassword(run, 'registry-home-1');
  });
});
