import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IllegalTransitionError, holdsSlot, transition, type JobState } from './state.ts';

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
  assert.deepEqual(
    states.filter(holdsSlot),
    ['creating', 'started', 'running', 'completed'],
  );
});
