/** The seed's sequence, end to end, against the real engine: poll → container → job API → callback → stop → remove. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { testJobImage } from './support/image.ts';
import { type InProcessAgent, type Stack, startStack, type TestEnv } from './support/agents.ts';
import { containersOf, docker, jobContainer, testEngine, watchContainerEvents } from './support/containers.ts';
import { job } from './support/reports.ts';
import { CallbackReceiver, FakeControlServer } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

describe('job flow', () => {
  let stack: Stack;
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  let env: TestEnv;
  let running: InProcessAgent;

  before(async () => {
    await testJobImage();
    stack = await startStack({
      FOREMAN_CORE_MAX_CONCURRENT_JOBS: '2',
      FOREMAN_CORE_LABELS_GPU: 'true',
      FOREMAN_CORE_ENV_SHARED: 'from-core',
      FOREMAN_CORE_EXTRA_HOSTS: 'db.example.invalid:10.9.8.7',
    });
    ({ control, callbacks, env, running } = stack);
  });

  after(() => stack?.close());

  test('a job runs, its result reaches the callback, and its container is stopped and removed', async () => {
    control.reply([job('sum-1', callbacks.url(), { values: [1, 2, 3, 4] })]);
    const done = await callbacks.waitForCompletion('sum-1');
    assert.equal(done.method, 'PUT');
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 10 });
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
    assert.equal(done.headers['x-foreman-agent-id'], running.agent.agentId);
    const usage = JSON.parse(String(done.headers['x-foreman-usage'])) as { cpuSeconds: number; memoryPeakBytes: number; wallMs: number };
    assert.ok(usage.cpuSeconds > 0 && usage.memoryPeakBytes > 0 && usage.wallMs > 0, `what its container used: ${JSON.stringify(usage)}`);
    assert.match(String(done.headers['user-agent']), /^foreman\/test \(linux, \w+\)$/);

    const poll = control.polls[0];
    assert.ok(poll, 'the agent polled');
    assert.equal(poll.headers.authorization, 'Bearer test-token');
    assert.match(String(poll.headers['user-agent']), /^foreman\/test \(linux, \w+\)$/);
    assert.deepEqual(String(poll.headers['x-foreman-labels']).split(',').sort(), ['gpu=true', 'queue=test']);
    assert.equal(poll.headers['x-foreman-capacity'], '2');
    assert.equal(poll.headers['x-foreman-agent-id'], running.agent.agentId);

    await waitFor('the container to be removed', async () => (await containersOf(running.agent.agentId)).length === 0);
    // An engine may list the container as gone a moment before the agent's remove call returns.
    await waitFor('the job to be recorded removed', () => running.store.get('sum-1')?.state === 'removed', 5000);
  });

  test('the container gets the command, env (job, then core.env, then endpoints), labels, network and extra hosts', async () => {
    control.reply([
      job(
        'env-1',
        callbacks.url(),
        { action: 'sleep' },
        {
          env: { SHARED: 'from-job', ONLY_JOB: 'yes', FOREMAN_GET_JOB_ENDPOINT: 'spoofed' },
          command: ['/usr/local/bin/node', '/job.mjs', 'extra-arg'],
        },
      ),
    ]);
    const record = await waitFor('env-1 to run', () => {
      const r = running.store.get('env-1');
      return r?.state === 'running' ? r : undefined;
    });
    const info = await (await jobContainer(record.containerId)).inspect();
    const envOf = (name: string) => info.Config.Env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
    assert.equal(envOf('SHARED'), 'from-core');
    assert.equal(envOf('ONLY_JOB'), 'yes');
    const endpoint = `${running.agent.jobApiUrl}/job/env-1?token=${record.secret}`;
    assert.equal(envOf('FOREMAN_GET_JOB_ENDPOINT'), endpoint);
    assert.equal(envOf('FOREMAN_PUT_JOB_ENDPOINT'), endpoint);
    assert.deepEqual(info.Config.Cmd, ['/usr/local/bin/node', '/job.mjs', 'extra-arg']);
    assert.equal(info.Config.Labels['foreman.job-id'], 'env-1');
    assert.equal(info.Config.Labels['foreman.agent'], running.agent.agentId);
    assert.equal(info.Config.Labels['foreman.managed'], 'true');
    assert.ok(Object.keys(info.NetworkSettings.Networks).includes(env.networkName), JSON.stringify(Object.keys(info.NetworkSettings.Networks)));
    assert.deepEqual(info.HostConfig.ExtraHosts, ['db.example.invalid:10.9.8.7']);
    assert.equal(info.HostConfig.Init, true);
    assert.equal((await fetch(endpoint, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed' } })).status, 200);
    await callbacks.waitForCompletion('env-1');
  });

  test('a single job object and a 204 reply are both understood', async () => {
    control.reply({ status: 204 }, job('object-1', callbacks.url(), { values: [5] }), { status: 204 });
    const done = await callbacks.waitForCompletion('object-1');
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 5 });
  });

  test('container headers and body are forwarded byte for byte, without hop-by-hop headers', async () => {
    const payload = '{"weird":  "spacing",\n "unicode": "ünïcødé ✓"}';
    control.reply([
      job('raw-1', callbacks.url('raw/target?x=1'), {
        action: 'raw',
        headers: {
          'x-foreman-job-status': 'completed',
          'x-foreman-job-progress': '0.75',
          'content-type': 'application/vnd.test+json; charset=utf-8',
          'x-custom-header': 'Custom Value',
          'user-agent': 'job-container/1.0',
          connection: 'keep-alive',
          'keep-alive': 'timeout=5',
        },
        payload,
      }),
    ]);
    const done = await callbacks.waitForCompletion('raw-1');
    assert.equal(done.url, '/raw/target?x=1');
    assert.deepEqual(done.body, Buffer.from(payload, 'utf8'));
    assert.equal(done.headers['content-type'], 'application/vnd.test+json; charset=utf-8');
    assert.equal(done.headers['x-custom-header'], 'Custom Value');
    assert.equal(done.headers['x-foreman-job-progress'], '0.75');
    assert.equal(done.headers['keep-alive'], undefined);
    assert.match(String(done.headers['user-agent']), /^foreman\//);
    assert.ok(done.headers['x-foreman-delivery-id'], 'the callback carries x-foreman-delivery-id');
    assert.equal(done.headers['x-foreman-delivery-seq'], '1');
  });

  test('progress updates are forwarded in order', async () => {
    control.reply([job('progress-1', callbacks.url(), { action: 'progress', steps: 4, delayMs: 50, values: [2, 2] })]);
    await callbacks.waitForCompletion('progress-1');
    const updates = callbacks.for('progress-1');
    assert.deepEqual(
      updates.map((r) => [r.headers['x-foreman-job-status'], r.headers['x-foreman-job-progress'], r.headers['x-foreman-delivery-seq']]),
      [
        ['running', '0.25', '1'],
        ['running', '0.5', '2'],
        ['running', '0.75', '3'],
        ['running', '1', '4'],
        ['completed', '1', '5'],
      ],
    );
  });

  test('one container cannot read or write another job', async () => {
    control.reply([job('victim-1', callbacks.url(), { action: 'sleep', ms: 20_000 })]);
    await waitFor('victim to start', () => running.store.get('victim-1')?.state === 'running');
    const base = running.agent.jobApiUrl;
    const victim = encodeURIComponent('victim-1');
    control.reply([
      job('prober-1', callbacks.url(), {
        action: 'probe',
        urls: [`${base}/job/${victim}`, `${base}/job/${victim}?token=guess`, `${base}/job/${victim}?token=`, `${base}/job/prober-1`],
      }),
    ]);
    const done = await callbacks.waitForCompletion('prober-1');
    const probe = (JSON.parse(done.body.toString()) as { probe: Array<{ status: number }> }).probe;
    assert.deepEqual(
      probe.map((p) => p.status),
      [404, 404, 404, 404],
    );
    assert.equal(callbacks.for('victim-1').length, 0);
    const victimRecord = running.store.get('victim-1');
    assert.equal(victimRecord?.state, 'running');
    // Let the victim finish so it frees its slot for the tests below.
    const finish = await fetch(`${base}/job/${victim}?token=${victimRecord?.secret}`, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed' } });
    assert.equal(finish.status, 200);
  });

  test('the job API answers each misuse with the documented 4xx', async () => {
    control.reply([job('api-1', callbacks.url(), { action: 'sleep', ms: 20_000 })]);
    const record = await waitFor('api-1 to run', () => {
      const r = running.store.get('api-1');
      return r?.state === 'running' ? r : undefined;
    });
    const url = `${running.agent.jobApiUrl}/job/api-1?token=${record.secret}`;
    const put = (headers: Record<string, string>, body = '') => fetch(url, { method: 'PUT', headers, body });

    assert.equal((await fetch(`${running.agent.jobApiUrl}/job/api-1?token=wrong`)).status, 404);
    assert.equal((await fetch(`${running.agent.jobApiUrl}/job/nope?token=${record.secret}`)).status, 404);
    assert.equal((await put({})).status, 400);
    assert.equal((await put({ 'x-foreman-job-status': 'finished' })).status, 400);
    assert.equal((await put({ 'x-foreman-job-status': 'running', 'x-foreman-job-progress': 'half' })).status, 400);
    assert.equal((await put({ 'x-foreman-job-status': 'running' }, 'x'.repeat(11 * 1024 * 1024))).status, 413);
    const get = await fetch(url);
    assert.deepEqual(await get.json(), { id: 'api-1', body: { action: 'sleep', ms: 20_000 } });
    assert.equal((await put({ 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5' })).status, 200);
    assert.equal((await put({ 'x-foreman-job-status': 'completed' }, '{"ok":true}')).status, 200);
    for (const again of [() => put({ 'x-foreman-job-status': 'running' }), () => put({ 'x-foreman-job-status': 'completed' }), () => fetch(url)]) {
      const res = await again();
      assert.equal(res.status, 409);
      assert.match(((await res.json()) as { error: string }).error, /already ended/);
    }
    await callbacks.waitForCompletion('api-1');
    assert.equal(callbacks.for('api-1').length, 2);
  });

  test('never more than max_concurrent_jobs containers run when 3N jobs arrive', async () => {
    let peak = 0;
    const started = new Set<string>();
    const events = await watchContainerEvents(['start', 'die'], `foreman.agent=${running.agent.agentId}`, (event) => {
      const id = event.Actor.ID ?? event.id;
      if (event.Action === 'start') started.add(id);
      else if (!started.delete(id)) return;
      peak = Math.max(peak, started.size);
    });
    const ids = Array.from({ length: 6 }, (_, i) => `burst-${i}`);
    try {
      control.reply(ids.map((id) => job(id, callbacks.url(), { action: 'progress', steps: 2, delayMs: 150, values: [1] })));
      for (const id of ids) await callbacks.waitForCompletion(id, 60_000);
    } finally {
      events.stop();
    }
    assert.ok(peak >= 1, 'container starts were seen');
    assert.equal(peak, 2, `peak concurrency ${peak}, expected exactly max_concurrent_jobs=2`);
    const capacities = control.polls.map((p) => Number(p.headers['x-foreman-capacity']));
    assert.ok(
      capacities.every((c) => c >= 0 && c <= 2),
      `capacities offered outside 0..2: ${capacities.join(',')}`,
    );
  });
});

/**
 * The address host-gateway means, found the way the agent finds it (src/agent/listen.ts): the default bridge's
 * gateway from the engine, or, when the engine reports none (a freshly started docker.io 20.10 gives only the
 * subnet), docker0's address from the kernel. Not from Node's interface list: docker0 is missing there while it
 * has no carrier. On a swarm host-gateway means the manager's node address, which containers on every node reach.
 */
async function hostGatewayAddress(): Promise<string | undefined> {
  if (testEngine === 'swarm') return ((await docker.info()) as { Swarm?: { NodeAddr?: string } }).Swarm?.NodeAddr;
  const bridge = (await docker.getNetwork('bridge').inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
  const fromEngine = bridge.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
  if (fromEngine) return fromEngine;
  const { stdout } = await promisify(execFile)('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0'], { timeout: 2000 });
  return /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(stdout)?.[1];
}

// Podman has no host-gateway (it adds host.containers.internal itself); see docs/operations.md's Podman section.
const noHostGateway = testEngine === 'podman' ? 'Podman does not support host-gateway' : false;

describe("the seed's development setup: hostname host.docker.internal with host-gateway", { skip: noHostGateway }, () => {
  test('containers reach the agent through host.docker.internal, which listens on the default bridge gateway only', async () => {
    await testJobImage();
    const stack = await startStack({
      FOREMAN_CORE_HOSTNAME: 'host.docker.internal',
      FOREMAN_CORE_EXTRA_HOSTS: 'host.docker.internal:host-gateway',
    });
    const { control, callbacks, running } = stack;
    try {
      assert.match(running.agent.jobApiUrl, /^http:\/\/host\.docker\.internal:\d+$/);
      const gateway = await hostGatewayAddress();
      assert.ok(gateway, 'the engine or the kernel names the address host-gateway means');
      const listening = readFileSync(running.logFile, 'utf8')
        .split('\n')
        .find((l) => l.includes('job API listening'));
      assert.match(listening ?? '', new RegExp(`"listen":"${gateway.replaceAll('.', '\\.')}:\\d+"`));
      control.reply([job('seed-dev-1', callbacks.url(), { values: [20, 22] })]);
      const done = await callbacks.waitForCompletion('seed-dev-1');
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 42 });
    } finally {
      await stack.close();
    }
  });
});
