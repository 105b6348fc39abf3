/** Fault tests with real processes and the real engine: kill -9, vanished containers, SIGTERM, callback outages, store failures. */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { testJobImage } from './support/image.ts';
import { exitCode, readLog, spawnAgent, spawnStack, startStack, stopAgent } from './support/agents.ts';
import { containersOf, docker, removeJobContainers, watchContainerEvents } from './support/containers.ts';
import { freePort } from './support/ports.ts';
import { assertInOrder, job, seqs } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

describe('recovery', () => {
  before(() => testJobImage());

  test('kill -9 mid-job, five times over: the job runs once, every update arrives in order, nothing is orphaned', async () => {
    const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    const { control, callbacks } = s;
    let events: { stop: () => void } | undefined;
    try {
      const agentId = await s.waitForAgentId();
      const creates: string[] = [];
      events = await watchContainerEvents(['create'], `foreman.agent=${agentId}`, (event) => {
        if (event.Actor.Attributes['foreman.job-id'] === 'phoenix-1') creates.push(event.id);
      });
      control.reply([job('phoenix-1', callbacks.url(), { action: 'progress', steps: 12, delayMs: 500, values: [1, 2] })]);
      await waitFor('the first update', () => callbacks.for('phoenix-1')[0]);

      for (let round = 1; round <= 5; round++) {
        const before = callbacks.for('phoenix-1').length;
        await s.stop({ signal: 'SIGKILL' });
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
        await s.restart();
        // Let the restarted agent serve at least one more update before the next kill.
        await waitFor(`an update after restart ${round}`, () => callbacks.for('phoenix-1').length > before || callbacks.completion('phoenix-1'), 30_000);
      }

      const done = await callbacks.waitForCompletion('phoenix-1', 60_000);
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 3 });
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
      // Re-adopted five times: CPU time still counts from the container's start, and the report says what restarts leave out.
      const usage = JSON.parse(String(done.headers['x-foreman-usage'])) as { cpuSeconds: number; wallMs: number; note?: string };
      assert.ok(usage.cpuSeconds > 0 && usage.wallMs > 5000, `usage across restarts: ${JSON.stringify(usage)}`);
      assert.match(usage.note ?? '', /restarted/, 'the note says the agent restarted while it ran');
      assertInOrder(callbacks.for('phoenix-1'));
      assert.equal(new Set(seqs(callbacks.for('phoenix-1'))).size, 13, 'twelve running updates and one completed');
      await waitFor('every container removed', async () => (await containersOf(agentId)).length === 0, 30_000);
      assert.equal(creates.length, 1, `the job's container was created ${creates.length} times`);
    } finally {
      events?.stop();
      await s.close({ signal: 'SIGKILL' });
    }
  });

  test('a container that vanished while the agent was down is reported as lost', async () => {
    const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()) });
    try {
      s.control.reply([job('vanish-1', s.callbacks.url(), { action: 'progress', steps: 100, delayMs: 200 })]);
      const first = await waitFor('the first update', () => s.callbacks.for('vanish-1')[0]);
      await s.stop({ signal: 'SIGKILL' });
      await removeJobContainers(String(first.headers['x-foreman-agent-id']));
      await s.restart();
      const done = await s.callbacks.waitForCompletion('vanish-1');
      assert.equal(done.headers['x-foreman-job-outcome'], 'lost');
    } finally {
      await s.close({ signal: 'SIGKILL' });
    }
  });

  test('SIGTERM stops and removes every container, reports agent-shutdown, and exits 0', async () => {
    const metricsPort = await freePort();
    const s = await spawnStack({
      FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
      FOREMAN_CORE_ENV_API_KEY: 'hunter2-env-value',
    });
    try {
      const agentId = await s.waitForAgentId();
      s.control.reply([job('term-1', s.callbacks.url(), { action: 'sleep' }), job('term-2', s.callbacks.url(), { action: 'sleep' })]);
      await waitFor('both containers running', async () => {
        const running = (await containersOf(agentId)).filter((c) => ['term-1', 'term-2'].includes(c.Labels['foreman.job-id'] ?? '') && c.State === 'running');
        return running.length === 2;
      });
      const metrics = await waitFor('metrics showing two running jobs', async () => {
        const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
          (r) => r.text(),
          () => '',
        );
        return /^foreman_jobs_running 2$/m.test(text) ? text : undefined;
      });
      assert.match(metrics, /^foreman_process_resident_memory_bytes \d+/m);
      const started = Date.now();
      s.agent.child.kill('SIGTERM');
      const code = await exitCode(s.agent, 60_000);
      const tookMs = Date.now() - started;
      assert.equal(code, 0, readLog(s.agent.logFile).slice(-2000));
      assert.ok(tookMs < 20_000, `shutdown took ${tookMs} ms`);
      assert.equal((await containersOf(agentId)).length, 0);
      for (const id of ['term-1', 'term-2']) {
        const report = s.callbacks.completion(id);
        assert.equal(report?.headers['x-foreman-job-outcome'], 'agent-shutdown');
        assert.ok(report.headers['x-foreman-usage'], `${id}'s agent-shutdown report carries usage`);
      }
      const log = readLog(s.agent.logFile);
      assert.match(log, /"jobId":"term-1"/);
      assert.doesNotMatch(log, /test-token|hunter2-env-value/);
    } finally {
      await s.close({ signal: 'SIGKILL' });
    }
  });

  test('a second agent on the same data_dir refuses to start, with a clear line', async () => {
    const s = await spawnStack();
    let second: ReturnType<typeof spawnAgent> | undefined;
    try {
      await waitFor('the first agent to poll', () => readLog(s.agent.logFile).includes('polling for jobs'));
      second = spawnAgent(s.env);
      assert.equal(await exitCode(second), 1);
      const output = readLog(second.logFile);
      assert.match(output, /^foreman: another foreman agent \(pid \d+\) is using data_dir .*; give each agent its own data_dir$/m);
      assert.doesNotMatch(output, /\n\s+at /);
    } finally {
      if (second) await stopAgent(second, 'SIGKILL');
      await s.close();
    }
  });

  test('a second signal exits at once', async () => {
    const s = await spawnStack();
    try {
      const agentId = await s.waitForAgentId();
      s.control.reply([job('twice-1', s.callbacks.url(), { action: 'sleep' })]);
      await waitFor('the container running', async () =>
        (await containersOf(agentId)).find((x) => x.Labels['foreman.job-id'] === 'twice-1' && x.State === 'running'),
      );
      s.agent.child.kill('SIGTERM');
      await waitFor('the first signal to be handled', () => readLog(s.agent.logFile).includes('send the signal again'));
      s.agent.child.kill('SIGTERM');
      assert.equal(await exitCode(s.agent), 130);
    } finally {
      await s.close({ signal: 'SIGKILL' });
    }
  });

  test('a callback that is down for 30 s around a completion gets every update afterwards, in order', async () => {
    const stack = await startStack();
    const { control, running: agent } = stack;
    const outage = stack.callbacks;
    try {
      const url = outage.url();
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
      await stack.close();
    }
  });

  test('a store write failure gives the container 503; the retry is accepted and nothing is lost', async () => {
    const stack = await startStack();
    const { control, callbacks, running: agent } = stack;
    let locker: Database.Database | undefined;
    try {
      locker = new Database(join(agent.loaded.config.core.data_dir, 'foreman.db'));
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
      locker?.close();
      await stack.close();
    }
  });
});
