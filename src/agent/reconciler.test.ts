/** Recovery after a restart, against the fake engine: what the store remembers meets what the engine holds. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LABEL_JOB } from '../executor/executor.ts';
import type { JobState } from '../jobs/state.ts';
import { settle } from '../testing/clock-kit.ts';
import { Reconciler } from './reconciler.ts';
import { IMAGE, jobSpec, makeKit, type Kit } from '../testing/agent-kit.ts';

/** A job left by a previous run in `state`, optionally with a container (created, and running when asked). */
async function leftOver(kit: Kit, id: string, state: JobState, container?: 'created' | 'running' | 'exited'): Promise<string | undefined> {
  const spec = jobSpec(id) as { id: string; image: string; body: unknown; callbackUrl: string };
  const name = `foreman-test-${id}`;
  kit.store.admit(spec, 'secret', name);
  let containerId: string | undefined;
  if (container) {
    containerId = await kit.executor.create({ name, image: IMAGE, command: undefined, env: {}, labels: { [LABEL_JOB]: id } });
    if (container !== 'created') await kit.executor.start(containerId);
    if (container === 'exited') kit.executor.exit(containerId, 2);
  }
  const path: Record<JobState, JobState[]> = {
    pending: [],
    creating: ['creating'],
    started: ['creating', 'started'],
    running: ['creating', 'started', 'running'],
    completed: ['creating', 'started', 'running', 'completed'],
    stopped: ['creating', 'started', 'stopped'],
    removed: ['removed'],
  };
  for (const to of path[state]) {
    kit.store.transition(id, to, to === 'started' && containerId ? { containerId, startedAt: kit.clock.now() } : {});
  }
  return containerId;
}

async function reconcile(kit: Kit): Promise<void> {
  await new Reconciler({ store: kit.store, executor: kit.executor, scheduler: kit.scheduler, log: kit.ctx.log }).reconcile();
  kit.scheduler.pump();
  await settle();
}

test('a running container is re-adopted: it holds a slot and its timeout still counts from its start', async () => {
  const kit = makeKit({ completionTimeoutMs: 10_000 });
  await leftOver(kit, 'alive', 'running', 'running');
  await kit.clock.advance(4000);
  await reconcile(kit);
  assert.equal(kit.scheduler.running, 1);
  assert.equal(kit.reports('alive').length, 0);
  await kit.clock.advance(6000);
  assert.equal(kit.reports('alive')[0]?.outcome, 'timed-out');
});

test('a container that exited while the agent was away is reported with its exit code', async () => {
  const kit = makeKit();
  await leftOver(kit, 'died', 'running', 'exited');
  await reconcile(kit);
  const [report] = kit.reports('died');
  assert.equal(report?.outcome, 'failed');
  assert.equal(report.body.exitCode, 2);
});

test('a running job whose container vanished is reported lost', async () => {
  const kit = makeKit();
  await leftOver(kit, 'gone', 'started');
  await reconcile(kit);
  assert.equal(kit.reports('gone')[0]?.outcome, 'lost');
  assert.equal(kit.scheduler.running, 0);
});

test('creating without a container goes back to the queue and starts again; one created but never started is started', async () => {
  const kit = makeKit();
  await leftOver(kit, 'never-made', 'creating');
  const made = await leftOver(kit, 'made', 'creating', 'created');
  await reconcile(kit);
  assert.deepEqual(kit.store.transitions.filter((t) => t.startsWith('never-made ')).slice(-3), [
    'never-made creating→pending',
    'never-made pending→creating',
    'never-made creating→started',
  ]);
  assert.equal(kit.state('made'), 'started');
  assert.equal(kit.executor.containers.get(made ?? '')?.running, true);
  assert.equal(kit.executor.calls.filter((c) => c.startsWith('create')).length, 2, 'one new container, for never-made only');
});

test('completed jobs finish stopping; stopped ones are removed; queued ones queue again; strays are removed', async () => {
  const kit = makeKit();
  const done = await leftOver(kit, 'done', 'completed', 'running');
  await leftOver(kit, 'done-gone', 'completed');
  const stopped = await leftOver(kit, 'stopped', 'stopped', 'exited');
  await leftOver(kit, 'stopped-gone', 'stopped');
  await leftOver(kit, 'queued', 'pending');
  const stray = await kit.executor.create({ name: 'stray', image: IMAGE, command: undefined, env: {}, labels: { [LABEL_JOB]: 'unknown' } });
  await reconcile(kit);
  assert.equal(kit.executor.containers.get(done ?? '')?.running, false);
  assert.equal(kit.state('done'), 'stopped');
  assert.equal(kit.state('done-gone'), 'removed');
  assert.equal(kit.state('stopped-gone'), 'removed');
  assert.equal(kit.state('queued'), 'started');
  assert.equal(kit.executor.containers.has(stray), false);
  await kit.clock.advance(5000);
  assert.equal(kit.executor.containers.has(stopped ?? ''), false);
  assert.equal(kit.state('stopped'), 'removed');
  assert.equal(kit.delivered.length, 0, 'nothing here needed a report');
});

test('reconciling twice (after an engine outage) changes nothing more', async () => {
  const kit = makeKit({ completionTimeoutMs: 10_000 });
  await leftOver(kit, 'alive', 'running', 'running');
  await reconcile(kit);
  const transitions = kit.store.transitions.length;
  await reconcile(kit);
  assert.equal(kit.store.transitions.length, transitions);
  assert.equal(kit.scheduler.running, 1);
  assert.equal(kit.clock.timers, 1, 'one timeout, not two');
});

test('a job recorded started whose container was created but never started is started, not reported failed', async () => {
  const kit = makeKit();
  const made = await leftOver(kit, 'half', 'started', 'created');
  await reconcile(kit);
  assert.equal(kit.executor.containers.get(made ?? '')?.running, true);
  assert.deepEqual(kit.reports('half'), []);
  assert.equal(kit.scheduler.running, 1);
});
