/**
 * The image cache on the real engine, with a private registry of the test's own (Debian's docker-registry): images
 * a budget cannot hold are removed least recently used first, never one a running job uses; a job for a removed
 * image pulls it again; the polls tell the control server the host's facts and the images it has.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { testJobImage } from './support/image.ts';
import { type Stack, startStack } from './support/agents.ts';
import { docker } from './support/containers.ts';
import { job } from './support/reports.ts';
import { follow, Registry } from './support/registry.ts';
import { waitFor } from './support/wait.ts';

const skip =
  spawnSync('sh', ['-c', 'command -v docker-registry']).status === 0 ? false : 'docker-registry not installed (apt-get install docker-registry; .ci/run does)';

const present = async (image: string): Promise<boolean> =>
  docker
    .getImage(image)
    .inspect()
    .then(() => true)
    .catch(() => false);

describe('the image cache', { skip }, () => {
  let registry: Registry | undefined;
  let stack: Stack | undefined;
  const images: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' };
  let sizeBytes = 0;

  before(async () => {
    const local = await testJobImage();
    registry = await new Registry().start();
    for (const name of ['a', 'b', 'c'] as const) {
      const repo = `127.0.0.1:${registry.port}/cache/${name}`;
      await docker.getImage(local).tag({ repo, tag: '1' });
      images[name] = `${repo}:1`;
      // The engine insists on a registry auth header, even an empty one.
      await follow(await docker.getImage(images[name]).push({ authconfig: { username: '', password: '', serveraddress: `127.0.0.1:${registry.port}` } }));
      // Only a pull brings it back.
      await docker.getImage(images[name]).remove();
    }
    sizeBytes = ((await docker.getImage(local).inspect()) as { Size: number }).Size;
    // Room for two of them: a third is one too many.
    stack = await startStack({ FOREMAN_IMAGES_BUDGET_BYTES: String(Math.floor(sizeBytes * 2.5)), FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4' });
  });

  after(async () => {
    await stack?.close();
    for (const image of Object.values(images))
      if (image)
        await docker
          .getImage(image)
          .remove()
          .catch(() => undefined);
    await registry?.stop();
  });

  test('over the budget the least recently used image goes, not the one a running job uses; a job for it pulls it again', async () => {
    assert.ok(stack && registry, 'set up');
    const { control, callbacks } = stack;
    // a: a job that keeps running; b and c: jobs that complete, c last.
    control.reply([job('cache-a', callbacks.url(), { action: 'sleep' }, { image: images.a })]);
    await waitFor('cache-a to run', () => stack?.running.store.get('cache-a')?.state === 'running', 60_000);
    control.reply([job('cache-b', callbacks.url(), { values: [1] }, { image: images.b })]);
    await callbacks.waitForCompletion('cache-b', 60_000);
    control.reply([job('cache-c', callbacks.url(), { values: [2] }, { image: images.c })]);
    await callbacks.waitForCompletion('cache-c', 60_000);

    // Three images of ~S over a 2.5 S budget: a is the oldest but its job runs, so b goes.
    await waitFor('b to be removed', async () => !(await present(images.b)), 30_000, 200);
    assert.ok(await present(images.a), 'the image a running job uses stays');
    assert.ok(await present(images.c), 'the most recently used stays');

    // The polls say which images the agent has, most recently used first, with their digests.
    const lastPoll = await waitFor('a poll listing the images', () => {
      const header = String(control.polls.at(-1)?.headers['x-foreman-images'] ?? '');
      return header.includes(encodeURIComponent(images.c)) && !header.includes(encodeURIComponent(images.b)) ? control.polls.at(-1) : undefined;
    });
    const listed = String(lastPoll.headers['x-foreman-images'])
      .split(',')
      .map((entry) => decodeURIComponent(entry.slice(0, entry.lastIndexOf('@'))));
    assert.deepEqual(listed, [images.c, images.a], 'c, then a; b is gone');
    assert.match(String(lastPoll.headers['x-foreman-images']), /@sha256:[0-9a-f]{64}/, 'each with its digest');
    const attributes = Object.fromEntries(
      String(lastPoll.headers['x-foreman-attributes'])
        .split(',')
        .map((pair) => pair.split('=').map(decodeURIComponent)),
    ) as Record<string, string>;
    assert.equal(attributes.os, 'linux', `the host's facts: ${JSON.stringify(attributes)}`);
    assert.ok(Number(attributes.cpus) >= 1 && Number(attributes.memory) > 0, 'CPUs and memory');
    assert.equal(attributes.executor, 'docker', 'the executor');
    assert.ok(attributes.engine === 'docker' || attributes.engine === 'podman', 'the engine kind');

    // A job for the removed image pulls it again and completes.
    const mark = registry.log.length;
    control.reply([job('cache-b2', callbacks.url(), { values: [3] }, { image: images.b })]);
    const done = await callbacks.waitForCompletion('cache-b2', 60_000);
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'the job for the removed image ran');
    assert.match(registry.log.slice(mark), /manifests\/1/, 'it was pulled again from the registry');

    control.replyHeaders = { 'x-foreman-cancel': 'cache-a' };
    await callbacks.waitForCompletion('cache-a', 60_000);
    control.replyHeaders = {};
  });
});
