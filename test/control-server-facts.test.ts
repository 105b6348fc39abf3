/**
 * What agents tell the reference control server beyond the seed protocol: their host facts and images on each poll
 * (x-foreman-attributes, x-foreman-images), a job's usage on its final report (x-foreman-usage); and the hand-out's
 * preference for an agent that already has a job's image.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatLabelsHeader } from '../packages/control-server-kit/index.ts';
import { HEADER, encodeUsage } from '../src/protocol/wire.ts';
import { AGENT_TOKEN, operatorFetch, startControlServer } from './support/control-server.ts';
import type { RunningServer } from './support/control-server.ts';
import { waitFor } from './support/wait.ts';

const fetch = operatorFetch();
const WINDOW_MS = 3_000;

interface Agent {
  id: string;
  attributes: Record<string, string>;
  images: string[];
}

describe('agent facts, job usage and the image preference', () => {
  let dir: string;
  let cs: RunningServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-facts-'));
    cs = await startControlServer({ database: join(dir, 'cs.db'), imagePreferenceMs: WINDOW_MS });
  });
  after(async () => {
    await cs?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function poll(agent: string, queue: string, capacity: number, extra: Record<string, string> = {}): Promise<string[]> {
    const response = await fetch(`${cs.base}/job`, {
      headers: {
        authorization: `Bearer ${AGENT_TOKEN}`,
        [HEADER.agentId]: agent,
        [HEADER.labels]: formatLabelsHeader({ queue }),
        [HEADER.capacity]: String(capacity),
        ...extra,
      },
    });
    assert.equal(response.status, 200, `poll of ${agent}: ${await response.clone().text()}`);
    return ((await response.json()) as Array<{ id: string }>).map((job) => job.id);
  }

  async function submit(image: string, queue: string): Promise<string> {
    const response = await fetch(`${cs.base}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image, labels: { queue } }),
    });
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { id: string }).id;
  }

  async function agent(id: string): Promise<Agent | undefined> {
    return ((await (await fetch(`${cs.base}/agents`)).json()) as Agent[]).find((each) => each.id === id);
  }

  it('records the host facts and images a poll carries; a bad header is ignored, never a 500', async () => {
    const attributes = 'cpus=4,memory=8589934592,engine=docker,engine_version=20.10.24,disk_free=1073741824';
    const images = `${encodeURIComponent('registry:5000/app:1')}@sha256:aa,busybox@sha256:bb`;
    await poll('facts-agent', 'facts', 0, { [HEADER.attributes]: attributes, [HEADER.images]: images });
    const seen = await agent('facts-agent');
    assert.deepEqual(
      seen?.attributes,
      { cpus: '4', memory: '8589934592', engine: 'docker', engine_version: '20.10.24', disk_free: '1073741824' },
      'GET /agents shows the facts',
    );
    assert.deepEqual(seen.images, ['registry:5000/app:1', 'busybox'], 'and the image references');
    await poll('facts-agent', 'facts', 0, { [HEADER.attributes]: 'cpus=%E0%A4%A,=x', [HEADER.images]: '%E0%A4%A@sha256:x' });
    const after = await agent('facts-agent');
    assert.equal(after?.attributes.cpus, '4', 'a malformed attributes header keeps the last good facts');
    assert.deepEqual(after.images, [], 'images are what the last poll listed');
  });

  it("records a job's usage from its final report; GET /jobs shows it", async () => {
    const id = await submit('usage-img', 'usage');
    assert.deepEqual(await poll('usage-agent', 'usage', 1), [id]);
    const usage = { cpuSeconds: 1.25, memoryPeakBytes: 50_000_000, memoryLimitBytes: 268_435_456, pidsPeak: 4, wallMs: 3_200 };
    const { callbackUrl } = await cs.urls(id);
    const put = await fetch(callbackUrl, {
      method: 'PUT',
      headers: { [HEADER.jobStatus]: 'completed', [HEADER.agentId]: 'usage-agent', [HEADER.usage]: encodeUsage(usage) },
      body: '{}',
    });
    assert.equal(put.status, 200, 'the report is applied');
    const jobs = (await (await fetch(`${cs.base}/jobs?label=queue%3Dusage`)).json()) as Array<{ id: string; usage: unknown }>;
    assert.deepEqual(jobs.find((job) => job.id === id)?.usage, usage, 'GET /jobs shows the usage');
    const bad = await submit('usage-img', 'usage');
    await poll('usage-agent', 'usage', 1);
    const badPut = await fetch((await cs.urls(bad)).callbackUrl, {
      method: 'PUT',
      headers: { [HEADER.jobStatus]: 'completed', [HEADER.agentId]: 'usage-agent', [HEADER.usage]: 'not json' },
    });
    assert.equal(badPut.status, 200, 'a report with a bad usage header is still applied');
    assert.equal(((await (await fetch(`${cs.base}/jobs/${bad}`)).json()) as { usage: unknown }).usage, null, 'the bad usage is ignored');
  });

  it('holds a new job back from an agent lacking its image while a live agent that has it may take it, then lets anyone take it', async () => {
    const images = { [HEADER.images]: `${encodeURIComponent('pref-img:1')}@sha256:cc` };
    assert.deepEqual(await poll('has-image', 'pref', 1, images), [], 'the agent with the image polls: nothing yet');
    const first = await submit('pref-img:1', 'pref');
    assert.deepEqual(await poll('lacks-image', 'pref', 1), [], 'the agent without the image is held off');
    assert.deepEqual(await poll('has-image', 'pref', 1, images), [first], 'the agent with the image gets it at once');

    const other = await submit('other-img', 'pref');
    assert.deepEqual(await poll('lacks-image', 'pref', 1), [other], 'a job whose image no agent has goes to anyone at once');

    const submitted = Date.now();
    const second = await submit('pref-img:1', 'pref');
    assert.deepEqual(await poll('lacks-image', 'pref', 1), [], 'held off during the window');
    const taken = await waitFor(
      'the job to go to the agent without the image',
      async () => ((await poll('lacks-image', 'pref', 1)).includes(second) ? Date.now() : 0),
      20_000,
      100,
    );
    assert.ok(taken - submitted >= WINDOW_MS, `handed out ${taken - submitted} ms after it was queued, not before the ${WINDOW_MS} ms window ended`);
  });

  it('does not hold a job for an agent that has its image but lacks its labels or free slots', async () => {
    const images = { [HEADER.images]: 'pref2-img@sha256:dd' };
    await poll('has-image-elsewhere', 'other-queue', 1, images);
    await poll('has-image-full', 'pref2', 0, images);
    const id = await submit('pref2-img', 'pref2');
    assert.deepEqual(await poll('lacks-image-2', 'pref2', 1), [id], 'handed out at once: no live, matching agent with free slots has the image');
  });
});
