/** Receiving, queueing and slots, against the fake engine and the in-memory store. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settle } from '../../testing/clock-kit.ts';
import { jobSpec, makeKit } from '../../testing/agent-kit.ts';
import { jobPolicy } from './policy.ts';

test('slots are counted from the runners: never more launched than max_concurrent_jobs, the rest queued in order', async () => {
  const kit = makeKit({ maxConcurrentJobs: 2 });
  assert.equal(kit.scheduler.freeSlots(), 2);
  kit.scheduler.receive([jobSpec('a'), jobSpec('b'), jobSpec('c'), jobSpec('d')]);
  await settle();
  assert.equal(kit.scheduler.running, 2);
  assert.equal(kit.scheduler.queued, 2);
  assert.equal(kit.scheduler.freeSlots(), 0);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((id) => kit.state(id)),
    ['started', 'started', 'pending', 'pending'],
  );
  kit.executor.exit(kit.executor.containerOf('b')?.id ?? '', 0);
  await settle();
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((id) => kit.state(id)),
    ['started', 'stopped', 'started', 'pending'],
  );
});

test('waitUntilNoneRunning resolves once the last running job stops, and at once on abort', async () => {
  const kit = makeKit({ maxConcurrentJobs: 2 });
  kit.scheduler.receive([jobSpec('a'), jobSpec('b')]);
  await settle();
  let resolved = false;
  const waiting = kit.scheduler.waitUntilNoneRunning(new AbortController().signal).then(() => (resolved = true));
  kit.executor.exit(kit.executor.containerOf('a')?.id ?? '', 1);
  await settle();
  assert.equal(resolved, false, 'one job still runs');
  kit.executor.exit(kit.executor.containerOf('b')?.id ?? '', 1);
  await waiting;
  kit.scheduler.receive([jobSpec('c')]);
  await settle();
  const aborted = new AbortController();
  const pending = kit.scheduler.waitUntilNoneRunning(aborted.signal);
  aborted.abort();
  await pending;
});

test('an invalid job is remembered as removed and reported invalid when it has an id and a callback URL', async () => {
  const kit = makeKit();
  kit.scheduler.receive([
    { id: 'bad-1', image: 'x', callbackUrl: 'http://127.0.0.1:9/cb' },
    { image: 'no id', body: 1, callbackUrl: 'http://127.0.0.1:9/cb' },
    42,
  ]);
  await settle();
  assert.equal(kit.state('bad-1'), 'removed');
  assert.deepEqual(kit.store.transitions, ['bad-1 pending→removed']);
  const [report] = kit.reports('bad-1');
  assert.equal(report?.outcome, 'invalid');
  assert.match(report.body.message ?? '', /missing required field "body"/);
  assert.equal(kit.delivered.length, 1);
  assert.equal(kit.executor.containers.size, 0);
});

test('a job whose id holds a lone surrogate is reported invalid to its callback once: the header encoded, the id in the body', async () => {
  const kit = makeKit();
  const entry = { id: 'x\ud800', image: 'x', body: 1, callbackUrl: 'http://127.0.0.1:9/cb' };
  kit.scheduler.receive([entry, { ...entry }, { id: '\udfff', image: 'x', body: 1 }]);
  await settle();
  kit.scheduler.receive([entry]);
  await settle();
  assert.equal(kit.delivered.length, 1, 'one report however often the job comes, none without a callbackUrl');
  const [report] = kit.delivered;
  assert.equal(report?.headers['x-foreman-job-id'], 'x%ED%A0%80', 'the id percent-encoded, the lone surrogate as its WTF-8 bytes');
  assert.equal(report.headers['x-foreman-job-outcome'], 'invalid');
  assert.equal(report.headers['x-foreman-job-status'], 'completed');
  const body = JSON.parse(report.body.toString()) as { id: string; outcome: string; reason: string; message: string };
  assert.equal(body.id, 'x\ud800', 'JSON carries the id exactly as the control server sent it');
  assert.deepEqual(
    { outcome: body.outcome, reason: body.reason, message: body.message },
    { outcome: 'invalid', reason: 'validation', message: 'the job failed validation: id is not well-formed Unicode (it holds a lone surrogate)' },
  );
  assert.equal(kit.executor.containers.size, 0, 'nothing ran');
  assert.equal(kit.state('ill-formed:x%ED%A0%80'), 'removed', 'remembered under its encoded form');
});

test('a job asking for more than core.max_job_timeout is reported invalid before anything is pulled or stored to run', async () => {
  const kit = makeKit({ policy: jobPolicy({ allowedImages: [], cpus: 0, memory: 0, pids: 0, maxTimeout: 60_000 }) });
  kit.scheduler.receive([jobSpec('too-long', { image: 'elsewhere/job:1', timeout: 60_001 }), jobSpec('fits', { timeout: 60_000 })]);
  await settle();
  assert.equal(kit.reports('too-long')[0]?.outcome, 'invalid', 'reported invalid');
  assert.equal(
    kit.reports('too-long')[0]?.body.message,
    'the job failed validation: timeout 60001 is more than this agent allows (core.max_job_timeout = 60000)',
    'naming the maximum',
  );
  assert.equal(kit.state('too-long'), 'removed', 'remembered, never queued');
  assert.ok(!kit.executor.calls.some((call) => call.includes('elsewhere/job:1')), `nothing pulled or created for it: ${kit.executor.calls.join(', ')}`);
  assert.equal(kit.state('fits'), 'started', 'a job within the maximum runs');
});

test('a job id already known is not run again', async () => {
  const kit = makeKit();
  kit.scheduler.receive([jobSpec('a')]);
  await settle();
  kit.scheduler.receive([jobSpec('a'), jobSpec('a')]);
  await settle();
  assert.equal(kit.executor.calls.filter((c) => c.startsWith('create')).length, 1);
  assert.equal(kit.scheduler.queued, 0);
});

test('no launches while the engine is down; they start once it is back', async () => {
  const kit = makeKit();
  kit.scheduler.setEngineUp(false);
  kit.scheduler.receive([jobSpec('a')]);
  await settle();
  assert.equal(kit.state('a'), 'pending');
  assert.equal(kit.scheduler.freeSlots(), 1, 'a queued job takes a slot of capacity');
  kit.scheduler.setEngineUp(true);
  kit.scheduler.pump();
  await settle();
  assert.equal(kit.state('a'), 'started');
});

test('a store that cannot record a received job: logged, nothing queued, the next entry still taken', async () => {
  const kit = makeKit();
  kit.store.failWrites = true;
  kit.scheduler.receive([jobSpec('a')]);
  kit.store.failWrites = false;
  kit.scheduler.receive([jobSpec('b')]);
  await settle();
  assert.equal(kit.state('a'), undefined);
  assert.equal(kit.state('b'), 'started');
});
