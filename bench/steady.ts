/**
 * CPU per update in a steady state, against its floor. Job containers sleep while the bench sends their
 * PUTs itself, paced (`rate` a second over one keep-alive connection per job, as the containers would), so
 * no container launch or removal falls in the window. The same PUTs then go through bench/floor.ts, a bare
 * pipeline of the agent's own packages doing the same durable work, whose CPU is the floor. Run with the
 * fan-out: `npm run bench -- --only fanout`.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { testJobImage } from '../test/support/image.ts';
import { benchAgentFlags, cpuOf } from './footprint.ts';
import { V8_FLAGS } from '../src/cli/main.ts';
import { spawnAgent, teardown, testEnv } from '../test/support/agents.ts';
import { docker } from '../test/support/containers.ts';
import { job } from '../test/support/reports.ts';
import { CallbackReceiver, FakeControlServer } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';

/** The PUT endpoint of each job's container, read from the container's environment. */
async function endpointsOf(agentIdLabel: string, count: number): Promise<string[]> {
  const containers = await waitFor(
    `${count} job containers`,
    async () => {
      const list = await docker.listContainers({ filters: { label: [agentIdLabel], status: ['running'] } });
      return list.length >= count ? list : undefined;
    },
    120_000,
    100,
  );
  const endpoints: string[] = [];
  for (const c of containers) {
    const info = await docker.getContainer(c.Id).inspect();
    const env = info.Config.Env.find((e) => e.startsWith('FOREMAN_PUT_JOB_ENDPOINT='));
    if (env) endpoints.push(env.slice('FOREMAN_PUT_JOB_ENDPOINT='.length));
  }
  return endpoints;
}

/** Sends `count` PUTs at `rate` a second, round-robin over `targets`, and waits for every answer. */
async function paced(targets: ReadonlyArray<{ client: Client; path: string }>, rate: number, count: number): Promise<number> {
  const body = JSON.stringify({ progress: 'x'.repeat(64) });
  const start = performance.now();
  const pending: Array<Promise<boolean>> = [];
  for (let i = 0; i < count; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const target = targets[i % targets.length];
    if (!target) break;
    pending.push(
      target.client
        .request({
          method: 'PUT',
          path: target.path,
          headers: { 'content-type': 'application/json', 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5' },
          body,
        })
        .then(
          async (res) => (await res.body.dump(), res.statusCode !== 200),
          () => true,
        ),
    );
  }
  return (await Promise.all(pending)).filter(Boolean).length;
}

/** CPU ms per update of process `pid` while `targets` get `rate` PUTs a second for `seconds`, after 2 s of warm-up. */
async function cpuPerUpdate(
  pid: number,
  targets: ReadonlyArray<{ client: Client; path: string }>,
  rate: number,
  seconds: number,
  forwarded: () => number,
): Promise<{ ms: number; errors: number }> {
  await paced(targets, rate, rate * 2);
  await waitFor('the warm-up to be forwarded', () => forwarded() >= rate * 2, 60_000, 20);
  const cpu0 = cpuOf(pid);
  const errors = await paced(targets, rate, rate * seconds);
  await waitFor('every update to be forwarded', () => forwarded() >= rate * (2 + seconds), 60_000, 20);
  return { ms: ((cpuOf(pid) - cpu0) * 1000) / (rate * seconds), errors };
}

/** An agent (from the bundle) running `count` job containers that sleep, with the PUT endpoint of each. */
export interface SleepingJobs {
  readonly pid: number;
  readonly callbacks: CallbackReceiver;
  readonly endpoints: string[];
  readonly close: () => Promise<void>;
}

export async function sleepingJobs(prefix: string, count: number): Promise<SleepingJobs> {
  await testJobImage();
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, {
    FOREMAN_LOG_LEVEL: 'warn',
    FOREMAN_CORE_MAX_CONCURRENT_JOBS: String(count),
    FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '600000',
  });
  const agent = spawnAgent(env, {}, benchAgentFlags());
  let agentId: string | undefined;
  const close = (): Promise<void> => teardown({ agent, control, callbacks, env, agentId });
  try {
    control.reply(Array.from({ length: count }, (_, i) => job(`${prefix}-${i}`, callbacks.url(), { action: 'sleep' })));
    const first = await waitFor(
      'a job container',
      async () => (await docker.listContainers({ filters: { label: [`foreman.job-id=${prefix}-0`] } }))[0],
      60_000,
      100,
    );
    agentId = first.Labels['foreman.agent'];
    return { pid: agent.child.pid ?? 0, callbacks, endpoints: await endpointsOf(`foreman.agent=${agentId}`, count), close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function agentCpuPerUpdate(rate: number, jobs: number, seconds: number): Promise<{ ms: number; errors: number }> {
  const running = await sleepingJobs('steady', jobs);
  const targets = running.endpoints.map((endpoint) => {
    const url = new URL(endpoint);
    return { client: new Client(url.origin), path: url.pathname + url.search };
  });
  try {
    return await cpuPerUpdate(running.pid, targets, rate, seconds, () => running.callbacks.requests.length);
  } finally {
    await Promise.all(targets.map((t) => t.client.close()));
    await running.close();
  }
}

async function floorCpuPerUpdate(rate: number, connections: number, seconds: number): Promise<{ ms: number; errors: number }> {
  const callbacks = await new CallbackReceiver().start();
  const child = spawn(
    process.execPath,
    [...V8_FLAGS, '--import', 'tsx', fileURLToPath(new URL('floor.ts', import.meta.url)), 'serve', callbacks.url('floor')],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const targets: Array<{ client: Client; path: string }> = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', (line) => resolve(Number(line)));
      child.once('exit', () => reject(new Error('bench/floor.ts exited before it listened')));
    });
    for (let i = 0; i < connections; i++) targets.push({ client: new Client(`http://127.0.0.1:${port}`), path: `/job/floor-${i}` });
    return await cpuPerUpdate(child.pid ?? 0, targets, rate, seconds, () => callbacks.requests.length);
  } finally {
    await Promise.all(targets.map((t) => t.client.close()));
    child.kill('SIGTERM');
    await exited;
    await callbacks.stop();
  }
}

export async function benchSteady(rate: number, jobs: number, seconds: number): Promise<void> {
  const agent = await agentCpuPerUpdate(rate, jobs, seconds);
  const floor = await floorCpuPerUpdate(rate, jobs, seconds);
  const pct = (ms: number): string => ((ms * rate) / 10).toFixed(1);
  console.log(`\n## Steady updates: ${rate} PUT/s over ${jobs} jobs' connections for ${seconds} s, no launches or removals`);
  console.log('| | CPU per update | share of one core | errors |\n|---|---|---|---|');
  console.log(`| floor: bare fastify → SQLite (FULL) → undici pipeline (bench/floor.ts) | ${floor.ms.toFixed(2)} ms | ${pct(floor.ms)} % | ${floor.errors} |`);
  console.log(`| through foreman | ${agent.ms.toFixed(2)} ms | ${pct(agent.ms)} % | ${agent.errors} |`);
  console.log(`the agent uses ${(agent.ms / floor.ms).toFixed(2)}× the floor's CPU per update`);
}
