/**
 * Containers safe by default (issue 11), on the real engine: what a job container may do is read from
 * inside it (the test image's `self` action: /proc/self/status, pids.max, writes to / and /tmp), and
 * what the engine was asked for from its inspect.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { runCheck } from '../src/cli/check/check.ts';
import { testJobImage } from './support/image.ts';
import { exitCode, type InProcessAgent, loadTestConfig, readLog, spawnStack, type Stack, startAgent, startStack, testEnv } from './support/agents.ts';
import { cleanup, docker, watchContainerEvents } from './support/containers.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type EndingReport, job, reportOf } from './support/reports.ts';
import { CallbackReceiver, FakeControlServer } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

const MiB = 1024 * 1024;
/** Stopped containers stay a minute, so each test can inspect what its job ran with. */
const KEEP_CONTAINERS = { FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '60000' };

interface SelfReport {
  status: Record<'NoNewPrivs' | 'CapEff' | 'CapPrm' | 'CapBnd' | 'Uid' | 'Gid', string>;
  pidsMax: string | null;
  rootWritable: boolean;
  rootError?: string;
  tmpWritable: boolean;
  tmpError?: string;
  reach: Array<{ url: string; status: number; error?: string }>;
}

/** The parts of a stack a job needs: its own in-process agent, control server and callback receiver. */
type Parts = Pick<Stack, 'control' | 'callbacks' | 'running'>;

/** Runs the `self` action and returns what the container saw and what the engine was asked for. */
async function selfOf(parts: Parts, id: string, extra: Record<string, unknown> = {}, body: Record<string, unknown> = {}) {
  parts.control.reply([job(id, parts.callbacks.url(), { action: 'self', ...body }, extra)]);
  const done = await parts.callbacks.waitForCompletion(id);
  assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', done.body.toString());
  const containerId = parts.running.store.get(id)?.containerId;
  assert.ok(containerId, `${id} has a container`);
  return { report: JSON.parse(done.body.toString()) as SelfReport, info: await docker.getContainer(containerId).inspect() };
}

/** Sends a job that must be refused: reported `invalid`, and no container is ever created for it. */
async function expectInvalid(parts: Parts, id: string, extra: Record<string, unknown>): Promise<EndingReport> {
  const creates: string[] = [];
  const events = await watchContainerEvents(['create'], `foreman.job-id=${id}`, (event) => creates.push(event.id));
  try {
    parts.control.reply([job(id, parts.callbacks.url(), { values: [1] }, extra)]);
    const done = await parts.callbacks.waitForCompletion(id);
    assert.equal(done.headers['x-foreman-job-outcome'], 'invalid');
    const report = reportOf(done);
    assert.equal(report.outcome, 'invalid');
    assert.equal(report.reason, 'validation');
    // A create would have come before the report; give its event a moment to arrive anyway.
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(creates, [], 'no container was created');
    assert.equal(parts.running.store.get(id)?.state, 'removed');
    return report;
  } finally {
    events.stop();
  }
}

/** A job that serves HTTP on port 8080 until stopped; resolves with its container's address on the job network. */
async function serve(parts: Parts, id: string, network: string): Promise<string> {
  parts.control.reply([job(id, parts.callbacks.url(), { action: 'serve', port: 8080 })]);
  await waitFor(`${id} to listen`, () => parts.callbacks.for(id).some((r) => r.headers['x-foreman-job-status'] === 'running'));
  const containerId = parts.running.store.get(id)?.containerId ?? '';
  const ip = (await docker.getContainer(containerId).inspect()).NetworkSettings.Networks[network]?.IPAddress;
  assert.ok(ip, `${id} has an address on ${network}`);
  // The host reaches it: a failed probe from another job is the network's doing, not a server that is not up.
  assert.equal(await (await fetch(`http://${ip}:8080/`)).text(), 'serving');
  return `http://${ip}:8080/`;
}

before(() => testJobImage());

describe('defaults', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack(KEEP_CONTAINERS);
  });
  after(() => stack?.close());

  test('a job runs with no capabilities, no-new-privileges, the image user, at most 1024 processes, and a writable root', async (t: TestContext) => {
    const { report, info } = await selfOf(stack, 'self-default');
    t.diagnostic(`inside: ${JSON.stringify(report.status)} pids.max ${report.pidsMax}`);
    assert.equal(report.status.NoNewPrivs, '1');
    assert.equal(report.status.CapEff, '0000000000000000');
    assert.equal(report.status.CapPrm, '0000000000000000');
    assert.equal(report.status.CapBnd, '0000000000000000');
    assert.equal(report.status.Uid, '0 0 0 0', "the test image's user is root");
    assert.equal(report.pidsMax, '1024');
    assert.equal(report.rootWritable, true);

    const host = info.HostConfig;
    assert.deepEqual(host.CapDrop, ['ALL']);
    assert.equal(host.CapAdd ?? null, null);
    assert.deepEqual(host.SecurityOpt, ['no-new-privileges']);
    assert.equal(host.PidsLimit, 1024);
    assert.equal(host.NanoCpus, 0);
    assert.equal(host.Memory, 0);
    assert.equal(host.ReadonlyRootfs, false);
    assert.equal(info.Config.User, '');

    const network = await docker.getNetwork(stack.env.networkName).inspect();
    assert.equal((network as { Options: Record<string, string> }).Options['com.docker.network.bridge.enable_icc'], 'false');
  });

  test("a job container cannot reach another job's container, and still reaches the job API", async (t: TestContext) => {
    const target = await serve(stack, 'icc-server', stack.env.networkName);
    const jobApi = `${stack.running.agent.jobApiUrl}/job/nobody`;
    const { report } = await selfOf(stack, 'icc-prober', {}, { urls: [target, jobApi], timeoutMs: 3000 });
    t.diagnostic(`reach: ${JSON.stringify(report.reach)}`);
    const [toServer, toApi] = report.reach;
    assert.equal(toServer?.status, 0, `the other container answered: ${JSON.stringify(toServer)}`);
    assert.equal(toApi?.status, 404, 'the job API answered (and told nothing about a job that is not this one)');
  });

  test('a job may ask for any cpus and memory when there is no maximum, and for fewer processes; more than 1024 is invalid', async () => {
    const { report, info } = await selfOf(stack, 'asks-less', { resources: { cpus: 0.5, memory: 64 * MiB, pids: 100 } });
    assert.equal(report.pidsMax, '100');
    const host = info.HostConfig;
    assert.equal(host.NanoCpus, 500_000_000);
    assert.equal(host.Memory, 64 * MiB);
    assert.equal(host.PidsLimit, 100);

    const refused = await expectInvalid(stack, 'asks-more-pids', { resources: { pids: 2048 } });
    assert.equal(refused.message, 'the job failed validation: resources.pids 2048 is more than this agent allows (docker.pids_limit = 1024)');
  });
});

describe('maxima, added capabilities and allowed images', () => {
  let stack: Stack;
  /** Counts the engine's connections and drops each one: a pull from it fails fast. */
  let registry: FakeRegistry;
  before(async () => {
    registry = await new FakeRegistry('drop').start();
    stack = await startStack({
      ...KEEP_CONTAINERS,
      FOREMAN_DOCKER_CAP_ADD: 'CHOWN,CAP_NET_BIND_SERVICE',
      FOREMAN_DOCKER_CPUS: '1',
      FOREMAN_DOCKER_MEMORY_LIMIT: String(256 * MiB),
      FOREMAN_DOCKER_PIDS_LIMIT: '200',
      FOREMAN_DOCKER_ALLOWED_IMAGES: `foreman-test-job:*,127.0.0.1:${registry.port}/allowed/**`,
    });
  });
  after(async () => {
    await stack?.close();
    await registry?.close();
  });

  test('cap_add adds back exactly the named capabilities, and no-new-privileges holds', async (t: TestContext) => {
    const { report, info } = await selfOf(stack, 'cap-add');
    t.diagnostic(`inside: ${JSON.stringify(report.status)}`);
    // CAP_CHOWN is bit 0, CAP_NET_BIND_SERVICE bit 10.
    assert.equal(report.status.CapEff, (1n | (1n << 10n)).toString(16).padStart(16, '0'));
    assert.equal(report.status.CapBnd, report.status.CapEff);
    assert.equal(report.status.NoNewPrivs, '1');
    assert.deepEqual(info.HostConfig.CapAdd, ['CHOWN', 'CAP_NET_BIND_SERVICE']);
  });

  test('a job asking for nothing gets the maxima; one asking for less gets what it asked for', async () => {
    const plain = await selfOf(stack, 'at-maxima');
    let host = plain.info.HostConfig;
    assert.deepEqual([host.NanoCpus, host.Memory, host.PidsLimit], [1_000_000_000, 256 * MiB, 200]);
    assert.equal(plain.report.pidsMax, '200');

    const less = await selfOf(stack, 'below-maxima', { resources: { cpus: 0.25, memory: 128 * MiB, pids: 50 } });
    host = less.info.HostConfig;
    assert.deepEqual([host.NanoCpus, host.Memory, host.PidsLimit], [250_000_000, 128 * MiB, 50]);
    assert.equal(less.report.pidsMax, '50');
  });

  test('a job asking for more than a maximum is invalid, with the reason, and gets no container', async () => {
    const cases: Array<[string, Record<string, number>, string]> = [
      ['over-cpus', { cpus: 1.5 }, 'resources.cpus 1.5 is more than this agent allows (docker.cpus = 1)'],
      ['over-memory', { memory: 512 * MiB }, `resources.memory ${512 * MiB} is more than this agent allows (docker.memory_limit = ${256 * MiB})`],
      ['over-pids', { pids: 201 }, 'resources.pids 201 is more than this agent allows (docker.pids_limit = 200)'],
    ];
    for (const [id, resources, reason] of cases) {
      const report = await expectInvalid(stack, id, { resources });
      assert.equal(report.message, `the job failed validation: ${reason}`);
    }
  });

  test('an image matching no allowed pattern is invalid and never pulled; an allowed one is', async () => {
    const denied = `127.0.0.1:${registry.port}/denied/app:1`;
    const report = await expectInvalid(stack, 'denied-image', { image: denied });
    assert.equal(
      report.message,
      `the job failed validation: image ${denied} is not allowed on this agent (docker.allowed_images: foreman-test-job:*, 127.0.0.1:${registry.port}/allowed/**)`,
    );
    assert.equal(registry.connections, 0, 'the engine never contacted the registry');

    // The same registry does see a pull of an allowed image: the count above would have caught one.
    stack.control.reply([job('allowed-image', stack.callbacks.url(), {}, { image: `127.0.0.1:${registry.port}/allowed/app:1` })]);
    const pulled = await stack.callbacks.waitForCompletion('allowed-image', 60_000);
    assert.equal(reportOf(pulled).outcome, 'pull-failed');
    assert.ok(registry.connections > 0, 'the engine contacted the registry for the allowed image');
  });
});

describe('user, read-only root and runtime', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      ...KEEP_CONTAINERS,
      FOREMAN_DOCKER_USER: '1000:1000',
      FOREMAN_DOCKER_READ_ONLY_ROOTFS: 'true',
      FOREMAN_DOCKER_RUNTIME: 'runc',
    });
  });
  after(() => stack?.close());

  test('the job runs as docker.user, cannot write to /, can write to /tmp, under the named runtime', async (t: TestContext) => {
    const { report, info } = await selfOf(stack, 'locked-down');
    t.diagnostic(`inside: ${JSON.stringify(report)}`);
    assert.equal(report.status.Uid, '1000 1000 1000 1000');
    assert.equal(report.status.Gid, '1000 1000 1000 1000');
    assert.equal(report.status.CapEff, '0000000000000000');
    assert.equal(report.status.NoNewPrivs, '1');
    assert.equal(report.rootWritable, false);
    assert.equal(report.rootError, 'EROFS');
    assert.equal(report.tmpWritable, true, report.tmpError);

    const host = info.HostConfig;
    assert.equal(info.Config.User, '1000:1000');
    assert.equal(host.ReadonlyRootfs, true);
    assert.deepEqual(host.Tmpfs, { '/tmp': 'rw,nosuid,nodev,exec,mode=1777' });
    assert.equal(host.Runtime, 'runc');
  });
});

describe('a network that already lets containers reach each other', () => {
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  let running: InProcessAgent | undefined;
  const env = testEnv('http://127.0.0.1:9/unused', KEEP_CONTAINERS);

  before(async () => {
    control = await new FakeControlServer().start();
    callbacks = await new CallbackReceiver().start();
    env.env.FOREMAN_CORE_URL = control.url;
    // Made as `docker network create` makes one: inter-container traffic on.
    await docker.createNetwork({ Name: env.networkName, Labels: { 'foreman.test': 'hardening' } });
    running = await startAgent(env);
  });
  after(async () => {
    await running?.close();
    await control?.close();
    await callbacks?.stop();
    await cleanup(env, running?.agent.agentId);
  });

  test('is kept, with a warning at start and in foreman check; there the prober does reach the server', async () => {
    assert.ok(running, 'the agent started on the existing network');
    const parts = { control, callbacks, running };
    const warnings = readLog(running.logFile)
      .split('\n')
      .filter((line) => line.includes('"level":40') && line.includes('lets job containers reach each other'));
    assert.equal(warnings.length, 1, 'one warning');
    assert.match(
      warnings[0] ?? '',
      new RegExp(`network \\\\"${env.networkName}\\\\" lets job containers reach each other.*docker network rm ${env.networkName}`),
    );

    const lines: string[] = [];
    await runCheck(loadTestConfig(env), (line) => lines.push(line));
    assert.ok(
      lines.some((l) => /^ {2}warn {2}network ".*" lets job containers reach each other/.test(l)),
      lines.join('\n'),
    );

    // The positive control for the test above: on such a network the same probe gets through.
    const target = await serve(parts, 'open-server', env.networkName);
    const { report } = await selfOf(parts, 'open-prober', {}, { urls: [target], timeoutMs: 3000 });
    assert.equal(report.reach[0]?.status, 200, JSON.stringify(report.reach));
  });
});

describe('a runtime the engine does not offer', () => {
  test('the agent refuses to start with one line naming docker.runtime, and foreman check fails it', async () => {
    const s = await spawnStack({ FOREMAN_DOCKER_RUNTIME: 'foreman-no-such-runtime' });
    try {
      assert.equal(await exitCode(s.agent), 1);
      const errors = readLog(s.agent.logFile)
        .split('\n')
        .filter((l) => l.includes('"level":50'));
      assert.equal(errors.length, 1, errors.join('\n'));
      assert.match(
        errors[0] ?? '',
        /docker\.runtime \\"foreman-no-such-runtime\\" is not offered by the Docker engine \(it offers: [^)]*runc[^)]*\).*unset docker\.runtime/,
      );
      assert.equal(s.control.polls.length, 0, 'it never polled');
      await assert.rejects(docker.getNetwork(s.env.networkName).inspect(), 'it made no network');

      const lines: string[] = [];
      const code = await runCheck(loadTestConfig({ ...s.env, env: { ...s.env.env, FOREMAN_DOCKER_CPUS: '4096' } }), (line) => lines.push(line));
      assert.equal(code, 1);
      assert.ok(
        lines.some((l) => /^ {2}FAIL {2}docker\.runtime "foreman-no-such-runtime" is not offered/.test(l)),
        lines.join('\n'),
      );
      assert.ok(
        lines.some((l) => /^ {2}FAIL {2}docker\.cpus = 4096: expected 0 \(no limit\) or from 0\.01 to \d+/.test(l)),
        lines.join('\n'),
      );
    } finally {
      await s.close();
    }
  });
});
