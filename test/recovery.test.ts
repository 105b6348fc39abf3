/** Fault tests with real processes and the real engine: kill -9, vanished containers, SIGTERM, callback outages, store failures. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { testJobImage } from './support/image.ts';
import {
  CallbackReceiver,
  FakeControlServer,
  cleanup,
  containersOf,
  freePort,
  docker,
  job,
  readLog,
  removeJobContainers,
  spawnAgent,
  startAgent,
  testEnv,
  waitFor,
  watchContainerEvents,
  assertInOrder,
  seqs,
  type TestEnv,
} from './support/harness.ts';



describe('recovery', () => {
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  const envs: Array<{ env: TestEnv; agentId?: string }> = [];

  before(async () => {
    await testJobImage();
    control = await new FakeControlServer().start();
    callbacks = await new CallbackReceiver().start();
  });

  after(async () => {
    await control?.close();
    await callbacks?.stop();
    for (const { env, agentId } of envs) await cleanup(env, agentId);
  });

  test('kill -9 mid-job, five times over: the job runs once, every update arrives in order, nothing is orphaned', async () => {
    const env = testEnv(control.url, { FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    const entry: { env: TestEnv; agentId?: string } = { env };
    envs.push(entry);
    const creates: string[] = [];
    const events = await watchContainerEvents(['create'], 'foreman.job-id=phoenix-1', (event) => creates.push(event.id));
    control.reply([job('phoenix-1', callbacks.url(), { action: 'progress', steps: 12, delayMs: 500, values: [1, 2] })]);
    let agent = spawnAgent(env);
    try {
      const first = await waitFor('the first update', () => callbacks.for('phoenix-1')[0]);
      const agentId = String(first.headers['x-foreman-agent-id']);
      entry.agentId = agentId;

      for (let round = 1; round <= 5; round++) {
        const before = callbacks.for('phoenix-1').length;
        agent.child.kill('SIGKILL');
        await agent.exited;
        if (round === 2) {
          // The control server sends the same job again; it must not start a second container.
          control.reply([job('phoenix-1', callbacks.url(), { action: 'progress', steps: 12, delayMs: 500, values: [1, 2] })]);
        }
        if (round === 3) {
          // A container carrying this agent's labels but no record: removed on restart.
          const ghost = await docker.createContainer({
            Image: 'foreman-test-job:latest',
            Labels: { 'foreman.managed': 'true', 'foreman.agent': agentId, 'foreman.job-id': 'ghost-1' },
          });
          await ghost.start();
        }
        agent = spawnAgent(env);
        // Let the restarted agent serve at least one more update before the next kill.
        await waitFor(`an update after restart ${round}`, () => callbacks.for('phoenix-1').length > before || callbacks.completion('phoenix-1'), 30_000);
      }

      const done = await callbacks.waitForCompletion('phoenix-1', 60_000);
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 3 });
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
      assertInOrder(callbacks.for('phoenix-1'));
      assert.equal(new Set(seqs(callbacks.for('phoenix-1'))).size, 13, 'twelve running updates and one completed');
      await waitFor('every container removed', async () => (await containersOf(agentId)).length === 0, 30_000);
      assert.equal(creates.length, 1, `the job's container was created ${creates.length} times`);
    } finally {
      events.stop();
      agent.child.kill('SIGKILL');
      await agent.exited;
    }
  });

  test('a container that vanished while the agent was down is reported as lost', async () => {
    const env = testEnv(control.url, { FOREMAN_CORE_PORT: String(await freePort()) });
    const entry: { env: TestEnv; agentId?: string } = { env };
    envs.push(entry);
    control.reply([job('vanish-1', callbacks.url(), { action: 'progress', steps: 100, delayMs: 200 })]);
    let agent = spawnAgent(env);
    try {
      const first = await waitFor('the first update', () => callbacks.for('vanish-1')[0]);
      entry.agentId = String(first.headers['x-foreman-agent-id']);
      agent.child.kill('SIGKILL');
      await agent.exited;
      await removeJobContainers(entry.agentId);
      agent = spawnAgent(env);
      const done = await callbacks.waitForCompletion('vanish-1');
      assert.equal(done.headers['x-foreman-job-outcome'], 'lost');
    } finally {
      agent.child.kill('SIGKILL');
      await agent.exited;
    }
  });

  test('SIGTERM stops and removes every container, reports agent-shutdown, and exits 0', async () => {
    const metricsPort = await freePort();
    const env = testEnv(control.url, {
      FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
      FOREMAN_CORE_ENV_API_KEY: 'hunter2-env-value',
    });
    const entry: { env: TestEnv; agentId?: string } = { env };
    envs.push(entry);
    control.reply([job('term-1', callbacks.url(), { action: 'sleep' }), job('term-2', callbacks.url(), { action: 'sleep' })]);
    const agent = spawnAgent(env);
    await waitFor('both containers running', async () => {
      const running = (await containersOf()).filter((c) => ['term-1', 'term-2'].includes(c.Labels['foreman.job-id'] ?? '') && c.State === 'running');
      if (running.length === 2) entry.agentId = running[0]?.Labels['foreman.agent'];
      return running.length === 2;
    });
    const metrics = await waitFor('metrics showing two running jobs', async () => {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => '');
      return /^foreman_jobs_running 2$/m.test(text) ? text : undefined;
    });
    assert.match(metrics, /^foreman_process_resident_memory_bytes \d+/m);
    const started = Date.now();
    agent.child.kill('SIGTERM');
    const code = await agent.exited;
    const tookMs = Date.now() - started;
    assert.equal(code, 0, readLog(agent.logFile).slice(-2000));
    assert.ok(tookMs < 20_000, `shutdown took ${tookMs} ms`);
    assert.equal((await containersOf(entry.agentId)).length, 0);
    for (const id of ['term-1', 'term-2']) {
      assert.equal(callbacks.completion(id)?.headers['x-foreman-job-outcome'], 'agent-shutdown');
    }
    const log = readLog(agent.logFile);
    assert.match(log, /"jobId":"term-1"/);
    assert.doesNotMatch(log, /test-token|hunter2-env-value/);
  });

  test('a second agent on the same data_dir refuses to start, with a clear line', async () => {
    const env = testEnv(control.url);
    envs.push({ env });
    const first = spawnAgent(env);
    try {
      await waitFor('the first agent to poll', () => readLog(first.logFile).includes('polling for jobs'));
      const second = spawnAgent(env);
      assert.equal(await second.exited, 1);
      const output = readLog(second.logFile);
      assert.match(output, /^foreman: another foreman agent \(pid \d+\) is using data_dir .*; give each agent its own data_dir$/m);
      assert.doesNotMatch(output, /\n\s+at /);
    } finally {
      first.child.kill('SIGTERM');
      await first.exited;
    }
  });

  test('a second signal exits at once', async () => {
    const env = testEnv(control.url);
    const entry: { env: TestEnv; agentId?: string } = { env };
    envs.push(entry);
    control.reply([job('twice-1', callbacks.url(), { action: 'sleep' })]);
    const agent = spawnAgent(env);
    await waitFor('the container running', async () => {
      const c = (await containersOf()).find((x) => x.Labels['foreman.job-id'] === 'twice-1' && x.State === 'running');
      entry.agentId = c?.Labels['foreman.agent'];
      return c;
    });
    agent.child.kill('SIGTERM');
    await waitFor('the first signal to be handled', () => readLog(agent.logFile).includes('send the signal again'));
    agent.child.kill('SIGTERM');
    assert.equal(await agent.exited, 130);
  });

  test('a callback that is down for 30 s around a completion gets every update afterwards, in order', async () => {
    const outage = await new CallbackReceiver().start();
    const url = outage.url();
    const env = testEnv(control.url);
    const agent = await startAgent(env);
    envs.push({ env, agentId: agent.agent.agentId });
    try {
      await outage.stop();
      const downAt = Date.now();
      control.reply([job('outage-1', url, { action: 'progress', steps: 3, delayMs: 100, values: [9] })]);
      // The container is answered 200 as soon as the update is stored, so it completes while the callback is down.
      const record = await waitFor('the job to complete without the callback', () => {
        const r = agent.store.get('outage-1');
        return r && (r.state === 'stopped' || r.state === 'removed') ? r : undefined;
      });
      assert.equal(record.outcome, 'succeeded');
      assert.equal(outage.requests.length, 0);
      await waitFor('30 s of outage', () => Date.now() - downAt >= 30_000, 40_000, 500);
      await outage.start();
      await outage.waitForCompletion('outage-1', 60_000);
      assertInOrder(outage.for('outage-1'));
      assert.equal(new Set(seqs(outage.for('outage-1'))).size, 4);
    } finally {
      await agent.close();
      await outage.stop();
    }
  });

  test('a store write failure gives the container 503; the retry is accepted and nothing is lost', async () => {
    const env = testEnv(control.url);
    const agent = await startAgent(env);
    envs.push({ env, agentId: agent.agent.agentId });
    const locker = new Database(join(agent.loaded.config.core.data_dir, 'foreman.db'));
    try {
      control.reply([job('locked-1', callbacks.url(), { action: 'sleep' })]);
      const record = await waitFor('locked-1 running', () => {
        const r = agent.store.get('locked-1');
        return r?.state === 'running' ? r : undefined;
      });
      const url = `${agent.agent.jobApiUrl}/job/locked-1?token=${record.secret}`;
      const put = () => fetch(url, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed' }, body: '{"n":1}' });

      locker.exec('BEGIN EXCLUSIVE');
      const refused = await put();
      assert.equal(refused.status, 503);
      assert.doesNotMatch(await refused.text(), /SQLITE|at /);
      locker.exec('ROLLBACK');

      assert.equal((await put()).status, 200);
      const done = await callbacks.waitForCompletion('locked-1');
      assert.equal(done.body.toString(), '{"n":1}');
      assert.equal(callbacks.for('locked-1').length, 1);
    } finally {
      locker.close();
      await agent.close();
    }
  });
});
