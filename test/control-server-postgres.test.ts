/**
 * The reference control server on a real PostgreSQL (Debian's, started by the test in a directory of its own): the
 * server's own test files again on it, and what only several instances on one database show: a job is handed out
 * once however many instances poll at once (FOR UPDATE SKIP LOCKED), every instance's browsers see every change
 * (LISTEN/NOTIFY), and the lost-agent sweep and retention run on one instance at a time (advisory locks).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { formatLabelsHeader } from '../packages/control-server-kit/index.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, startControlServer } from './support/control-server.ts';
import type { RunningServer } from './support/control-server.ts';
import { repoRoot } from './support/paths.ts';
import { postgresSkip, startPostgres } from './support/postgres.ts';
import type { TestPostgres } from './support/postgres.ts';
import { waitFor } from './support/wait.ts';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe('reference control server on PostgreSQL', { skip: postgresSkip, timeout: 600_000 }, () => {
  let postgres: TestPostgres;

  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres?.stop();
  });

  it("passes the server's own tests on PostgreSQL", async (t) => {
    const files = [
      'test/control-server.test.ts',
      'test/control-server-cancel.test.ts',
      'test/control-server-logs.test.ts',
      'test/control-server-auth.test.ts',
      'test/control-server-facts.test.ts',
    ];
    const child = spawn(process.execPath, ['scripts/run-tests.mjs', '--test-reporter=tap', ...files], {
      cwd: repoRoot,
      // Without NODE_TEST_CONTEXT: the child is a test run of its own, not files of this one.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_TEST_CONTEXT')), FOREMAN_TEST_POSTGRES_URL: postgres.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    const summary = output.split('\n').filter((line) => /^# (tests|pass|fail|skipped) /.test(line));
    t.diagnostic(summary.join(', '));
    assert.equal(
      code,
      0,
      `the child run failed:\n${output
        .split('\n')
        .filter((line) => /not ok|error|Error|expected|actual/.test(line))
        .slice(0, 40)
        .join('\n')}`,
    );
    assert.match(output, /^# pass [1-9]\d+$/m, 'it ran tests');
  });

  describe('two instances on one database', () => {
    let a: RunningServer;
    let b: RunningServer;

    before(async () => {
      const url = await postgres.createDatabase('two_instances');
      // No lost-agent sweep here: a poll slowed by the machine must not make an agent lost (its jobs would go again).
      [a, b] = await Promise.all([
        startControlServer({ database: url, agentTimeoutMs: 0, retentionMs: 1, retentionIntervalMs: 3_600_000 }),
        startControlServer({ database: url, agentTimeoutMs: 0, retentionMs: 1, retentionIntervalMs: 3_600_000 }),
      ]);
    });
    after(async () => {
      await a?.close();
      await b?.close();
    });

    const submit = async (on: RunningServer, queue: string): Promise<string> => {
      const response = await fetch(`${on.base}/jobs`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({ image: 'img', labels: { queue } }),
      });
      assert.equal(response.status, 201, await response.clone().text());
      return ((await response.json()) as { id: string }).id;
    };
    const poll = async (on: RunningServer, queue: string, agent: string, capacity: number) =>
      (await (
        await fetch(`${on.base}/job`, {
          headers: {
            authorization: `Bearer ${AGENT_TOKEN}`,
            'x-foreman-labels': formatLabelsHeader({ queue }),
            'x-foreman-agent-id': agent,
            'x-foreman-capacity': String(capacity),
          },
        })
      ).json()) as Array<{ id: string; callbackUrl: string }>;

    it('hands each job out once while twelve agents poll both instances at once', async () => {
      const ids = new Set<string>();
      for (let n = 0; n < 150; n++) ids.add(await submit(n % 2 === 0 ? a : b, 'race'));
      const handed = new Map<string, string[]>();
      await Promise.all(
        Array.from({ length: 12 }, async (_, agent) => {
          for (let round = 0; round < 40; round++) {
            const jobs = await poll(round % 2 === agent % 2 ? a : b, 'race', `race-agent-${agent}`, 3);
            for (const job of jobs) handed.set(job.id, [...(handed.get(job.id) ?? []), `race-agent-${agent}`]);
            if (handed.size >= ids.size) return;
          }
        }),
      );
      const twice = [...handed].filter(([, agents]) => agents.length > 1);
      assert.deepEqual(twice, [], 'no job was handed out twice');
      assert.equal(handed.size, ids.size, 'every job was handed out');
    });

    it("an instance's browsers see the changes made through the other one", async () => {
      const controller = new AbortController();
      const response = await fetch(`${b.base}/events`, { headers: admin, signal: controller.signal });
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      const seen: Array<{ id: string; status: string }> = [];
      const read = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffered += value;
          for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
            const block = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const data = /^event: job\ndata: (.*)$/m.exec(block)?.[1];
            if (data !== undefined) seen.push(JSON.parse(data) as { id: string; status: string });
          }
        }
      })().catch(() => undefined);
      try {
        const id = await submit(a, 'events');
        const [job] = await poll(a, 'events', 'events-agent', 1);
        assert.equal(job?.id, id);
        await fetch(job.callbackUrl, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'events-agent' } });
        await waitFor('the completed job on the other instance', () => seen.some((view) => view.id === id && view.status === 'completed'), 10_000);
        // Each event carries the job as it is when read, so a quick change may be seen in its later state only; never
        // out of order.
        const order = ['queued', 'assigned', 'running', 'completed'];
        const statuses = seen.filter((view) => view.id === id).map((view) => order.indexOf(view.status));
        assert.deepEqual(statuses, [...statuses].sort(), `in order: ${JSON.stringify(seen)}`);
      } finally {
        controller.abort();
        await read;
      }
    });

    it('takes the jobs of a lost agent back once, though both instances sweep', async () => {
      const url = await postgres.createDatabase('lost_agents');
      const [c, d] = await Promise.all([
        startControlServer({ database: url, agentTimeoutMs: 300 }),
        startControlServer({ database: url, agentTimeoutMs: 300 }),
      ]);
      try {
        const ids = [await submit(c, 'lost'), await submit(d, 'lost')];
        assert.equal((await poll(d, 'lost', 'lost-agent', 2)).length, 2);
        const views = async () =>
          Promise.all(ids.map(async (id) => (await (await fetch(`${c.base}/jobs/${id}`, { headers: admin })).json()) as { status: string; requeues: number }));
        await waitFor('the jobs requeued', async () => (await views()).every((view) => view.status === 'queued'), 10_000);
        // Several more sweeps of both instances pass: a job is requeued once, not once per instance.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        assert.deepEqual(
          (await views()).map((view) => view.requeues),
          [1, 1],
        );
      } finally {
        await c.close();
        await d.close();
      }
    });

    it('prunes ended jobs once, whichever instances run retention at the same time', async () => {
      const id = await submit(b, 'prune');
      const [job] = await poll(b, 'prune', 'prune-agent', 1);
      await fetch(job!.callbackUrl, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'prune-agent' } });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const [byA, byB] = await Promise.all([a.server.prune(), b.server.prune()]);
      assert.ok(byA + byB >= 1, `pruned by one or both: ${byA} + ${byB}`);
      assert.equal((await fetch(`${a.base}/jobs/${id}`, { headers: admin })).status, 404);
    });
  });
});
