/**
 * What a single-node swarm cannot show (test/swarm.e2e.test.ts covers the rest on the real engine): a job
 * whose task runs on another node. A stand-in for the manager's API plays the swarm.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { systemClock } from '../../shared/clock.ts';
import type { ExecutorEvent } from '../executor.ts';
import { RegistryAuth } from '../docker/registry-auth.ts';
import { SwarmExecutor } from './swarm-executor.ts';
import { stdoutFrame as frame } from '../../testing/log-frame-kit.ts';

class FakeSwarm {
  readonly calls: string[] = [];
  /** Service id → its one task's state; a missing id is a removed service. */
  readonly services = new Map<string, { state: string; exitCode?: number; node: string }>();
  readonly logStreams: PassThrough[] = [];
  readonly created: Array<{ auth: unknown; name: string }> = [];
  /** Containers the engine says were OOM-killed. */
  readonly oomKilled = new Set<string>();

  client(): Docker {
    const service = (id: string) => ({
      inspect: () => {
        if (!this.services.has(id)) return Promise.reject(Object.assign(new Error('no such service'), { statusCode: 404 }));
        return Promise.resolve({ ID: id, Spec: { Labels: { 'foreman.job-id': `job-of-${id}`, 'foreman.agent': 'agent-1' } } });
      },
      remove: () => {
        this.calls.push(`remove ${id}`);
        this.services.delete(id);
        return Promise.resolve();
      },
      logs: (options: { follow?: boolean }) => {
        this.calls.push(`service logs ${id}${options.follow ? ' follow' : ''}`);
        const stream = new PassThrough();
        this.logStreams.push(stream);
        return Promise.resolve(stream);
      },
    });
    const tasksOf = (id: string) => {
      const s = this.services.get(id);
      if (!s) return [];
      const ended = ['complete', 'failed', 'shutdown'].includes(s.state);
      return [
        {
          ServiceID: id,
          NodeID: s.node,
          CreatedAt: '2026-11-28T10:00:00Z',
          Status: { State: s.state, Message: 'started', ContainerStatus: { ContainerID: `c-${id}`, ...(ended ? { ExitCode: s.exitCode } : {}) } },
        },
      ];
    };
    return {
      ping: () => Promise.resolve('OK'),
      info: () => Promise.resolve({ Swarm: { LocalNodeState: 'active', ControlAvailable: true, NodeID: 'manager', NodeAddr: '10.0.0.1', Nodes: 2 } }),
      getNetwork: () => ({ inspect: () => Promise.resolve({ Driver: 'overlay', Scope: 'swarm' }) }),
      getService: service,
      listServices: () => Promise.resolve([...this.services.keys()].map((id) => ({ ID: id, Spec: { Labels: { 'foreman.job-id': `job-of-${id}` } } }))),
      listTasks: (options: { filters: { service: string[] } }) => Promise.resolve(options.filters.service.flatMap(tasksOf)),
      listContainers: () => Promise.resolve([]),
      getContainer: (id: string) => ({
        stop: () => {
          this.calls.push(`stop container ${id}`);
          return Promise.resolve();
        },
        inspect: () => {
          this.calls.push(`inspect container ${id}`);
          return Promise.resolve({
            Id: id,
            Config: { Labels: {} },
            State: { Running: true, ExitCode: 0, OOMKilled: this.oomKilled.has(id), StartedAt: '2026-11-28T10:00:01Z' },
          });
        },
      }),
      getEvents: () => Promise.resolve(new PassThrough()),
      createService: (auth: unknown, body: { Name: string }) => {
        this.created.push({ auth, name: body.Name });
        this.services.set(body.Name, { state: 'pending', node: 'worker-2' });
        return Promise.resolve({ id: body.Name });
      },
    } as unknown as Docker;
  }
}

async function prepared(fake: FakeSwarm): Promise<SwarmExecutor> {
  const registryAuth = new RegistryAuth([{ host: 'registry.example.com:5000', username: 'ci', password: 'hunter2' }]);
  const executor = new SwarmExecutor({
    docker: fake.client(),
    agentId: 'agent-1',
    networkName: 'jobs',
    extraHosts: [],
    memoryLimit: 0,
    clock: systemClock,
    taskPollMs: 10,
    remoteLogGraceMs: 50,
    registryAuth,
  });
  await executor.prepare();
  return executor;
}

test("a task on another node: its log is the service's, followed until the task has ended", async () => {
  const fake = new FakeSwarm();
  fake.services.set('svc-1', { state: 'running', node: 'worker-2' });
  const executor = await prepared(fake);
  const texts: string[] = [];
  const reading = (async () => {
    for await (const batch of executor.readLogs('svc-1', { since: undefined, follow: true }, new AbortController().signal)) {
      texts.push(...batch.map((m) => m.text.toString().trim()));
    }
  })();
  await waitUntil(() => fake.logStreams.length === 1);
  fake.logStreams[0]?.write(frame('2026-11-28T10:00:02.000000001Z', 'one\n'));
  await waitUntil(() => texts.length === 1);
  fake.services.set('svc-1', { state: 'complete', exitCode: 0, node: 'worker-2' });
  // A last line after the task ended, within the grace period, still arrives; then the read ends by itself.
  fake.logStreams[0]?.write(frame('2026-11-28T10:00:03.000000001Z', 'two\n'));
  await reading;
  assert.deepEqual(texts, ['one', 'two']);
  assert.deepEqual(fake.calls, ['service logs svc-1 follow']);
});

test('stopping a job: on the manager its container is stopped (keeping the exit code); on another node its service is removed', async () => {
  const fake = new FakeSwarm();
  fake.services.set('here', { state: 'running', node: 'manager' });
  fake.services.set('there', { state: 'running', node: 'worker-2' });
  fake.services.set('done', { state: 'complete', exitCode: 0, node: 'worker-2' });
  const executor = await prepared(fake);
  await executor.stop('here', 5000);
  await executor.stop('there', 5000);
  await executor.stop('done', 5000);
  await executor.stop('missing', 5000);
  assert.deepEqual(fake.calls, ['stop container c-here', 'remove there']);
});

test('watch reports a task that ended on another node once, and a service removed while its task ran', async () => {
  const fake = new FakeSwarm();
  fake.services.set('a', { state: 'running', node: 'worker-2' });
  fake.services.set('b', { state: 'running', node: 'worker-2' });
  const executor = await prepared(fake);
  const events: ExecutorEvent[] = [];
  const stop = new AbortController();
  let ready = false;
  const watching = executor.watch(
    (event) => events.push(event),
    stop.signal,
    () => (ready = true),
  );
  await waitUntil(() => ready);
  fake.services.set('a', { state: 'failed', exitCode: 3, node: 'worker-2' });
  fake.services.delete('b');
  await waitUntil(() => events.length >= 2);
  // Several more looks at the tasks report nothing again.
  await new Promise((resolve) => setTimeout(resolve, 100));
  stop.abort();
  await watching;
  assert.deepEqual(
    events.sort((x, y) => x.containerId.localeCompare(y.containerId)),
    [
      { type: 'exited', containerId: 'a', jobId: 'job-of-a', exitCode: 3 },
      { type: 'exited', containerId: 'b', jobId: 'job-of-b', exitCode: null },
    ],
  );
});

test("watch's look at the tasks inspects no container, even on this node; the OOM flag comes with inspect", async () => {
  const fake = new FakeSwarm();
  fake.services.set('here', { state: 'running', node: 'manager' });
  const executor = await prepared(fake);
  const events: ExecutorEvent[] = [];
  const stop = new AbortController();
  const watching = executor.watch((event) => events.push(event), stop.signal);
  // Several looks while the task runs, then its end.
  await new Promise((resolve) => setTimeout(resolve, 50));
  fake.services.set('here', { state: 'failed', exitCode: 137, node: 'manager' });
  fake.oomKilled.add('c-here');
  await waitUntil(() => events.length >= 1);
  stop.abort();
  await watching;
  assert.deepEqual(events, [{ type: 'exited', containerId: 'here', jobId: 'job-of-here', exitCode: 137 }]);
  assert.deepEqual(fake.calls, []);
  assert.equal((await executor.inspect('here'))?.oomKilled, true);
  assert.deepEqual(fake.calls, ['inspect container c-here']);
});

async function waitUntil(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("a service carries the image registry's credentials, so the node that runs it can pull; other images carry none", async () => {
  const fake = new FakeSwarm();
  const executor = await prepared(fake);
  const spec = { command: undefined, env: {}, labels: {} };
  await executor.create({ ...spec, name: 'private', image: 'registry.example.com:5000/team/job:1' });
  await executor.create({ ...spec, name: 'public', image: 'node:20' });
  assert.deepEqual(fake.created, [
    { auth: { username: 'ci', password: 'hunter2', serveraddress: 'registry.example.com:5000' }, name: 'private' },
    { auth: undefined, name: 'public' },
  ]);
});
