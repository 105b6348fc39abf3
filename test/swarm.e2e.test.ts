/**
 * The Swarm executor on a single-node swarm of the host's engine. The swarm is made here when the engine is
 * in none (`docker swarm init`) and left afterwards (`docker swarm leave --force`, and the docker_gwbridge
 * network init made), so the engine is left as it was found; an engine already in a swarm is used as it is,
 * and only this test's services and networks are removed.
 *
 * The job-flow, recovery, endings, job-control and live-logs end-to-end tests run again in a child process with
 * `core.executor = "swarm"`; the tests here check what is the Swarm executor's own.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { testJobImage } from './support/image.ts';
import { runCheck } from '../src/cli/check/check.ts';
import { exitCode, loadTestConfig, readLog, spawnStack, type Stack, startStack } from './support/agents.ts';
import { docker } from './support/containers.ts';
import { repoRoot } from './support/paths.ts';
import { job } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

interface SwarmState {
  LocalNodeState?: string;
  ControlAvailable?: boolean;
  NodeAddr?: string;
}

async function swarmState(): Promise<SwarmState> {
  return ((await docker.info()) as { Swarm?: SwarmState }).Swarm ?? {};
}

/** An address of this host for the swarm to advertise (not docker0, which has no carrier on a quiet host). */
function hostAddress(): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name === 'docker0' || name.startsWith('br-') || name.startsWith('veth')) continue;
    const a = (addrs ?? []).find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return undefined;
}

const SWARM_ENV = { FOREMAN_CORE_EXECUTOR: 'swarm' };

/** Each failed test of the child run with the lines after it that say why. */
function failures(tap: string): string {
  const lines = tap.split('\n');
  return lines
    .flatMap((line, i) => (/^\s*not ok/.test(line) ? lines.slice(i, i + 14) : []))
    .slice(0, 80)
    .join('\n');
}

describe('the Swarm executor on a single-node swarm', { timeout: 1_500_000 }, () => {
  let initialised = false;
  let hadGwBridge = true;
  let skip: string | undefined;

  before(async () => {
    await testJobImage();
    const state = await swarmState();
    if (state.LocalNodeState === 'active' && !state.ControlAvailable) {
      skip = 'the engine is a swarm worker; the Swarm executor needs a manager';
      return;
    }
    if (state.LocalNodeState !== 'active') {
      hadGwBridge = (await docker.listNetworks({ filters: { name: ['docker_gwbridge'] } })).some((n) => n.Name === 'docker_gwbridge');
      await agentRefusesWithoutSwarm();
      const address = hostAddress();
      assert.ok(address, 'an IPv4 address of this host to advertise');
      const init = spawnSync('docker', ['swarm', 'init', '--advertise-addr', address], { encoding: 'utf8' });
      assert.equal(init.status, 0, init.stderr);
      initialised = true;
    }
  });

  after(async () => {
    if (!initialised) return;
    spawnSync('docker', ['swarm', 'leave', '--force']);
    if (!hadGwBridge)
      await docker
        .getNetwork('docker_gwbridge')
        .remove()
        .catch(() => undefined);
    assert.equal((await swarmState()).LocalNodeState, 'inactive');
  });

  /** With no swarm, the agent says so in one line and exits 1 (checked before the test makes one). */
  async function agentRefusesWithoutSwarm(): Promise<void> {
    const s = await spawnStack(SWARM_ENV);
    try {
      assert.equal(await exitCode(s.agent), 1);
      const log = readLog(s.agent.logFile);
      assert.match(
        log,
        /core\.executor = \\"swarm\\" needs a swarm manager at docker\.url, but that engine is not in a swarm \(inactive\): run \\"docker swarm init\\" there/,
      );
      assert.doesNotMatch(log, /\n\s+at /, 'no stack trace');
      assert.equal(s.control.polls.length, 0, 'it never polled');
      const lines: string[] = [];
      assert.equal(await runCheck(loadTestConfig(s.env), (line) => lines.push(line)), 1);
      assert.ok(
        lines.some((l) => /^ {2}FAIL {2}core\.executor = "swarm", but the engine is not in a swarm \(inactive\)/.test(l)),
        lines.join('\n'),
      );
    } finally {
      await s.close();
    }
  }

  test('job-flow, recovery, endings, job-control and live-logs pass with core.executor = "swarm"', (t) => {
    if (skip) return t.skip(skip);
    const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
    const started = Date.now();
    const files = [
      'test/job-flow.e2e.test.ts',
      'test/recovery.e2e.test.ts',
      'test/endings.e2e.test.ts',
      'test/job-control.e2e.test.ts',
      'test/live-logs.e2e.test.ts',
    ];
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=1', ...files], {
      cwd: repoRoot,
      // A child run that hangs must fail this test: spawnSync blocks, so the describe's own timeout cannot fire.
      timeout: 1_200_000,
      killSignal: 'SIGKILL',
      env: { ...inherited, FOREMAN_TEST_ENGINE: 'swarm', FOREMAN_TEST_ENGINE_ENV: JSON.stringify(SWARM_ENV) },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const summary = (run.stdout.match(/^# (tests|pass|fail) \d+$/gm) ?? []).map((l) => l.slice(2)).join(', ');
    t.diagnostic(`on the swarm in ${Math.round((Date.now() - started) / 1000)} s: ${summary}`);
    assert.equal(run.error, undefined, `the child run: ${String(run.error)}\n${failures(run.stdout)}`);
    assert.equal(run.status, 0, failures(run.stdout));
    assert.match(run.stdout, /^# fail 0$/m);
  });

  describe("what is the Swarm executor's own", () => {
    let stack: Stack;

    before(async () => {
      if (skip) return;
      stack = await startStack({
        ...SWARM_ENV,
        FOREMAN_DOCKER_MEMORY_LIMIT: String(256 * 1024 * 1024),
        FOREMAN_DOCKER_PIDS_LIMIT: '200',
        FOREMAN_DOCKER_CAP_ADD: 'NET_BIND_SERVICE',
        FOREMAN_CORE_EXTRA_HOSTS: 'db.example.invalid:10.9.8.7,agent.example.invalid:host-gateway',
      });
    });

    after(() => stack?.close());

    test('a job is a replicated-job service on an attachable overlay, labelled, limited and hardened; it is removed when done', async (t) => {
      if (skip) return t.skip(skip);
      const { control, callbacks, running, env } = stack;
      const node = await swarmState();
      control.reply([job('swarm-1', callbacks.url(), { action: 'sleep' })]);
      const record = await waitFor('swarm-1 to run', () => {
        const r = running.store.get('swarm-1');
        return r?.state === 'running' ? r : undefined;
      });
      const service = (await docker.getService(record.containerId ?? '').inspect()) as {
        Spec: { Name: string; Labels: Record<string, string>; Mode: Record<string, unknown>; TaskTemplate: { RestartPolicy?: unknown } };
      };
      assert.equal(service.Spec.Name, record.containerName);
      assert.deepEqual(service.Spec.Mode, { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } });
      assert.equal(service.Spec.Labels['foreman.job-id'], 'swarm-1');
      assert.equal(service.Spec.Labels['foreman.agent'], running.agent.agentId);
      assert.deepEqual(service.Spec.TaskTemplate.RestartPolicy, { Condition: 'none', MaxAttempts: 0 });
      const network = (await docker.getNetwork(env.networkName).inspect()) as { Driver: string; Scope: string; Attachable: boolean };
      assert.deepEqual([network.Driver, network.Scope, network.Attachable], ['overlay', 'swarm', true]);

      const tasks = (await docker.listTasks({ filters: { service: [record.containerId ?? ''] } })) as Array<{
        Status: { ContainerStatus: { ContainerID: string } };
      }>;
      const info = await docker.getContainer(tasks[0]?.Status.ContainerStatus.ContainerID ?? '').inspect();
      assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
      assert.deepEqual(info.HostConfig.CapAdd, ['NET_BIND_SERVICE']);
      assert.equal(info.HostConfig.Memory, 256 * 1024 * 1024);
      assert.equal(info.HostConfig.PidsLimit, 200);
      assert.equal(info.HostConfig.Init, true);
      // host-gateway means the manager's node address, which the job API listens on.
      assert.deepEqual(info.HostConfig.ExtraHosts, ['db.example.invalid:10.9.8.7', `agent.example.invalid:${node.NodeAddr}`]);
      assert.ok(running.agent.jobApiUrl.startsWith(`http://${node.NodeAddr}:`), running.agent.jobApiUrl);
      assert.equal(info.Config.Labels['foreman.job-id'], 'swarm-1');
      const lines: string[] = [];
      await runCheck(loadTestConfig(env), (line) => lines.push(line));
      assert.ok(
        lines.some((l) => l === `  ok    swarm manager of 1 node; job containers reach the job API at the manager's node address ${node.NodeAddr}`),
        lines.join('\n'),
      );
      assert.ok(
        lines.some((l) => l.startsWith(`  note  network "${env.networkName}" is an overlay network`)),
        lines.join('\n'),
      );

      const endpoint = `${running.agent.jobApiUrl}/job/swarm-1?token=${record.secret}`;
      assert.equal((await fetch(endpoint, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed' } })).status, 200);
      await callbacks.waitForCompletion('swarm-1');
      await waitFor(
        'the service and its container to be removed',
        async () => {
          const services = await docker.listServices({ filters: { label: ['foreman.job-id=swarm-1'] } });
          const containers = await docker.listContainers({ all: true, filters: { label: ['foreman.job-id=swarm-1'] } });
          return services.length === 0 && containers.length === 0;
        },
        20_000,
        200,
      );
    });

    test('a failing job is reported with its exit code and last log lines; a canceled one is stopped with its grace period', async (t) => {
      if (skip) return t.skip(skip);
      const { control, callbacks } = stack;
      control.reply([job('swarm-exit', callbacks.url(), { action: 'exit', code: 7 })]);
      const ended = await callbacks.waitForCompletion('swarm-exit', 60_000);
      assert.equal(ended.headers['x-foreman-job-outcome'], 'failed');
      const report = JSON.parse(ended.body.toString()) as { exitCode?: number; logs?: string[] };
      assert.equal(report.exitCode, 7);
      assert.ok(Array.isArray(report.logs), `the failure report has no logs: ${ended.body.toString()}`);

      control.reply([job('swarm-cancel', callbacks.url(), { action: 'sleep' })]);
      await waitFor('swarm-cancel to run', () => stack.running.store.get('swarm-cancel')?.state === 'running', 60_000);
      control.replyHeaders = { 'x-foreman-cancel': 'swarm-cancel' };
      try {
        const canceled = await callbacks.waitForCompletion('swarm-cancel', 60_000);
        assert.equal(canceled.headers['x-foreman-job-outcome'], 'canceled');
        assert.match(canceled.body.toString(), /exited with code 143/);
      } finally {
        control.replyHeaders = {};
      }
    });

    test("a job no node can take (the only node drained) is start-failed with swarm's reason, at once", async (t) => {
      if (skip) return t.skip(skip);
      const { control, callbacks } = stack;
      const nodeId = ((await docker.info()) as { Swarm?: { NodeID?: string } }).Swarm?.NodeID ?? '';
      const node = docker.getNode(nodeId);
      // The manager bumps the node's version on its own (status, heartbeats), so an update
      // can lose the race with "update out of sequence": read the version again and retry.
      const setAvailability = async (availability: string): Promise<void> => {
        await waitFor(
          `the node to be ${availability}`,
          async () => {
            const current = (await node.inspect()) as { Version: { Index: number }; Spec: Record<string, unknown> };
            if (current.Spec['Availability'] === availability) return true;
            try {
              await node.update({ version: current.Version.Index, ...current.Spec, Availability: availability });
            } catch (err) {
              if (!/out of sequence/.test(String(err))) throw err;
            }
            return false;
          },
          10_000,
          100,
        );
      };
      await setAvailability('drain');
      try {
        const asked = Date.now();
        control.reply([job('swarm-nowhere', callbacks.url(), { values: [1] })]);
        const ended = await callbacks.waitForCompletion('swarm-nowhere', 60_000);
        assert.equal(ended.headers['x-foreman-job-outcome'], 'start-failed');
        assert.match(ended.body.toString(), /swarm cannot place the job: no suitable node/);
        t.diagnostic(`reported ${Date.now() - asked} ms after the job was handed out`);
        await waitFor(
          'its service to be removed',
          async () => (await docker.listServices({ filters: { label: ['foreman.job-id=swarm-nowhere'] } })).length === 0,
          20_000,
          200,
        );
      } finally {
        await setAvailability('active');
      }
    });

    test('an image the engine does not have is pull-failed and no service is made', async (t) => {
      if (skip) return t.skip(skip);
      const { control, callbacks } = stack;
      control.reply([job('swarm-noimage', callbacks.url(), {}, { image: '127.0.0.1:9/foreman-no-such/image:1' })]);
      const ended = await callbacks.waitForCompletion('swarm-noimage', 90_000);
      assert.equal(ended.headers['x-foreman-job-outcome'], 'pull-failed');
      assert.equal((await docker.listServices({ filters: { label: ['foreman.job-id=swarm-noimage'] } })).length, 0);
    });
  });
});
