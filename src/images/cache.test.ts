import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { MemoryStore } from '../jobs/memory-store.ts';
import type { ImageInfo } from '../shared/engine-facts.ts';
import { ImageCache, type ImageCacheOptions, type ImageEngine } from './cache.ts';

/** An engine whose pulls the test finishes by hand, with images of given sizes and a disk that frees up as they go. */
class FakeEngine implements ImageEngine {
  readonly present = new Map<string, number>();
  readonly pulls: Array<{ image: string; signal: AbortSignal | undefined; finish: () => void; fail: (err: Error) => void }> = [];
  readonly removed: string[] = [];
  diskFree: number | undefined = undefined;

  ensureImage(image: string, alwaysPull: boolean, signal?: AbortSignal): Promise<void> {
    if (this.present.has(image) && !alwaysPull) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pulls.push({
        image,
        signal,
        finish: () => {
          this.present.set(image, this.present.get(image) ?? 100);
          resolve();
        },
        fail: reject,
      });
      signal?.addEventListener('abort', () => reject(new Error('pull aborted')), { once: true });
    });
  }

  imageInfo(image: string): Promise<ImageInfo | undefined> {
    const size = this.present.get(image);
    return Promise.resolve(size === undefined ? undefined : { id: `sha256:${image}`, digest: `${image.split(':')[0]}@sha256:d-${image}`, sizeBytes: size });
  }

  removeImage(image: string): Promise<void> {
    const size = this.present.get(image) ?? 0;
    this.present.delete(image);
    this.removed.push(image);
    if (this.diskFree !== undefined) this.diskFree += size;
    return Promise.resolve();
  }

  freeBytes(): Promise<number | undefined> {
    return Promise.resolve(this.diskFree);
  }
}

function cache(options: Partial<ImageCacheOptions> = {}, needed: string[] = []) {
  let now = 1000;
  const engine = new FakeEngine();
  const records = new MemoryStore({ now: () => now });
  const removals: Array<[string, string]> = [];
  const images = new ImageCache(
    {
      engine,
      records,
      clock: { now: () => now },
      log: pino({ level: 'silent' }),
      needed: () => new Set(needed),
      onRemoved: (ref, reason) => removals.push([ref, reason]),
    },
    { budgetBytes: 0, lowFreeBytes: 0, highFreeBytes: 0, headerEntries: 50, headerBytes: 4096, ...options },
  );
  return { engine, records, images, removals, tick: (ms = 1000) => (now += ms), needed };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('concurrent jobs that need one image cause one pull, whatever alwaysPull each says', async () => {
  const { engine, images, records } = cache();
  const jobs = [images.ensure('app:1', false), images.ensure('app:1', true), images.ensure('app:1', false)];
  await flush();
  assert.equal(engine.pulls.length, 1, 'one pull for three jobs');
  engine.pulls[0]?.finish();
  await Promise.all(jobs);
  assert.deepEqual(
    records.images().map((r) => [r.ref, r.pulled]),
    [['app:1', true]],
    'recorded once, as pulled by this agent',
  );
  await images.ensure('app:1', false);
  assert.equal(engine.pulls.length, 1, 'present now: no pull');
});

test('a job that gives up leaves the shared pull to the others; when the last one gives up the pull stops', async () => {
  const { engine, images } = cache();
  const first = new AbortController();
  const second = new AbortController();
  const a = images.ensure('big:1', false, first.signal);
  const b = images.ensure('big:1', false, second.signal);
  await flush();
  first.abort(new Error('canceled'));
  await assert.rejects(a, /canceled/, 'the job that gave up is told at once');
  assert.equal(engine.pulls[0]?.signal?.aborted, false, 'the pull goes on for the other job');
  second.abort(new Error('shutdown'));
  await assert.rejects(b, /shutdown/, 'the second job gives up too');
  assert.equal(engine.pulls[0]?.signal?.aborted, true, 'no one waits: the pull stops');
});

test('x-foreman-images: most recently used first, reference and digest, bounded by entries and bytes', async () => {
  const { engine, images, tick } = cache({ headerEntries: 2 });
  for (const image of ['a:1', 'b:1', 'c:1']) {
    engine.present.set(image, 10);
    await images.ensure(image, false);
    tick();
  }
  assert.equal(images.header(), `c%3A1@sha256:d-c:1,b%3A1@sha256:d-b:1`, 'the two most recent');
  const small = cache({ headerBytes: 25 });
  small.engine.present.set('a:1', 10);
  await small.images.ensure('a:1', false);
  assert.equal(small.images.header(), 'a%3A1@sha256:d-a:1', 'one entry fits 25 bytes');
});

test('over the budget, the least recently used images the agent pulled are removed; needed, pulling and not-pulled ones stay', async () => {
  const { engine, images, records, removals, tick } = cache({ budgetBytes: 250 }, ['needed:1']);
  engine.present.set('theirs:1', 1000); // on the host before: never the agent's to remove
  await images.ensure('theirs:1', false);
  for (const image of ['old:1', 'needed:1', 'mid:1', 'new:1']) {
    tick();
    const pulling = images.ensure(image, false);
    await flush();
    engine.pulls.at(-1)?.finish();
    await pulling;
  }
  await images.collect();
  assert.deepEqual(
    removals,
    [
      ['old:1', 'budget'],
      ['mid:1', 'budget'],
    ],
    'least recently used first, needed:1 passed over, until the 400 bytes pulled are within 250',
  );
  assert.deepEqual(engine.removed, ['old:1', 'mid:1']);
  assert.equal(
    records.images().some((r) => r.ref === 'old:1'),
    false,
    'its record is gone',
  );
  assert.ok(engine.present.has('theirs:1'), 'an image the agent did not pull stays');
  assert.ok(engine.present.has('needed:1'), 'an image a job needs stays');
});

test('free disk under the low mark: images go, least recently used first, until the high mark is free', async () => {
  const { engine, images, removals, tick } = cache({ lowFreeBytes: 250, highFreeBytes: 450 });
  for (const image of ['x:1', 'y:1', 'z:1', 'w:1']) {
    tick();
    const pulling = images.ensure(image, false);
    await flush();
    engine.pulls.at(-1)?.finish();
    await pulling;
  }
  engine.diskFree = 200;
  await images.collect();
  assert.deepEqual(
    removals.map(([ref, why]) => `${ref} ${why}`),
    ['x:1 disk', 'y:1 disk', 'z:1 disk'],
    '200 free → 500 after three removals of 100 bytes',
  );
  engine.diskFree = undefined;
  await images.collect();
  assert.equal(removals.length, 3, 'a disk the agent cannot see removes nothing');
});
