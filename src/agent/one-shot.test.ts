import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { ManualClock } from '../testing/clock-kit.ts';
import { OneShot } from './one-shot.ts';

function watch(options: { maxJobs?: number; exitWhenIdleMs?: number }) {
  const clock = new ManualClock();
  const state = { idle: true, allTaken: false };
  let done = false;
  const oneShot = new OneShot({ clock, log: pino({ level: 'silent' }), idle: () => state.idle, allTaken: () => state.allTaken }, options);
  void oneShot.done.then(() => (done = true));
  oneShot.start();
  return { clock, state, isDone: () => done, oneShot };
}

test('--max-jobs: done once every allowed job was taken and nothing runs or waits for delivery', async () => {
  const w = watch({ maxJobs: 2 });
  await w.clock.advance(1000);
  assert.equal(w.isDone(), false, 'idle, but not every job was taken');
  w.state.allTaken = true;
  w.state.idle = false;
  await w.clock.advance(1000);
  assert.equal(w.isDone(), false, 'taken, but still running');
  w.state.idle = true;
  await w.clock.advance(200);
  assert.equal(w.isDone(), true);
});

test('--exit-when-idle: done after that long idle without a break; activity starts the count again', async () => {
  const w = watch({ exitWhenIdleMs: 1000 });
  await w.clock.advance(800);
  w.state.idle = false;
  await w.clock.advance(400);
  w.state.idle = true;
  await w.clock.advance(800);
  assert.equal(w.isDone(), false, 'the busy spell reset the count');
  await w.clock.advance(400);
  assert.equal(w.isDone(), true);
});

test('without either option nothing is watched', async () => {
  const w = watch({});
  assert.equal(w.oneShot.enabled, false);
  assert.equal(w.clock.timers, 0);
  await w.clock.advance(60_000);
  assert.equal(w.isDone(), false);
});
