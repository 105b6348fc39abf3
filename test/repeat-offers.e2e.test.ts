/**
 * A control server that offers the same jobs on every poll (legal: hand-out is at-least-once) must
 * not drive the agent into polling as fast as it can, nor fill its log: one line per job, not per poll.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { testJobImage } from './support/image.ts';
import { type Stack, startStack } from './support/agents.ts';
import { job } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

let stack: Stack;

before(async () => {
  await testJobImage();
  stack = await startStack();
});

after(() => stack?.close());

test('the same running job and the same invalid job offered on every poll: polls stay poll_frequency apart, each logged once', async (t) => {
  const { control, callbacks, running } = stack;
  const offer = [job('again-1', callbacks.url(), { action: 'sleep' }), { id: 'again-bad', callbackUrl: callbacks.url(), body: {} }];
  // Enough replies for 2,400 polls a second; poll_frequency is 100 ms in the test config.
  control.reply(...Array.from({ length: 2000 }, () => offer));
  await waitFor('the job to run', () => running.store.get('again-1')?.state === 'started', 30_000);
  const from = control.polls.length;
  const started = Date.now();
  await waitFor('two seconds of polls', () => Date.now() - started >= 2000, 5000, 100);
  const polls = control.polls.length - from;
  const elapsed = Date.now() - started;
  t.diagnostic(`${polls} polls in ${elapsed} ms`);
  assert.ok(polls <= Math.ceil(elapsed / 100) + 3, `${polls} polls in ${elapsed} ms`);
  const log = readFileSync(running.logFile, 'utf8');
  assert.equal(log.split('job id already known to this agent').length - 1, 1, 'the repeated job is logged once');
  assert.equal(log.split('rejected an invalid job').length - 1, 1, 'the repeated invalid job is logged once');
  assert.equal(callbacks.for('again-bad').length, 1, 'the invalid job is reported once');
});
