/** Cancel, stall and detach in the runner, against the fake engine and a clock that moves only when told. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settle } from '../../testing/clock-kit.ts';
import { createJobApiBackend } from './api-backend.ts';
import { jobSpec, makeKit, type Kit } from '../../testing/agent-kit.ts';

async function running(kit: Kit, id: string, extra: Record<string, unknown> = {}): Promise<string> {
  kit.scheduler.receive([jobSpec(id, extra)]);
  await settle();
  const cid = kit.executor.containerOf(id)?.id;
  assert.ok(cid, "the job's container was created");
  return cid;
}

test('cancel of a queued job: dropped before it starts, reported canceled, its place in the queue given up', async () => {
  const kit = makeKit({ maxConcurrentJobs: 1 });
  kit.scheduler.receive([jobSpec('a'), jobSpec('b'), jobSpec('c')]);
  await settle();
  kit.scheduler.cancel(['b', 'unknown', 'b']);
  await settle();
  assert.deepEqual(kit.reports('b'), [
    {
      status: 'completed',
      outcome: 'canceled',
      body: { outcome: 'canceled', reason: 'cancel', message: 'the control server canceled the job before it started' },
    },
  ]);
  assert.equal(kit.state('b'), 'removed');
  assert.equal(kit.scheduler.queued, 1);
  kit.executor.exit(kit.executor.containerOf('a')?.id ?? '', 0);
  await settle();
  assert.equal(kit.state('c'), 'started', 'the next in line took the slot');
  assert.equal(kit.executor.containerOf('b'), undefined);
});

test('cancel while pulling: the pull is abandoned at once and the job reported canceled', async () => {
  const kit = makeKit();
  kit.executor.hangingPulls.add('slow/img:1');
  kit.scheduler.receive([jobSpec('p', { image: 'slow/img:1' })]);
  await settle();
  kit.scheduler.cancel(['p']);
  await settle();
  assert.equal(kit.reports('p')[0]?.outcome, 'canceled');
  assert.match(kit.reports('p')[0]?.body.message ?? '', /before its container started/);
  assert.equal(kit.scheduler.running, 0);
});

test('cancel of a running job: stop signal at once, kill after the grace period, reported canceled with exit code and logs', async () => {
  const kit = makeKit({ cancelGraceMs: 3000 });
  const cid = await running(kit, 'r', { cancelGracePeriod: 2000 });
  const container = kit.executor.containers.get(cid);
  assert.ok(container, 'the container is still known to the engine');
  container.logs = ['cleaning up'];
  kit.executor.stubbornStops.add(cid);
  kit.scheduler.cancel(['r']);
  await settle();
  assert.ok(kit.executor.calls.includes(`stop ${cid} 2000`), "the job's own grace period wins over core.cancel_grace_period");
  assert.equal(kit.reports('r').length, 0, 'not reported while the grace period runs');
  await kit.clock.advance(1999);
  assert.ok(!kit.executor.calls.includes(`kill ${cid}`), 'no kill before the grace period ends');
  await kit.clock.advance(1);
  assert.ok(kit.executor.calls.includes(`kill ${cid}`), 'killed once the grace period ended');
  assert.deepEqual(kit.reports('r')[0]?.body, {
    outcome: 'canceled',
    reason: 'cancel',
    message: 'the control server canceled the job; its container exited with code 137',
    exitCode: 137,
    logs: ['cleaning up'],
  });
  kit.scheduler.cancel(['r']);
  await settle();
  assert.equal(kit.reports('r').length, 1, 'a repeated cancel of an ended job is ignored');
});

test("a completed update during the grace period is the job's last word: forwarded with outcome canceled, no second report", async () => {
  const kit = makeKit();
  const cid = await running(kit, 'r');
  kit.executor.stubbornStops.add(cid);
  kit.scheduler.cancel(['r']);
  await settle();
  assert.notEqual(kit.store.get('r')?.cancelRequestedAt, null, 'the cancel is stored');
  assert.equal(kit.store.get('r')?.state, 'started', 'the job still runs during its grace period');
  const backend = createJobApiBackend({ store: kit.store, runner: (id) => kit.scheduler.runnerFor(id) });
  const progress = await backend.updateJob('r', { status: 'running', progress: 0.9, headers: { 'x-foreman-job-status': 'running' }, body: Buffer.from('{}') });
  assert.equal(progress.status, 200, 'updates are still accepted during the grace period');
  const last = await backend.updateJob('r', {
    status: 'completed',
    progress: 1,
    headers: { 'x-foreman-job-status': 'completed' },
    body: Buffer.from('{"partial":true}'),
  });
  assert.equal(last.status, 200);
  kit.executor.exit(cid, 0);
  await settle();
  assert.deepEqual(
    kit.reports('r').map((r) => [r.status, r.outcome]),
    [
      ['running', undefined],
      ['completed', 'canceled'],
    ],
  );
  assert.equal(kit.state('r'), 'stopped');
  await kit.clock.advance(10_000);
  assert.ok(!kit.executor.calls.includes(`kill ${cid}`), 'no kill once the container is gone');
});

test('the stall timeout counts from container start, then from the last accepted update; updates keep it away', async () => {
  const kit = makeKit({ stallTimeoutMs: 5000 });
  await running(kit, 's');
  await kit.clock.advance(4000);
  const update = await kit.scheduler
    .track('s')
    .containerUpdated({ status: 'running', headers: { 'x-foreman-job-status': 'running' }, body: Buffer.from('{}') });
  assert.equal(update.kind, 'accepted', 'the update was stored');
  await kit.clock.advance(4000);
  assert.deepEqual(
    kit.reports('s').map((r) => r.status),
    ['running'],
    'an update 4 s in kept it alive: only the update itself was forwarded',
  );
  await kit.clock.advance(1000);
  const report = kit.reports('s')[1];
  assert.equal(report?.outcome, 'stalled');
  assert.equal(report.body.reason, 'stall');
  assert.equal(kit.clock.timers > 0, true, 'the removal is scheduled');
});

test("a job's stallTimeout wins over core.stall_timeout, and 0 turns it off", async () => {
  const kit = makeKit({ stallTimeoutMs: 1000, completionTimeoutMs: 600_000 });
  await running(kit, 'off', { stallTimeout: 0 });
  await running(kit, 'own', { stallTimeout: 3000 });
  await kit.clock.advance(2999);
  assert.equal(kit.reports('own').length, 0);
  await kit.clock.advance(1);
  assert.equal(kit.reports('own')[0]?.outcome, 'stalled');
  await kit.clock.advance(9000);
  assert.equal(kit.reports('off').length, 0);
});

test('detach leaves running and queued jobs as they are, finishes a cancel under way, and sets no timers', async () => {
  const kit = makeKit({ maxConcurrentJobs: 2 });
  const keep = await running(kit, 'keep');
  const doomed = await running(kit, 'doomed');
  kit.scheduler.receive([jobSpec('queued')]);
  kit.executor.stubbornStops.add(doomed);
  kit.scheduler.cancel(['doomed']);
  await settle();
  await kit.scheduler.detach();
  await settle();
  assert.equal(kit.executor.containers.get(keep)?.running, true);
  assert.equal(kit.state('keep'), 'started');
  assert.equal(kit.state('queued'), 'pending');
  assert.deepEqual(kit.reports('keep'), []);
  assert.equal(kit.reports('doomed')[0]?.outcome, 'canceled');
  assert.equal(kit.state('doomed'), 'stopped');
  assert.ok(kit.executor.calls.includes(`stop ${doomed} 10000`), 'stopped, and killed by the engine after the stop grace');
  assert.equal(kit.clock.timers, 0, 'no timers left behind');
});

test('a cancel stored before a crash is finished by reconciliation: queued and launching jobs never start', async () => {
  const kit = makeKit();
  kit.scheduler.setEngineUp(false);
  kit.scheduler.receive([jobSpec('q')]);
  kit.store.requestCancel('q');
  await kit.scheduler.track('q').reconcile(undefined);
  assert.equal(kit.reports('q')[0]?.outcome, 'canceled');
  assert.equal(kit.state('q'), 'removed');
});

test('the stall and completion clocks start when the engine says the container runs, not before the start call', async () => {
  const kit = makeKit({ stallTimeoutMs: 2000, completionTimeoutMs: 5000 });
  kit.executor.holdStarts = true;
  await running(kit, 'slow');
  // The engine takes 3 s to start the container (a swarm placing its task): longer than the stall timeout.
  await kit.clock.advance(3000);
  assert.equal(kit.reports('slow').length, 0, 'nothing fires while the start call is under way');
  kit.executor.releaseStarts();
  await settle();
  const startedAt = kit.clock.now();
  assert.equal(kit.store.get('slow')?.startedAt, startedAt, 'the start is recorded when the engine answered');
  await kit.clock.advance(1999);
  assert.equal(kit.reports('slow').length, 0, 'the whole stall timeout is given, counted from the start');
  await kit.clock.advance(1);
  assert.equal(kit.reports('slow')[0]?.outcome, 'stalled', 'stalled 2000 ms after the container started');
});
