/**
 * The reference control server's hand-out rate: jobs per second from queued to ended (a poll hands a job out, its
 * final report comes back) for one and two `foreman server` instances (the bundle, processes of their own) on SQLite
 * and on PostgreSQL. Simulated agents (HTTP clients, no engine) poll the instances at random with a capacity of 4 and
 * report each job completed at once, so the figure is the server's, not a container's. Each row is also given as a
 * ratio to one instance on SQLite, measured in the same run. PostgreSQL is Debian's, started in a temp dir of its own
 * (test/support/postgres.ts); without it those rows are skipped, saying why.
 *
 *   npm run bench -- --only handout [--handout-jobs 2000] [--handout-agents 8]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort } from '../test/support/ports.ts';
import { repoRoot } from '../test/support/paths.ts';
import { postgresSkip, startPostgres } from '../test/support/postgres.ts';
import { waitFor } from '../test/support/wait.ts';

export const AGENT_TOKEN = 'bench-agent';
export const ADMIN_TOKEN = 'bench-admin';
// No sweeps during the run: it measures hand-out and reports only.
const HANDOUT_ARGS = ['--agent-timeout', '0', '--retention', '0', '--max-queued-jobs', '1000000', '--log-level', 'warn'];
const CAPACITY = 4;

export interface Instance {
  readonly base: string;
  readonly child: ChildProcess;
  /** The end of what it printed (its log at warn and above), shown when a run fails. */
  output(): string;
}

/** `foreman server` from the bundle on a port of its own (`args` after the port, db and tokens); resolves once /healthz answers. */
export async function startInstance(database: string, args: readonly string[] = HANDOUT_ARGS): Promise<Instance> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'bin/foreman.js'), 'server', ...['--port', String(port), '--db', database, '--token', AGENT_TOKEN, '--admin-token', ADMIN_TOKEN], ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer): void => void (output = (output + chunk.toString()).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    `foreman server on port ${port}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`foreman server exited with ${child.exitCode}: ${output}`);
      return (await fetch(`${base}/healthz`).catch(() => undefined))?.ok;
    },
    30_000,
    100,
  );
  return { base, child, output: () => output };
}

export async function stopInstance(instance: Instance): Promise<void> {
  if (instance.child.exitCode !== null || instance.child.signalCode !== null) return;
  const exited = new Promise((resolve) => instance.child.once('exit', resolve));
  instance.child.kill('SIGTERM');
  await exited;
}

/** Submits `count` jobs through the instances in turn. */
async function enqueue(instances: readonly Instance[], count: number, run: string): Promise<void> {
  const pools = instances.map((instance) => new Pool(instance.base, { connections: 4 }));
  try {
    const next = { n: 0 };
    const submitter = async (): Promise<void> => {
      while (next.n < count) {
        const n = next.n++;
        const { statusCode, body } = await pools[n % pools.length]!.request({
          path: '/jobs',
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ image: 'bench:never-run', labels: { run }, body: { n } }),
        });
        await body.text();
        if (statusCode !== 201) throw new Error(`POST /jobs answered ${statusCode}`);
      }
    };
    await Promise.all(Array.from({ length: 4 }, submitter));
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
  }
}

/** Agents poll the instances at random and report each job completed; the jobs/s from the first poll to the last report. */
async function drain(instances: readonly Instance[], jobs: number, agents: number, run: string): Promise<{ seconds: number; polls: number }> {
  const pools = new Map(instances.map((instance) => [instance.base, new Pool(instance.base, { connections: agents })]));
  const pick = (): Pool => [...pools.values()][Math.floor(Math.random() * pools.size)]!;
  let ended = 0;
  let polls = 0;
  const started = performance.now();
  const agent = async (n: number): Promise<void> => {
    const agentId = `bench-agent-${n}`;
    let seq = 0;
    while (ended < jobs) {
      polls++;
      const poll = await pick().request({
        path: '/job',
        method: 'GET',
        headers: {
          authorization: `Bearer ${AGENT_TOKEN}`,
          'x-foreman-agent-id': agentId,
          'x-foreman-capacity': String(CAPACITY),
          'x-foreman-labels': `run=${run}`,
        },
      });
      const text = await poll.body.text();
      if (poll.statusCode !== 200) throw new Error(`a poll answered ${poll.statusCode}: ${text.slice(0, 200)}`);
      const handed = (text === '' ? [] : JSON.parse(text)) as Array<{ id: string; callbackUrl: string }>;
      if (handed.length === 0) {
        // The queue is empty for now (or for good): poll again soon, as an agent would.
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      for (const job of handed) {
        const url = new URL(job.callbackUrl);
        // A report may go to either instance, as behind a load balancer.
        const report = await pick().request({
          path: `${url.pathname}${url.search}`,
          method: 'PUT',
          headers: {
            'content-type': 'application/json',
            'x-foreman-job-status': 'completed',
            'x-foreman-job-outcome': 'succeeded',
            'x-foreman-job-id': encodeURIComponent(job.id),
            'x-foreman-agent-id': agentId,
            'x-foreman-delivery-id': `${agentId}-${++seq}`,
            'x-foreman-delivery-seq': '1',
          },
          body: '{"ok":true}',
        });
        await report.body.text();
        if (report.statusCode !== 200) throw new Error(`a report answered ${report.statusCode}`);
        ended++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: agents }, (_, n) => agent(n)));
    return { seconds: (performance.now() - started) / 1000, polls };
  } finally {
    await Promise.all([...pools.values()].map((pool) => pool.close()));
  }
}

interface Row {
  store: string;
  instances: number;
  rate: number;
  seconds: number;
  polls: number;
}

async function measure(store: string, database: string, instanceCount: number, jobs: number, agents: number): Promise<Row> {
  const instances: Instance[] = [];
  try {
    // One at a time: the first migrates the database.
    for (let n = 0; n < instanceCount; n++) instances.push(await startInstance(database));
    const run = `${store}-${instanceCount}-${Date.now()}`;
    await enqueue(instances, jobs, run);
    const { seconds, polls } = await drain(instances, jobs, agents, run);
    return { store, instances: instanceCount, rate: jobs / seconds, seconds, polls };
  } catch (error) {
    for (const instance of instances) console.error(`${instance.base} printed:\n${instance.output()}`);
    throw error;
  } finally {
    for (const instance of instances) await stopInstance(instance);
  }
}

export async function benchHandout(jobs: number, agents: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'foreman-bench-handout-'));
  const postgres = postgresSkip ? undefined : await startPostgres();
  const rows: Row[] = [];
  try {
    for (const instances of [1, 2]) {
      rows.push(await measure('SQLite', join(dir, `handout-${instances}.db`), instances, jobs, agents));
      if (postgres !== undefined) rows.push(await measure('PostgreSQL', await postgres.createDatabase(`handout_${instances}`), instances, jobs, agents));
    }
  } finally {
    await postgres?.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const baseline = rows.find((row) => row.store === 'SQLite' && row.instances === 1)?.rate ?? NaN;
  console.log(
    `\ncontrol server hand-out: ${jobs} jobs, ${agents} simulated agents polling at random with capacity ${CAPACITY}, each job reported completed at once`,
  );
  console.log('store       instances   jobs/s   ratio to SQLite×1   seconds   polls');
  for (const row of rows) {
    console.log(
      `${row.store.padEnd(11)} ${String(row.instances).padStart(9)}   ${row.rate.toFixed(0).padStart(6)}   ${(row.rate / baseline).toFixed(2).padStart(17)}   ${row.seconds.toFixed(1).padStart(7)}   ${String(row.polls).padStart(5)}`,
    );
  }
  if (postgres === undefined) console.log(`PostgreSQL skipped: ${String(postgresSkip)}`);
}
