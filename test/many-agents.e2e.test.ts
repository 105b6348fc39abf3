/**
 * Three real agents (different labels, one shared) and the reference control server on the real
 * engine: 60 jobs, each routed to an agent whose labels match, none run twice, all reported; then one
 * agent is killed with -9, and the server requeues its unfinished jobs, which finish on the others,
 * each reported once, by the agent that finished it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createControlServer } from '../src/server/app.ts';
import { ADMIN_TOKEN, operatorFetch } from './support/control-server.ts';

/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();
import { testJobImage } from './support/image.ts';
import { type SpawnedAgent, spawnAgent, stopAgent, storedAgentId, testEnv, type TestEnv } from './support/agents.ts';
import { cleanup, watchContainerEvents } from './support/containers.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

test('three agents share 60 jobs by label, and the jobs of one killed with -9 finish on the others', async (t) => {
  await testJobImage();
  const dir = await mkdtemp(join(tmpdir(), 'foreman-many-'));
  let server: Awaited<ReturnType<typeof createControlServer>> | undefined;
  let envs: Record<'a' | 'b' | 'c', TestEnv> | undefined;
  const agents: Partial<Record<'a' | 'b' | 'c', SpawnedAgent>> = {};
  let events: { stop: () => void } | undefined;
  const creates: string[] = [];
  const ids = { a: '', b: '', c: '' };
  try {
    // Agents poll every 100 ms, so one silent for 1.5 s is gone.
    server = await createControlServer({ adminTokens: [ADMIN_TOKEN], database: join(dir, 'cs.db'), tokens: ['many-token'], agentTimeoutMs: 1500 });
    // Every final update the server answered (a request cut off by the kill never is), by job, with its agent.
    const finals = new Map<string, string[]>();
    server.app.addHook('onResponse', (request, _reply, done) => {
      // The callback URL carries the job's secret as its query.
      const match = /^\/job\/([^/?]+)(?:\?|$)/.exec(request.url);
      if (request.method === 'PUT' && match && request.headers['x-foreman-job-status'] === 'completed') {
        const id = decodeURIComponent(match[1] ?? '');
        finals.set(id, [...(finals.get(id) ?? []), String(request.headers['x-foreman-agent-id'])]);
      }
      done();
    });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    const labels = { a: 'FOREMAN_CORE_LABELS_GPU', b: 'FOREMAN_CORE_LABELS_REGION', c: 'FOREMAN_CORE_LABELS_POOL' } as const;
    envs = {
      a: testEnv(`${base}/job`, {
        FOREMAN_CORE_TOKEN: 'many-token',
        FOREMAN_CORE_LABELS_QUEUE: 'many',
        [labels.a]: 'true',
        FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4',
      }),
      b: testEnv(`${base}/job`, {
        FOREMAN_CORE_TOKEN: 'many-token',
        FOREMAN_CORE_LABELS_QUEUE: 'many',
        [labels.b]: 'eu',
        FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4',
      }),
      c: testEnv(`${base}/job`, {
        FOREMAN_CORE_TOKEN: 'many-token',
        FOREMAN_CORE_LABELS_QUEUE: 'many',
        [labels.c]: 'spare',
        FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4',
      }),
    };
    for (const k of ['a', 'b', 'c'] as const) agents[k] = spawnAgent(envs[k]);
    events = await watchContainerEvents(['create'], 'foreman.managed=true', (e) => creates.push(e.Actor.Attributes['foreman.job-id'] ?? ''));
    const submit = async (body: unknown, jobLabels: Record<string, string>): Promise<string> => {
      const res = await fetch(`${base}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ image: 'foreman-test-job:latest', labels: { queue: 'many', ...jobLabels }, body }),
      });
      assert.equal(res.status, 201);
      return ((await res.json()) as { id: string }).id;
    };
    const jobs: Array<{ id: string; needs: string }> = [];
    for (let n = 0; n < 20; n++) {
      jobs.push({ id: await submit({ action: 'progress', steps: 3, delayMs: 300 }, { gpu: 'true' }), needs: 'gpu' });
      jobs.push({ id: await submit({ action: 'progress', steps: 3, delayMs: 300 }, { region: 'eu' }), needs: 'region' });
      // Long enough that some are still running on the agent killed below.
      jobs.push({ id: await submit({ action: 'progress', steps: 8, delayMs: 250 }, {}), needs: 'shared' });
    }
    const view = async (id: string): Promise<JobView> => (await (await fetch(`${base}/jobs/${id}`)).json()) as JobView;
    const agentsSeen = async (): Promise<Array<{ id: string; labels: Record<string, string> }>> =>
      (await (await fetch(`${base}/agents`)).json()) as Array<{ id: string; labels: Record<string, string> }>;
    await waitFor('three agents polling', async () => (await agentsSeen()).length === 3, 30_000);
    for (const agent of await agentsSeen()) {
      if (agent.labels.gpu === 'true') ids.a = agent.id;
      else if (agent.labels.region === 'eu') ids.b = agent.id;
      else ids.c = agent.id;
    }

    // Kill the agent of shared jobs only while it runs some.
    await waitFor(
      'the third agent to have finished shared jobs and to run more',
      async () => {
        const mine = (await Promise.all(jobs.map((j) => view(j.id)))).filter((v) => v.agentId === ids.c);
        const unfinished = mine.filter((v) => v.status !== 'completed');
        return mine.length - unfinished.length >= 2 && unfinished.length >= 2;
      },
      60_000,
      100,
    );
    await stopAgent(agents.c as SpawnedAgent, 'SIGKILL');

    const done = await waitFor(
      'all 60 jobs to complete',
      async () => {
        const views = await Promise.all(jobs.map((j) => view(j.id)));
        return views.every((v) => v.status === 'completed') ? views : undefined;
      },
      180_000,
      500,
    );

    for (const [k, v] of done.entries()) {
      const needs = jobs[k]?.needs;
      assert.equal(v.outcome, 'succeeded', `${v.id}: ${String(v.outcome)}`);
      if (needs === 'gpu') assert.equal(v.agentId, ids.a, `gpu job ${v.id} ran on the gpu agent`);
      if (needs === 'region') assert.equal(v.agentId, ids.b, `eu job ${v.id} ran on the eu agent`);
      // Reported once, by the agent that finished it.
      assert.deepEqual(finals.get(v.id), [v.agentId], `${v.id}: final updates from ${JSON.stringify(finals.get(v.id))}`);
    }
    // The server requeued what the killed agent had not finished (its list is read after the kill: a
    // job may finish, or be handed out, in the moment before it).
    const requeued = done.filter((v) => v.requeues > 0);
    assert.ok(requeued.length >= 1, 'the killed agent had unfinished jobs, and they were requeued');
    for (const v of requeued) assert.notEqual(v.agentId, ids.c, `${v.id} finished elsewhere`);
    t.diagnostic(`killed agent c with ${requeued.length} unfinished jobs`);
    // One container per job, and a second one only for a job the killed agent had.
    const counts = new Map<string, number>();
    for (const id of creates) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const j of jobs) {
      const made = counts.get(j.id) ?? 0;
      // A requeued job ran a second time only if the killed agent had started it (not just queued it).
      if (requeued.some((v) => v.id === j.id)) assert.ok(made === 1 || made === 2, `containers created for ${j.id}: ${made}`);
      else assert.equal(made, 1, `containers created for ${j.id}`);
    }
    t.diagnostic(
      `60 jobs: ${done.filter((v) => v.agentId === ids.a).length} on a, ${done.filter((v) => v.agentId === ids.b).length} on b, ${done.filter((v) => v.agentId === ids.c).length} on c; ${requeued.length} requeued`,
    );
  } finally {
    events?.stop();
    // The killed agent's containers are left running; they go with its cleanup.
    await Promise.all(Object.values(agents).map((agent) => stopAgent(agent, 'SIGTERM')));
    for (const k of ['a', 'b', 'c'] as const) if (envs) await cleanup(envs[k], ids[k] || storedAgentId(envs[k]));
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  }
});
