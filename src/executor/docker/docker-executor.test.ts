import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { DockerExecutor } from './docker-executor.ts';

test('watch ends, and lets go of the event stream, when its signal aborted while the subscription was being made', async () => {
  const stream = new PassThrough();
  let answer: (value: PassThrough) => void = () => undefined;
  const docker = { getEvents: () => new Promise<PassThrough>((resolve) => (answer = resolve)) } as unknown as Docker;
  const executor = new DockerExecutor({ docker, agentId: 'a', networkName: 'n', extraHosts: [], memoryLimit: 0 });
  const stop = new AbortController();
  const watching = executor.watch(() => undefined, stop.signal);
  stop.abort();
  answer(stream);
  // Before the fix this never settled: the abort had fired before anyone listened for it.
  const outcome = await Promise.race([watching.then(() => 'ended'), new Promise((resolve) => setTimeout(() => resolve('still watching'), 1000))]);
  assert.equal(outcome, 'ended');
  assert.ok(stream.destroyed, 'the engine connection is closed');
});
