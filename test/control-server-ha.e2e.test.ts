/**
 * Two `foreman server` instances on one real PostgreSQL, behind a load balancer that sends each request to either at
 * random; three real agents (processes) on the real engine; 200 jobs. One instance is killed with -9 mid-run. Every
 * job is handed to one agent and runs once, every job ends, no final report is lost, and the surviving instance's
 * live stream (what its dashboard shows) ends with all 200 completed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBalancer } from './support/balancer.ts';
import type { Balancer } from './support/balancer.ts';
import { type SpawnedAgent, spawnAgent, stopAgent, storedAgentId, testEnv, type TestEnv } from './support/agents.ts';
import { cleanup } from './support/containers.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, spawnServer } from './support/control-server.ts';
import type { SpawnedServer } from './support/control-server.ts';
import { testJobImage } from './support/image.ts';
import { freePort } from './support/ports.ts';
import { postgresSkip, startPostgres } from './support/postgres.ts';
import type { TestPostgres } from './support/postgres.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

const JOBS = 200;
const KILL_AFTER = 60;
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Every job of a server, following the Link header page by page. */
async function allJobs(base: string): Promise<JobView[]> {
  const jobs: JobView[] = [];
  let next: string | undefined = '/jobs?limit=500';
  while (next !== undefined) {
    const response: Response = await fetch(`${base}${next}`, { headers: admin });
    jobs.push(...((await response.json()) as JobView[]));
    next = /^<([^>]+)>; rel="next"$/.exec(response.headers.get('link') ?? '')?.[1];
  }
  return jobs;
}

/** The server-sent events of a dashboard's stream: the latest view of each job. */
function followEvents(base: string): { jobs: Map<string, JobView>; stop(): void } {
  const jobs = new Map<string, JobView>();
  const controller = new AbortController();
  void (async () => {
    const response = await fetch(`${base}/events`, { headers: admin, signal: controller.signal });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const event = /^event: (\w+)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data === undefined) continue;
        if (event === 'snapshot') for (const job of (JSON.parse(data) as { jobs: JobView[] }).jobs) jobs.set(job.id, job);
        if (event === 'job') {
          const job = JSON.parse(data) as JobView;
          jobs.set(job.id, job);
        }
      }
    }
  })().catch(() => undefined);
  return { jobs, stop: () => controller.abort() };
}

test(
  'two server instances on PostgreSQL, three agents, 200 jobs, one instance killed with -9: each job runs once and ends, reported',
  { skip: postgresSkip, timeout: 900_000 },
  async (t) => {
    await testJobImage();
    const dir = await mkdtemp(join(tmpdir(), 'foreman-ha-'));
    let postgres: TestPostgres | undefined;
    const servers: SpawnedServer[] = [];
    let balancer: Balancer | undefined;
    const envs: TestEnv[] = [];
    const agents: SpawnedAgent[] = [];
    let events: ReturnType<typeof followEvents> | undefined;
    try {
      postgres = await startPostgres();
      const database = await postgres.createDatabase('ha');
      // The balancer's port first: the instances hand out callback and logs URLs on it.
      const ports = [await freePort(), await freePort()];
      const backends = ports.map((port) => `http://127.0.0.1:${port}`);
      balancer = await startBalancer(backends);
      const serverEnv = { FOREMAN_SERVER_TOKENS: AGENT_TOKEN, FOREMAN_SERVER_ADMIN_TOKENS: ADMIN_TOKEN, FOREMAN_SERVER_LOG_LEVEL: 'warn' };
      for (const port of ports) {
        servers.push(
          await spawnServer(
            ['--port', String(port), '--db', database, '--public-url', balancer.url, '--agent-timeout', '30s', '--redeliver-after', '5s'],
            serverEnv,
          ),
        );
      }
      const [doomed, survivor] = servers as [SpawnedServer, SpawnedServer];
      events = followEvents(survivor.base);

      for (let n = 0; n < 3; n++) {
        const env = testEnv(`${balancer.url}/job`, {
          FOREMAN_CORE_TOKEN: AGENT_TOKEN,
          FOREMAN_CORE_LABELS_QUEUE: 'ha',
          FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4',
          FOREMAN_CORE_POLL_FREQUENCY: '200',
          FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000',
          FOREMAN_LOG_LEVEL: 'info',
        });
        envs.push(env);
        agents.push(spawnAgent(env));
      }

      const submitted = new Map<string, number>();
      for (let n = 0; n < JOBS; n++) {
        const response = await fetch(`${balancer.url}/jobs`, {
          method: 'POST',
          headers: { ...admin, 'content-type': 'application/json' },
          body: JSON.stringify({ image: 'foreman-test-job:latest', labels: { queue: 'ha' }, body: { values: [n, 1000] } }),
        });
        assert.equal(response.status, 201, await response.clone().text());
        submitted.set(((await response.json()) as { id: string }).id, n + 1000);
      }
      const started = Date.now();

      // Mid-run: once some jobs have ended, one instance dies without a word.
      await waitFor(
        `${KILL_AFTER} jobs to end`,
        async () => (await allJobs(survivor.base)).filter((job) => job.status === 'completed').length >= KILL_AFTER,
        300_000,
        250,
      );
      const answeredBefore = [...balancer.answered];
      await doomed.stop('SIGKILL');
      t.diagnostic(`killed one instance with -9 after ${Date.now() - started} ms; requests answered until then: ${answeredBefore.join(' and ')}`);

      const ended = await waitFor(
        'every job to end',
        async () => {
          const jobs = await allJobs(survivor.base);
          return jobs.length === JOBS && jobs.every((job) => job.status === 'completed') ? jobs : undefined;
        },
        480_000,
        500,
      );
      t.diagnostic(`all ${JOBS} jobs ended ${Date.now() - started} ms after the last was submitted`);

      // Every job ended succeeded, with its own result: no final report was lost.
      const wrong = ended.filter((job) => job.outcome !== 'succeeded' || JSON.stringify(job.result) !== JSON.stringify({ result: submitted.get(job.id) }));
      assert.deepEqual(wrong, [], 'every job succeeded with its result');
      assert.deepEqual(
        ended.filter((job) => job.requeues !== 0),
        [],
        'no agent was lost, so no job went back to the queue',
      );

      // Handed to one agent each (a hand-out repeated to the same agent, whose reply may have died with the
      // instance, is ignored by that agent), and reported by that agent only.
      const handedTo = new Map<string, Set<string>>();
      for (const handOut of balancer.handOuts) handedTo.set(handOut.jobId, (handedTo.get(handOut.jobId) ?? new Set()).add(handOut.agentId));
      assert.equal(handedTo.size, JOBS, 'every job was handed out');
      const toSeveral = [...handedTo].filter(([, agentIds]) => agentIds.size !== 1);
      assert.deepEqual(toSeveral, [], 'no job was handed to two agents');
      const repeats = balancer.handOuts.length - JOBS;
      const reportedBy = new Map<string, Set<string>>();
      for (const report of balancer.reports) reportedBy.set(report.jobId, (reportedBy.get(report.jobId) ?? new Set()).add(report.agentId));
      for (const job of ended) {
        assert.deepEqual([...(reportedBy.get(job.id) ?? [])], [...(handedTo.get(job.id) ?? [])], `${job.id} was reported by the agent it was handed to`);
        assert.equal(job.agentId, [...(handedTo.get(job.id) ?? [])][0], `${job.id} is the agent's`);
      }
      const finals = balancer.reports.filter((report) => report.status === 'completed' && report.answered === 200);
      assert.equal(new Set(finals.map((report) => report.jobId)).size, JOBS, 'a final report of each job was answered 200');
      t.diagnostic(
        `hand-outs: ${balancer.handOuts.length} (${repeats} repeated to the same agent); reports: ${balancer.reports.length}; answered per instance: ${balancer.answered.join(' and ')}`,
      );
      assert.ok((balancer.answered[0] ?? 0) > 0 && (balancer.answered[1] ?? 0) > 0, 'both instances served the agents');
      assert.ok((balancer.answered[1] ?? 0) > (answeredBefore[1] ?? 0), 'the survivor went on alone');

      // What the survivor's dashboard shows: its live stream, fed by both instances' changes, ends with all of them.
      await waitFor('the live stream to show every job completed', () => {
        const shown = [...(events?.jobs.values() ?? [])].filter((job) => submitted.has(job.id));
        return shown.length === JOBS && shown.every((job) => job.status === 'completed' && job.outcome === 'succeeded');
      });
      assert.equal(survivor.child.exitCode, null, 'the survivor still runs');
    } finally {
      events?.stop();
      for (const agent of agents) await stopAgent(agent).catch(() => undefined);
      for (const server of servers) await server.stop().catch(() => undefined);
      await balancer?.close();
      for (const env of envs) await cleanup(env, storedAgentId(env)).catch(() => undefined);
      await postgres?.stop();
      for (const env of envs) await rm(env.dir, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    }
  },
);
