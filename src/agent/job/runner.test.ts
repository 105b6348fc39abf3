/** The runner of one job, against the fake engine, the in-memory store and a clock that moves only when told. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settle } from '../../testing/clock-kit.ts';
import { IMAGE, jobSpec, makeKit, type Kit } from '../../testing/agent-kit.ts';

async function launched(kit: Kit, id: string, extra: Record<string, unknown> = {}): Promise<string> {
  kit.scheduler.receive([jobSpec(id, extra)]);
  await settle();
  const container = kit.executor.containerOf(id);
  assert.ok(container, `a container for ${id}`);
  return container.id;
}

test('launch: pulls a missing image, creates the container with env and labels, starts it, holds a slot', async () => {
  const kit = makeKit();
  kit.executor.pullable.add('fresh/img:1');
  await launched(kit, 'j1', { image: 'fresh/img:1', env: { FROM_CORE: 'job', OWN: 'x' }, command: ['run', 'it'] });
  const container = kit.executor.containerOf('j1');
  assert.ok(container?.running, 'the container runs');
  assert.deepEqual(
    kit.executor.calls.filter((c) => !/^(watch|inspect)/.test(c)).map((c) => c.split(' ')[0]),
    ['ensureImage', 'create', 'start'],
  );
  const job = kit.store.get('j1');
  const endpoint = `http://127.0.0.1:3000/job/j1?token=${job?.secret ?? ''}`;
  assert.deepEqual(container.spec.env, { FROM_CORE: 'core', OWN: 'x', FOREMAN_GET_JOB_ENDPOINT: endpoint, FOREMAN_PUT_JOB_ENDPOINT: endpoint });
  assert.deepEqual(container.spec.command, ['run', 'it']);
  assert.equal(container.labels['foreman.job-id'], 'j1');
  assert.equal(container.labels['foreman.agent'], kit.store.agentId);
  assert.equal(job?.state, 'started');
  assert.equal(job.startedAt, kit.clock.now());
  assert.equal(kit.scheduler.running, 1);
});

test('an exit without completed: reported failed with exit code and log tail, slot freed, container removed after job_removal_timeout', async () => {
  const kit = makeKit();
  const cid = await launched(kit, 'j1');
  const container = kit.executor.containerOf('j1');
  assert.ok(container, 'the container exists in the engine');
  container.logs = ['starting', 'boom: disk on fire'];
  kit.executor.exit(cid, 3);
  await settle();
  assert.deepEqual(kit.reports('j1'), [
    {
      status: 'completed',
      outcome: 'failed',
      body: {
        outcome: 'failed',
        reason: 'exit',
        message: 'the container exited with code 3 without reporting completed',
        exitCode: 3,
        logs: ['starting', 'boom: disk on fire'],
      },
    },
  ]);
  assert.equal(kit.state('j1'), 'stopped');
  assert.equal(kit.scheduler.running, 0);
  await kit.clock.advance(4999);
  assert.ok(kit.executor.containers.has(cid), 'kept until job_removal_timeout');
  await kit.clock.advance(1);
  assert.equal(kit.executor.containers.has(cid), false);
  assert.equal(kit.state('j1'), 'removed');
  assert.equal(kit.scheduler.get('j1'), undefined, 'the runner is forgotten once nothing is left');
});

test('an OOM kill is reported as oom-killed', async () => {
  const kit = makeKit();
  const cid = await launched(kit, 'j1');
  kit.executor.exit(cid, 137, { oom: true });
  await settle();
  assert.equal(kit.reports('j1')[0]?.outcome, 'oom-killed');
  assert.equal(kit.reports('j1')[0]?.body.reason, 'oom');
});

test('completed: the container is stopped and removed, and the agent adds no report of its own', async () => {
  const kit = makeKit();
  const cid = await launched(kit, 'j1');
  const result = await kit.scheduler
    .track('j1')
    .containerUpdated({ status: 'completed', headers: { 'x-foreman-job-status': 'completed' }, body: Buffer.from('{"ok":true}') });
  assert.equal(result.kind, 'accepted', 'the completed update was stored');
  await settle();
  assert.ok(kit.executor.calls.includes(`stop ${cid} 10000`), 'the container was stopped with the stop grace');
  assert.equal(kit.state('j1'), 'stopped');
  assert.equal(kit.scheduler.running, 0);
  assert.deepEqual(
    kit.reports('j1').map((r) => [r.status, r.outcome]),
    [['completed', 'succeeded']],
    "the container's own update only, no report of the agent's own",
  );
  await kit.clock.advance(10_000);
  assert.equal(kit.state('j1'), 'removed');
  assert.deepEqual(
    kit.store.transitions.filter((t) => t.startsWith('j1 ')),
    ['j1 pending→creating', 'j1 creating→started', 'j1 started→completed', 'j1 completed→stopped', 'j1 stopped→removed'],
  );
});

test('no completed within job_completion_timeout of container start: stopped and reported timed-out', async () => {
  const kit = makeKit({ completionTimeoutMs: 10_000 });
  const cid = await launched(kit, 'j1');
  await kit.clock.advance(9999);
  assert.equal(kit.reports('j1').length, 0);
  await kit.clock.advance(1);
  const [report] = kit.reports('j1');
  assert.equal(report?.outcome, 'timed-out');
  assert.match(report.body.message ?? '', /did not report completed within job_completion_timeout \(10000 ms\)/);
  assert.ok(kit.executor.calls.includes(`stop ${cid} 10000`), 'the container was stopped with the stop grace');
  assert.equal(kit.executor.containerOf('j1')?.running, false);
});

test("a job's own timeout replaces job_completion_timeout, for the launch and from container start, and the report names it", async () => {
  const kit = makeKit({ completionTimeoutMs: 10_000 });
  await launched(kit, 'own', { timeout: 3000 });
  await launched(kit, 'default');
  await kit.clock.advance(2999);
  assert.equal(kit.reports('own').length, 0, 'not before its own timeout');
  await kit.clock.advance(1);
  const [report] = kit.reports('own');
  assert.equal(report?.outcome, 'timed-out', 'timed out at its own 3000 ms');
  assert.equal(report.body.message, 'the job did not report completed within its timeout (3000 ms)');
  assert.equal(kit.reports('default').length, 0, 'the other job keeps job_completion_timeout');
  await kit.clock.advance(7000);
  assert.match(kit.reports('default')[0]?.body.message ?? '', /within job_completion_timeout \(10000 ms\)/);

  kit.executor.hangingPulls.add('slow/img:1');
  kit.scheduler.receive([jobSpec('own-pull', { image: 'slow/img:1', timeout: 500 })]);
  await settle();
  await kit.clock.advance(500);
  assert.equal(
    kit.reports('own-pull')[0]?.body.message,
    'the image pull and container start did not finish within its timeout (500 ms)',
    'the launch is held to it too',
  );
});

test('a pull that never ends is abandoned at the timeout (counted from the launch) and reported timed-out; the slot is freed', async () => {
  const kit = makeKit({ completionTimeoutMs: 10_000, maxConcurrentJobs: 1 });
  kit.executor.hangingPulls.add('slow/img:1');
  kit.scheduler.receive([jobSpec('hang', { image: 'slow/img:1' }), jobSpec('next')]);
  await settle();
  assert.equal(kit.state('hang'), 'creating');
  assert.equal(kit.state('next'), 'pending');
  await kit.clock.advance(9999);
  assert.equal(kit.reports('hang').length, 0);
  await kit.clock.advance(1);
  const [report] = kit.reports('hang');
  assert.equal(report?.outcome, 'timed-out');
  assert.match(report.body.message ?? '', /image pull and container start did not finish within job_completion_timeout/);
  assert.equal(kit.executor.calls.filter((c) => c.startsWith('create')).length, 1, 'only the next job was created');
  assert.equal(kit.state('next'), 'started', 'the freed slot went to the next job');
  await kit.clock.advance(5000);
  assert.equal(kit.state('hang'), 'removed');
  assert.ok(kit.executor.calls.includes(`remove ${kit.store.get('hang')?.containerName ?? ''}`), 'removed by name, in case an aborted create left one');
});

test('shutdown cancels a pull in flight at once and reports agent-shutdown', async () => {
  const kit = makeKit();
  kit.executor.hangingPulls.add('slow/img:1');
  kit.scheduler.receive([jobSpec('hang', { image: 'slow/img:1' }), jobSpec('run'), jobSpec('queued')]);
  await settle();
  assert.equal(kit.state('queued'), 'pending');
  await kit.scheduler.shutdown();
  assert.equal(kit.reports('hang')[0]?.outcome, 'agent-shutdown');
  assert.match(kit.reports('hang')[0]?.body.message ?? '', /before the job container started/);
  assert.equal(kit.reports('run')[0]?.outcome, 'agent-shutdown');
  assert.match(kit.reports('run')[0]?.body.message ?? '', /while the job was running/);
  assert.equal(kit.executor.containerOf('run')?.running, false);
  assert.equal(kit.reports('queued')[0]?.outcome, 'agent-shutdown');
  assert.equal(kit.state('queued'), 'removed');
  await kit.scheduler.removeStopped();
  assert.equal(kit.executor.containers.size, 0);
  assert.equal(kit.clock.timers, 0, 'no timer outlives the shutdown');
});

test('launch failures: pull-failed, or start-failed for create and start; a started container is removed', async () => {
  const kit = makeKit({ maxConcurrentJobs: 3 });
  kit.executor.badEnv.add('BAD');
  kit.scheduler.receive([jobSpec('nopull', { image: 'missing/img:1' }), jobSpec('nocreate', { env: { BAD: 'x' } }), jobSpec('nostart')]);
  kit.executor.failingStarts.add(kit.store.get('nostart')?.containerName ?? '');
  await settle();
  assert.equal(kit.reports('nopull')[0]?.outcome, 'pull-failed');
  assert.match(kit.reports('nopull')[0]?.body.message ?? '', /pulling image missing\/img:1 failed/);
  assert.equal(kit.reports('nocreate')[0]?.outcome, 'start-failed');
  assert.match(kit.reports('nocreate')[0]?.body.message ?? '', /creating the container failed/);
  assert.equal(kit.reports('nostart')[0]?.outcome, 'start-failed');
  assert.equal(kit.scheduler.running, 0);
  await kit.clock.advance(5000);
  assert.equal(kit.executor.containers.size, 0);
  for (const id of ['nopull', 'nocreate', 'nostart']) assert.equal(kit.state(id), 'removed', id);
});

test('the engine not answering at launch is start-failed with the reason', async () => {
  const kit = makeKit();
  kit.scheduler.receive([jobSpec('j1')]);
  kit.executor.up = false;
  await settle();
  assert.equal(kit.reports('j1')[0]?.outcome, 'start-failed');
  assert.match(kit.reports('j1')[0]?.body.message ?? '', /the Docker engine did not answer: connect ECONNREFUSED/);
});

test('a store that refuses the start write: the slot is given back and the launch retried a moment later', async () => {
  const kit = makeKit();
  kit.scheduler.receive([jobSpec('j1')]);
  kit.store.failWrites = true;
  await settle();
  assert.equal(kit.state('j1'), 'pending');
  assert.equal(kit.scheduler.running, 0);
  assert.equal(kit.scheduler.queued, 1);
  kit.store.failWrites = false;
  await kit.clock.advance(999);
  assert.equal(kit.state('j1'), 'pending');
  await kit.clock.advance(1);
  assert.equal(kit.state('j1'), 'started');
});

test('alwaysPull pulls even an image that is present (and here no registry has it)', async () => {
  const kit = makeKit();
  kit.scheduler.receive([jobSpec('j1', { alwaysPull: true })]);
  await settle();
  assert.equal(kit.reports('j1')[0]?.outcome, 'pull-failed');
  assert.ok(kit.executor.calls.includes(`ensureImage ${IMAGE}`), 'the image was asked for before the launch');
});
