import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IllegalTransitionError,
  holdsSlot,
  onContainerExited,
  onContainerMissing,
  onFetch,
  onLaunchFailed,
  onReadopt,
  onRejected,
  onShutdown,
  onTimeout,
  onUpdate,
  readoptLooksAtContainer,
  transition,
  type ContainerPhase,
  type JobState,
} from './state.ts';

const states: JobState[] = ['pending', 'creating', 'started', 'running', 'completed', 'stopped', 'removed'];
const legal = new Set([
  'pending→creating',
  'pending→removed',
  'creating→started',
  'creating→stopped',
  'creating→pending',
  'started→running',
  'started→completed',
  'started→stopped',
  'running→completed',
  'running→stopped',
  'completed→stopped',
  'stopped→removed',
]);

test('every pair of states is either a legal transition or an IllegalTransitionError', () => {
  for (const from of states) {
    for (const to of states) {
      const key = `${from}→${to}`;
      if (legal.has(key)) assert.equal(transition('j', from, to), to, key);
      else assert.throws(() => transition('j', from, to), IllegalTransitionError, key);
    }
  }
});

test('the happy path is legal from end to end', () => {
  let state: JobState = 'pending';
  for (const next of ['creating', 'started', 'running', 'completed', 'stopped', 'removed'] as const) {
    state = transition('j', state, next);
  }
  assert.equal(state, 'removed');
});

test('a slot is held from creating until stopped', () => {
  assert.deepEqual(states.filter(holdsSlot), ['creating', 'started', 'running', 'completed']);
});

test('container exited: completed jobs finish stopping; running ones end failed or oom-killed; others ignore it', () => {
  assert.deepEqual(onContainerExited('completed', false), { kind: 'move', to: 'stopped' });
  assert.deepEqual(onContainerExited('started', false), { kind: 'end', outcome: 'failed', to: 'stopped' });
  assert.deepEqual(onContainerExited('running', true), { kind: 'end', outcome: 'oom-killed', to: 'stopped' });
  for (const state of ['pending', 'creating', 'stopped', 'removed'] as const) assert.equal(onContainerExited(state, false).kind, 'ignore', state);
});

test('timeout: ends a launching or running job as timed-out, nothing else', () => {
  for (const state of ['creating', 'started', 'running'] as const) assert.deepEqual(onTimeout(state), { kind: 'end', outcome: 'timed-out', to: 'stopped' });
  for (const state of ['pending', 'completed', 'stopped', 'removed'] as const) assert.equal(onTimeout(state).kind, 'ignore', state);
});

test('launch failure: pull-failed or start-failed unless the job already ended', () => {
  assert.deepEqual(onLaunchFailed('creating', 'pull'), { kind: 'end', outcome: 'pull-failed', to: 'stopped' });
  assert.deepEqual(
    onLaunchFailed('creating', 'hook'),
    { kind: 'end', outcome: 'hook-failed', to: 'stopped' },
    'a failed pre_job hook ends the job hook-failed',
  );
  assert.deepEqual(onLaunchFailed('started', 'start'), { kind: 'end', outcome: 'start-failed', to: 'stopped' });
  assert.equal(onLaunchFailed('completed', 'start').kind, 'ignore');
});

test('container missing: a never-made container re-queues, a running job is lost, finished ones are forgotten', () => {
  assert.deepEqual(onContainerMissing('creating'), { kind: 'requeue' });
  assert.deepEqual(onContainerMissing('pending'), { kind: 'requeue' });
  assert.deepEqual(onContainerMissing('running'), { kind: 'end', outcome: 'lost', to: 'stopped' });
  assert.deepEqual(onContainerMissing('started'), { kind: 'end', outcome: 'lost', to: 'stopped' });
  assert.deepEqual(onContainerMissing('completed'), { kind: 'forget' });
  assert.deepEqual(onContainerMissing('stopped'), { kind: 'forget' });
  assert.equal(onContainerMissing('removed').kind, 'ignore');
});

test('shutdown: queued jobs are dropped (removed), launching and running ones stopped, completed ones finish stopping', () => {
  assert.deepEqual(onShutdown('pending'), { kind: 'end', outcome: 'agent-shutdown', to: 'removed' });
  for (const state of ['creating', 'started', 'running'] as const)
    assert.deepEqual(onShutdown(state), { kind: 'end', outcome: 'agent-shutdown', to: 'stopped' });
  assert.deepEqual(onShutdown('completed'), { kind: 'finish-stop' });
  assert.equal(onShutdown('stopped').kind, 'ignore');
});

test('a rejected job ends from pending straight to removed, reported invalid', () => {
  const decision = onRejected();
  assert.deepEqual(decision, { kind: 'end', outcome: 'invalid', to: 'removed' });
  assert.equal(transition('j', 'pending', decision.to), 'removed');
});

test('every ending a decision asks for is a legal transition from the state it was decided in', () => {
  const deciders = [(s: JobState) => onContainerExited(s, false), onTimeout, (s: JobState) => onLaunchFailed(s, 'pull'), onContainerMissing, onShutdown];
  for (const decide of deciders) {
    for (const from of states) {
      const d = decide(from);
      if (d.kind === 'end' || d.kind === 'move') assert.equal(transition('j', from, d.to), d.to, `${from} → ${d.to}`);
      if (d.kind === 'requeue' && from !== 'pending') assert.equal(transition('j', from, 'pending'), 'pending');
    }
  }
});

test('job API: the first GET moves started → running; PUTs are accepted only while started or running', () => {
  assert.deepEqual(onFetch('started'), { kind: 'serve', to: 'running' });
  assert.deepEqual(onFetch('running'), { kind: 'serve' });
  for (const state of ['completed', 'stopped', 'removed'] as const) assert.equal(onFetch(state).kind, 'refuse-ended');
  assert.deepEqual(onUpdate('started', 'running'), { kind: 'accept', to: 'running' });
  assert.deepEqual(onUpdate('running', 'running'), { kind: 'accept' });
  assert.deepEqual(onUpdate('running', 'completed'), { kind: 'accept', to: 'completed', outcome: 'succeeded' });
  assert.equal(onUpdate('completed', 'running').kind, 'refuse-ended');
  assert.equal(onUpdate('creating', 'running').kind, 'refuse-not-running');
  assert.equal(onUpdate('pending', 'completed').kind, 'refuse-not-running');
});

test('re-adoption: every stored state × container phase × cancel flag has its decision', () => {
  const phases: ContainerPhase[] = ['missing', 'created', 'running', 'exited'];
  // Per stored state and cancel flag: the decision for a container that is missing, created, running, exited.
  // `+` marks that `started` is recorded first (the store still said `creating`).
  const table: Record<JobState, { readonly plain: readonly string[]; readonly canceling: readonly string[] }> = {
    pending: { plain: ['requeue', 'requeue', 'requeue', 'requeue'], canceling: ['cancel', 'cancel', 'cancel', 'cancel'] },
    creating: { plain: ['missing', 'start+', 'adopt+', 'exited+'], canceling: ['cancel', 'cancel', 'cancel', 'cancel'] },
    started: { plain: ['missing', 'start', 'adopt', 'exited'], canceling: ['missing', 'start', 'stop-canceled', 'exited'] },
    running: { plain: ['missing', 'exited', 'adopt', 'exited'], canceling: ['missing', 'exited', 'stop-canceled', 'exited'] },
    completed: { plain: ['missing', 'exited', 'finish-stop', 'exited'], canceling: ['missing', 'exited', 'finish-stop', 'exited'] },
    stopped: {
      plain: ['missing', 'resume-removal', 'resume-removal', 'resume-removal'],
      canceling: ['missing', 'resume-removal', 'resume-removal', 'resume-removal'],
    },
    removed: { plain: ['ignore', 'ignore', 'ignore', 'ignore'], canceling: ['ignore', 'ignore', 'ignore', 'ignore'] },
  };
  let rows = 0;
  for (const state of states) {
    for (const canceling of [false, true]) {
      const expected = table[state][canceling ? 'canceling' : 'plain'];
      const got = phases.map((phase) => {
        const d = onReadopt(state, phase, canceling);
        rows++;
        return d.kind + ('recordStart' in d && d.recordStart ? '+' : '');
      });
      assert.deepEqual(got, expected, `${state}${canceling ? ', canceling' : ''} with a container ${phases.join('/')}`);
      // Where the phase is not looked at, it must not matter.
      if (!readoptLooksAtContainer(state, canceling))
        assert.equal(new Set(got).size, 1, `${state}${canceling ? ', canceling' : ''}: the container is not looked at`);
    }
  }
  assert.equal(rows, 7 * 4 * 2, 'every combination was decided');
});
