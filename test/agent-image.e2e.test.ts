/**
 * The agent's own image (npm run build:image), run the way docs/operations.md's "Container image" shows: as PID 1
 * of its container, on the host's network, the engine's socket mounted and data_dir on a named volume.
 * Its container is restarted (SIGTERM) and crashed (SIGKILL) mid-job; the job must be re-adopted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { NODE_VERSION_LABEL, buildAgentImage } from '../scripts/build-image.ts';
import { V8_FLAGS } from '../src/cli/main.ts';
import { pinnedNodeVersion } from '../scripts/runtime.mjs';
import { testJobImage } from './support/image.ts';
import { testEnv, type TestEnv } from './support/agents.ts';
import { cleanup, containersOf, type EngineEvent, testEngine, watchContainerEvents } from './support/containers.ts';
import { freePort } from './support/ports.ts';
import { assertInOrder, job, seqs } from './support/reports.ts';
import { CallbackReceiver, FakeControlServer, type RecordedRequest } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

const execFileAsync = promisify(execFile);
const DOCKER = process.env.DOCKER_CLI ?? 'docker';
const SOCKET = '/var/run/docker.sock';
// The agent container mounts the host's engine socket; another engine (Podman, a TLS engine) is not what it would mount.
const otherEngine =
  testEngine ?? (process.env.FOREMAN_DOCKER_URL && process.env.FOREMAN_DOCKER_URL !== `unix://${SOCKET}` ? process.env.FOREMAN_DOCKER_URL : undefined);
const skip = otherEngine ? `runs against the host's Docker engine only (not ${otherEngine})` : false;

async function docker(...args: string[]): Promise<string> {
  return (await execFileAsync(DOCKER, args, { maxBuffer: 64 * 1024 * 1024 })).stdout.trim();
}

/** The longest pause between consecutive polls: how long no agent was polling. */
function longestPollGap(polls: RecordedRequest[]): number {
  let gap = 0;
  for (let i = 1; i < polls.length; i++) gap = Math.max(gap, (polls[i]?.at ?? 0) - (polls[i - 1]?.at ?? 0));
  return gap;
}

describe('agent container image', { skip }, () => {
  const suffix = randomUUID().slice(0, 8);
  const name = `foreman-agent-image-test-${suffix}`;
  const volume = `foreman-agent-image-test-${suffix}`;
  let image: string;
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  let env: TestEnv | undefined;
  let agentId: string | undefined;

  before(async () => {
    const started = Date.now();
    image = (await buildAgentImage()).tag;
    await testJobImage();
    process.stderr.write(`# agent image ${image} ready in ${Date.now() - started} ms\n`);
    control = await new FakeControlServer().start();
    callbacks = await new CallbackReceiver().start();
  });

  after(async () => {
    await docker('rm', '--force', '--volumes', name).catch(() => undefined);
    await docker('volume', 'rm', '--force', volume).catch(() => undefined);
    await control?.close();
    await callbacks?.stop();
    if (env) await cleanup(env, agentId);
  });

  const logs = async (): Promise<string> => {
    const { stdout, stderr } = await execFileAsync(DOCKER, ['logs', name], { maxBuffer: 64 * 1024 * 1024 }).catch(() => ({ stdout: '', stderr: '' }));
    return `${stdout}${stderr}`;
  };
  const pollsSince = (at: number): number => control.polls.filter((p) => p.at >= at).length;

  test('--version runs in the image, on the pinned Node', async () => {
    const node = `v${pinnedNodeVersion()}`;
    assert.equal(await docker('run', '--rm', image, '--version'), `foreman ${image.split(':')[1] ?? ''} (node ${node})`, 'foreman and Node versions');
    assert.equal(
      await docker('image', 'inspect', '--format', `{{index .Config.Labels "${NODE_VERSION_LABEL}"}}`, image),
      node,
      'the image says which Node it carries',
    );
  });

  test('runs as PID 1, re-adopts its job across a restart and a crash, and stops at once', { timeout: 180_000 }, async () => {
    const jobId = `agent-image-${suffix}`;
    const t = testEnv(control.url, {
      // Fixed: the re-adopted container keeps the job API URL it was started with.
      FOREMAN_CORE_PORT: String(await freePort()),
      FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000',
      // `docker restart` sends SIGTERM: leave the job running for the agent that comes back.
      FOREMAN_CORE_DETACH_ON_TERMINATE: 'true',
    });
    env = t;
    // data_dir and docker.url come from the image's defaults: /var/lib/foreman and the mounted socket.
    const agentEnv = Object.entries(t.env).filter(([key]) => key !== 'FOREMAN_CORE_DATA_DIR' && key !== 'FOREMAN_DOCKER_URL');
    await docker('volume', 'create', volume);

    const events: EngineEvent[] = [];
    const watch = await watchContainerEvents(['create', 'start'], `foreman.job-id=${jobId}`, (event) => events.push(event));
    try {
      const runAt = Date.now();
      await docker(
        'run',
        '--detach',
        '--name',
        name,
        '--network',
        'host',
        '--volume',
        `${SOCKET}:${SOCKET}`,
        '--volume',
        `${volume}:/var/lib/foreman`,
        ...agentEnv.flatMap(([key, value]) => ['--env', `${key}=${value}`]),
        image,
      );
      await waitFor('the agent in the container to poll', () => pollsSince(runAt) > 0, 30_000);
      const startMs = (control.polls.find((p) => p.at >= runAt)?.at ?? 0) - runAt;

      // The image's HEALTHCHECK is `foreman ping`, over the agent's socket in data_dir; run here as Docker runs it.
      const check = JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config.Healthcheck.Test}}', image)) as string[];
      assert.deepEqual(check, ['CMD', '/usr/local/bin/node', '--max-semi-space-size=1', '/app/bin/foreman.js', 'ping'], 'the HEALTHCHECK pings');
      assert.equal(await docker('exec', name, ...check.slice(1)), 'ok: the agent is alive (/var/lib/foreman/foreman.sock)', 'and passes');

      // PID 1 of its container is the agent itself: no shell, no init in between.
      const cmdline = await docker('exec', name, '/usr/local/bin/node', '-e', 'process.stdout.write(require("fs").readFileSync("/proc/1/cmdline", "utf8"))');
      // With the agent's V8 flags on the command line, where Node 24 still applies them.
      assert.deepEqual(
        cmdline.split('\0').filter(Boolean),
        ['/usr/local/bin/node', '--max-semi-space-size=1', ...V8_FLAGS, '/app/bin/foreman.js', 'run'],
        "PID 1's command line",
      );

      control.reply([job(jobId, callbacks.url(), { action: 'progress', steps: 24, delayMs: 500, values: [1, 2] })]);
      const first = await waitFor('the first update', () => callbacks.for(jobId)[0], 30_000);
      agentId = String(first.headers['x-foreman-agent-id']);

      // A restart (SIGTERM, then a new PID 1) and a crash (SIGKILL, then start) of the agent's container.
      const downtimes: Record<string, number> = {};
      for (const how of ['restart', 'kill'] as const) {
        const updatesBefore = callbacks.for(jobId).length;
        assert.equal(callbacks.completion(jobId), undefined, `the job ended before the ${how}`);
        const at = Date.now();
        if (how === 'restart') {
          await docker('restart', '--time', '30', name);
        } else {
          await docker('kill', name);
          // `docker kill` returns once the signal is sent; `docker wait` once PID 1 is gone, with its status.
          assert.equal(await docker('wait', name), '137');
          await docker('start', name);
        }
        const back = Date.now();
        await waitFor(`a poll after the ${how}`, () => pollsSince(back) > 0, 30_000);
        downtimes[how] = longestPollGap(control.polls.filter((p) => p.at >= at - 1000 && p.at <= (control.polls.find((q) => q.at >= back)?.at ?? Infinity)));
        await waitFor(`an update after the ${how}`, () => callbacks.for(jobId).length > updatesBefore, 30_000);
      }
      const output = await logs();
      assert.match(output, /leaving running jobs to the next agent/, 'the restart detached the job');
      assert.doesNotMatch(output, /stopping job containers/);

      const done = await callbacks.waitForCompletion(jobId, 60_000);
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', (await logs()).slice(-3000));
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 3 });
      const updates = callbacks.for(jobId);
      assertInOrder(updates);
      assert.equal(new Set(seqs(updates)).size, 25, 'twenty-four running updates and one completed');
      assert.equal(updates.filter((r) => r.headers['x-foreman-job-status'] === 'completed').length, 1, 'one completion');
      assert.deepEqual([...new Set(updates.map((r) => r.headers['x-foreman-agent-id']))], [agentId], 'one agent id, kept on the volume');
      await waitFor('the job container removed', async () => (await containersOf(agentId)).length === 0, 30_000);
      const count = (action: string): number => events.filter((e) => e.Action === action).length;
      assert.equal(count('create'), 1, 'the job container was created once');
      assert.equal(count('start'), 1, 'the job container was started once');

      // docker stop: SIGTERM to PID 1, which the agent handles; nothing near the kill timeout.
      const stopAt = Date.now();
      await docker('stop', '--time', '30', name);
      const stopMs = Date.now() - stopAt;
      assert.equal(await docker('inspect', '--format', '{{.State.ExitCode}}', name), '0', (await logs()).slice(-3000));
      assert.ok(stopMs < 5000, `docker stop took ${stopMs} ms`);
      process.stderr.write(
        `# agent container: first poll ${startMs} ms after docker run; no poll for ${downtimes.restart} ms across docker restart, ${downtimes.kill} ms across docker kill + start; docker stop ${stopMs} ms\n`,
      );
    } finally {
      watch.stop();
    }
  });
});
