import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerStarted, isTerminal, latestTask, serviceHosts, serviceNameFor, serviceSpec, unschedulable, type Task } from './service-spec.ts';

test('a container name swarm accepts stays; any other becomes a DNS label of at most 63 characters, one-to-one', () => {
  assert.equal(serviceNameFor('foreman-ab12cd34-job-1-0123456789ab'), 'foreman-ab12cd34-job-1-0123456789ab');
  assert.equal(serviceNameFor('xk3l2m1n0o9p8q7r6s5t4u3v2'), 'xk3l2m1n0o9p8q7r6s5t4u3v2', 'a service id maps to itself');
  const dotted = serviceNameFor('foreman-ab12cd34-v1.2.3-0123456789ab');
  assert.match(dotted, /^[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*$/);
  assert.notEqual(dotted, serviceNameFor('foreman-ab12cd34-v1-2-3-0123456789ab'), 'a hash keeps look-alikes apart');
  assert.equal(serviceNameFor('foreman-ab12cd34-v1.2.3-0123456789ab'), dotted, 'the same name maps the same way');
  const long = serviceNameFor(`foreman-ab12cd34-${'x'.repeat(40)}-0123456789ab`);
  assert.ok(long.length <= 63, long);
  assert.match(serviceNameFor('...'), /^[0-9a-f]{12}$/);
  assert.match(serviceNameFor('a-'), /^a-[0-9a-f]{12}$/);
});

test('extra hosts become /etc/hosts lines; host-gateway is the node address, and dropped when unknown', () => {
  assert.deepEqual(serviceHosts(['db:10.0.0.5', 'agent:host-gateway', 'v6:fe80::1'], '192.0.2.2'), ['10.0.0.5 db', '192.0.2.2 agent', 'fe80::1 v6']);
  assert.deepEqual(serviceHosts(['agent:host-gateway'], undefined), []);
});

test('a job becomes a replicated job that never restarts, labelled, hardened and limited like a container', () => {
  const spec = serviceSpec(
    {
      name: 'foreman-a-job.1-abc',
      image: 'img:1',
      command: ['node', 'x.mjs'],
      env: { A: '1', B: 'x=y' },
      labels: { 'foreman.job-id': 'job.1' },
      resources: { memory: 1000, pids: 10 },
    },
    {
      agentId: 'agent-1',
      networkName: 'net',
      hosts: ['10.0.0.5 db'],
      memoryLimit: 5000,
      cpus: 1.5,
      pidsLimit: 100,
      capAdd: ['NET_BIND_SERVICE'],
      user: '1000',
      readOnlyRootfs: true,
    },
  ) as { Name: string; Labels: Record<string, string>; TaskTemplate: Record<string, unknown>; Mode: unknown };
  const labels = { 'foreman.job-id': 'job.1', 'foreman.managed': 'true', 'foreman.agent': 'agent-1' };
  assert.equal(spec.Name, serviceNameFor('foreman-a-job.1-abc'));
  assert.deepEqual(spec.Labels, labels);
  assert.deepEqual(spec.Mode, { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } });
  assert.deepEqual(spec.TaskTemplate, {
    ContainerSpec: {
      Image: 'img:1',
      Args: ['node', 'x.mjs'],
      Env: ['A=1', 'B=x=y'],
      Labels: labels,
      User: '1000',
      Hosts: ['10.0.0.5 db'],
      Init: true,
      CapabilityDrop: ['ALL'],
      CapabilityAdd: ['NET_BIND_SERVICE'],
      ReadOnly: true,
      Mounts: [{ Type: 'tmpfs', Target: '/tmp', TmpfsOptions: { Mode: 0o1777 } }],
    },
    // The job's own asks win over the maxima; what it does not ask for gets the maximum.
    Resources: { Limits: { MemoryBytes: 1000, NanoCPUs: 1_500_000_000, Pids: 10 } },
    RestartPolicy: { Condition: 'none', MaxAttempts: 0 },
    Networks: [{ Target: 'net' }],
  });
  const bare = serviceSpec(
    { name: 'n', image: 'i', command: undefined, env: {}, labels: {} },
    { agentId: 'a', networkName: 'net', hosts: [], memoryLimit: 0 },
  ) as {
    TaskTemplate: { ContainerSpec: Record<string, unknown>; Resources: unknown };
  };
  assert.equal('Args' in bare.TaskTemplate.ContainerSpec, false, "no command keeps the image's");
  assert.equal('CapabilityAdd' in bare.TaskTemplate.ContainerSpec, false);
  assert.deepEqual(bare.TaskTemplate.Resources, { Limits: {} });
});

const task = (state: string, extra: Partial<NonNullable<Task['Status']>> = {}, createdAt = '2026-11-28T10:00:00Z'): Task => ({
  CreatedAt: createdAt,
  Status: { State: state, ...extra },
});

test('task states: which ended, which ran a container, which cannot be placed, and which task counts', () => {
  for (const state of ['complete', 'failed', 'shutdown', 'rejected', 'orphaned', 'remove']) assert.ok(isTerminal(task(state)), state);
  for (const state of ['new', 'pending', 'assigned', 'accepted', 'preparing', 'starting', 'running']) assert.ok(!isTerminal(task(state)), state);

  assert.ok(containerStarted(task('running')), 'a running task started its container');
  assert.ok(containerStarted(task('complete')), 'a complete task started its container');
  assert.ok(
    containerStarted(task('failed', { Message: 'started', Err: 'task: non-zero exit (3)' })),
    'a task that failed after starting started its container',
  );
  assert.ok(containerStarted(task('shutdown', { Message: 'started' })), 'a shut-down task that had started started its container');
  assert.ok(!containerStarted(task('rejected', { Err: 'No such image: x' })), 'a rejected task never started a container');
  assert.ok(
    !containerStarted(task('failed', { Message: 'starting', Err: 'starting container failed: invalid env' })),
    'a task that failed while starting never started a container',
  );
  assert.ok(!containerStarted(task('starting')), 'a starting task has not started its container yet');

  assert.equal(
    unschedulable(task('pending', { Err: 'no suitable node (1 node not available for new tasks)' })),
    'no suitable node (1 node not available for new tasks)',
  );
  assert.equal(unschedulable(task('pending', { Message: 'pending task scheduling' })), undefined);

  const newest = task('running', {}, '2026-11-28T10:00:05Z');
  assert.equal(latestTask([task('failed'), newest, task('complete', {}, '2026-11-28T09:00:00Z')]), newest);
  assert.equal(latestTask([]), undefined);
});
