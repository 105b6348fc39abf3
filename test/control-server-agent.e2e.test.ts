/** The reference control server and a real agent on the real engine: a cancel from POST /jobs/<id>/cancel reaches the container. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createControlServer, type ControlServer } from '../src/server/app.ts';
import { ADMIN_TOKEN, operatorFetch } from './support/control-server.ts';

/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();
import { testJobImage } from './support/image.ts';
import { type InProcessAgent, startAgent, testEnv, type TestEnv } from './support/agents.ts';
import { cleanup, watchContainerEvents } from './support/containers.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

test('a job canceled on the reference server is stopped by the agent within a second and ends canceled', async (t) => {
  await testJobImage();
  const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-agent-'));
  let server: ControlServer | undefined;
  let env: TestEnv | undefined;
  let agent: InProcessAgent | undefined;
  let events: { stop: () => void } | undefined;
  try {
    server = await createControlServer({ adminTokens: [ADMIN_TOKEN], database: join(dir, 'cs.db'), tokens: ['cs-token'] });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    env = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: 'cs-token', FOREMAN_CORE_LABELS_QUEUE: 'cancel-e2e', FOREMAN_CORE_MAX_CONCURRENT_JOBS: '1' });
    const running = (agent = await startAgent(env));
    const kills: Array<{ signal: string; at: number }> = [];
    events = await watchContainerEvents(['kill'], `foreman.agent=${running.agent.agentId}`, (e) =>
      kills.push({ signal: e.Actor.Attributes.signal ?? '?', at: e.timeNano / 1e6 }),
    );
    const job = async (id: string): Promise<JobView> => (await (await fetch(`${base}/jobs/${encodeURIComponent(id)}`)).json()) as JobView;
    const submit = async (body: unknown): Promise<string> => {
      const res = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201);
      return ((await res.json()) as { id: string }).id;
    };
    const sleeping = await submit({ image: 'foreman-test-job:latest', labels: { queue: 'cancel-e2e' }, body: { action: 'sleep' } });
    const waiting = await submit({ image: 'foreman-test-job:latest', labels: { queue: 'cancel-e2e' }, body: { values: [20, 22] } });
    // A sleeping job sends no update, so the server still says assigned; the agent knows it runs.
    await waitFor('the first job running', () => running.store.get(sleeping)?.state === 'running', 30_000);
    assert.equal((await job(sleeping)).status, 'assigned');

    const requestedAt = Date.now();
    const cancel = await fetch(`${base}/jobs/${sleeping}/cancel`, { method: 'POST' });
    assert.equal(cancel.status, 202);
    const ended = await waitFor(
      'the job to end',
      async () => {
        const view = await job(sleeping);
        return view.status === 'completed' ? view : undefined;
      },
      30_000,
    );
    const sigterm = kills.find((k) => k.signal === '15');
    assert.ok(sigterm, JSON.stringify(kills));
    // The agent polls every 100 ms here, so the cancel reaches it with its next poll.
    t.diagnostic(`stop signal ${Math.round(sigterm.at - requestedAt)} ms after POST /jobs/<id>/cancel`);
    assert.ok(sigterm.at - requestedAt < 1500, `stop signal ${sigterm.at - requestedAt} ms after the cancel request`);
    assert.equal(ended.outcome, 'canceled');

    // The slot it freed goes to the waiting job.
    const next = await waitFor(
      'the second job to complete',
      async () => {
        const view = await job(waiting);
        return view.status === 'completed' ? view : undefined;
      },
      30_000,
    );
    assert.equal(next.outcome, 'succeeded');
    assert.deepEqual(next.result, { result: 42 });
  } finally {
    events?.stop();
    await agent?.close();
    await server?.close();
    if (env) await cleanup(env, agent?.agent.agentId);
    await rm(dir, { recursive: true, force: true });
  }
});

test("a job's own timeout, submitted to the reference server: the agent holds the job to it, and refuses one above core.max_job_timeout", async () => {
  await testJobImage();
  const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-agent-'));
  let server: ControlServer | undefined;
  let env: TestEnv | undefined;
  let agent: InProcessAgent | undefined;
  try {
    server = await createControlServer({ adminTokens: [ADMIN_TOKEN], database: join(dir, 'cs.db'), tokens: ['cs-token'] });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    env = testEnv(`${base}/job`, {
      FOREMAN_CORE_TOKEN: 'cs-token',
      FOREMAN_CORE_LABELS_QUEUE: 'timeout-e2e',
      FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '2m',
      FOREMAN_CORE_MAX_JOB_TIMEOUT: '1h',
    });
    const running = (agent = await startAgent(env));
    const submit = async (body: unknown): Promise<string> => {
      const res = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201, await res.clone().text());
      return ((await res.json()) as { id: string }).id;
    };
    const ended = (id: string): Promise<JobView & { result: { message?: string; reason?: string } }> =>
      waitFor(
        `${id} to end`,
        async () => {
          const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as JobView & { result: { message?: string; reason?: string } };
          return view.status === 'completed' ? view : undefined;
        },
        60_000,
      );
    const short = await submit({ image: 'foreman-test-job:latest', labels: { queue: 'timeout-e2e' }, body: { action: 'sleep' }, timeout: 1500 });
    const tooLong = await submit({ image: 'foreman-test-job:latest', labels: { queue: 'timeout-e2e' }, body: { values: [1] }, timeout: 7_200_000 });
    const timedOut = await ended(short);
    assert.equal(timedOut.outcome, 'timed-out', 'the sleeping job is stopped at its own timeout, not at job_completion_timeout (2 minutes)');
    assert.equal(timedOut.result.message, 'the job did not report completed within its timeout (1500 ms)');
    const started = running.store.get(short)?.startedAt ?? 0;
    const stopped = running.store.get(short)?.stoppedAt ?? 0;
    assert.ok(stopped - started >= 1500, `stopped ${stopped - started} ms after its container started: no earlier than its timeout`);
    const refused = await ended(tooLong);
    assert.equal(refused.outcome, 'invalid', 'a job asking for more than core.max_job_timeout is refused');
    assert.equal(refused.result.message, 'the job failed validation: timeout 7200000 is more than this agent allows (core.max_job_timeout = 3600000)');
    assert.equal(running.store.get(tooLong)?.containerId ?? null, null, 'and gets no container');
  } finally {
    await agent?.close();
    await server?.close();
    if (env) await cleanup(env, agent?.agent.agentId);
    await rm(dir, { recursive: true, force: true });
  }
});
