/**
 * Speed and footprint of the agent, each as a ratio against the raw engine (or a bare baseline)
 * measured in the same run. Prints a table; asserts nothing.
 *
 *   npm run bench                  # all three
 *   npm run bench -- --only proxy  # dispatch | proxy | idle
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { testJobImage } from '../test/support/image.ts';
import { CallbackReceiver, FakeControlServer, cleanup, docker, job, spawnAgent, teardown, testEnv, waitFor, watchContainerEvents } from '../test/support/harness.ts';

const { values: args } = parseArgs({ options: { only: { type: 'string' }, rounds: { type: 'string', default: '25' }, seconds: { type: 'string', default: '5' } } });
const rounds = Number(args.rounds);
const loadSeconds = Number(args.seconds);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

/** Resident memory in MB: all of it, and the anonymous part (heap, stacks), which excludes mapped files such as the node binary. */
function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
  return kb / 1024;
}

/** Start events of containers carrying `label`, keyed by job id, in ms. */
async function watchStarts(label: string): Promise<{ starts: Map<string, number>; stop(): void }> {
  const starts = new Map<string, number>();
  const events = await watchContainerEvents(['start'], label, (e) => {
    const id = e.Actor.Attributes['foreman.job-id'] ?? e.Actor.Attributes['bench.id'];
    if (id) starts.set(id, e.timeNano / 1e6);
  });
  return { starts, stop: () => events.stop() };
}

/** Raw engine: create + start of the same image on the same network, timed to the engine's start event. */
async function rawDispatchOnce(network: string, id: string, starts: Map<string, number>): Promise<number> {
  const t0 = Date.now();
  const c = await docker.createContainer({
    Image: 'foreman-test-job:latest',
    Cmd: ['/usr/local/bin/node', '-e', 'setTimeout(() => {}, 60000)'],
    Env: ['FOREMAN_GET_JOB_ENDPOINT=http://x/job/1', 'FOREMAN_PUT_JOB_ENDPOINT=http://x/job/1'],
    Labels: { 'bench.raw': '1', 'bench.id': id },
    HostConfig: { NetworkMode: network, Init: true },
  });
  await c.start();
  const started = await waitFor('raw start event', () => starts.get(id), 10_000, 2);
  await c.remove({ force: true });
  return started - t0;
}

async function benchDispatch(): Promise<void> {
  await testJobImage();
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'warn', FOREMAN_CORE_POLL_FREQUENCY: '20', FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '0' });
  const agent = spawnAgent(env);
  let agentId: string | undefined;
  try {
    // Warm up: the first job also creates the network.
    control.reply([job('warm-0', callbacks.url(), { values: [1] })]);
    const warm = await callbacks.waitForCompletion('warm-0', 60_000);
    agentId = String(warm.headers['x-foreman-agent-id']);
    const watcher = await watchStarts(`foreman.agent=${agentId}`);
    const rawWatcher = await watchStarts('bench.raw=1');
    const agentSamples: number[] = [];
    const rawSamples: number[] = [];
    try {
      // Raw and agent samples alternate, so drift in the engine's speed hits both alike.
      for (let i = 0; i < rounds; i++) {
        rawSamples.push(await rawDispatchOnce(env.networkName, `raw-${i}`, rawWatcher.starts));
        const id = `dispatch-${i}`;
        const pollsBefore = control.polls.length;
        control.reply([job(id, callbacks.url(), { values: [i] })]);
        // The job "appears" when the poll that carries it is answered.
        const served = await waitFor('the poll carrying the job', () => (control.polls.length > pollsBefore ? control.polls[pollsBefore] : undefined), 10_000, 2);
        const started = await waitFor('agent start event', () => watcher.starts.get(id), 20_000, 5);
        agentSamples.push(started - served.at);
        await callbacks.waitForCompletion(id);
        // Like the raw loop, start the next one only once this container is gone.
        await waitFor('the container to be removed', async () => (await docker.listContainers({ all: true, filters: { label: [`foreman.job-id=${id}`] } })).length === 0, 20_000, 20);
      }
    } finally {
      watcher.stop();
      rawWatcher.stop();
    }
    const raw = sortNum(rawSamples);
    const viaAgent = sortNum(agentSamples);
    const overhead = percentile(viaAgent, 50) - percentile(raw, 50);
    console.log('\n## Dispatch: job served by the control server → container running');
    console.log(`| | p50 ms | p90 ms |\n|---|---|---|`);
    console.log(`| raw engine create+start | ${fmt(percentile(raw, 50))} | ${fmt(percentile(raw, 90))} |`);
    console.log(`| through foreman | ${fmt(percentile(viaAgent, 50))} | ${fmt(percentile(viaAgent, 90))} |`);
    console.log(`dispatch overhead p50: ${fmt(overhead)} ms (target ≤ 15 ms); ratio ${fmt(percentile(viaAgent, 50) / percentile(raw, 50), 3)}× raw`);
  } finally {
    await teardown({ agent, control, callbacks, env, agentId });
  }
}

/** Runs `connections` loops of PUTs, spread over `urls`, for `seconds`; returns rate and latencies. */
async function load(urls: string[], connections: number, seconds: number): Promise<{ rate: number; latencies: number[]; errors: number }> {
  const origin = new URL(urls[0] ?? '').origin;
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  const body = JSON.stringify({ progress: 'x'.repeat(64) });
  const loops = Array.from({ length: connections }, async (_, i) => {
    const target = new URL(urls[i % urls.length] ?? '');
    while (Date.now() < end) {
      const t0 = performance.now();
      try {
        const res = await pool.request({
          method: 'PUT',
          path: target.pathname + target.search,
          headers: { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5', 'content-type': 'application/json' },
          body,
        });
        await res.body.dump();
        if (res.statusCode !== 200) errors++;
        else latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  });
  const started = Date.now();
  await Promise.all(loops);
  const elapsed = (Date.now() - started) / 1000;
  await pool.close();
  return { rate: latencies.length / elapsed, latencies: sortNum(latencies), errors };
}

/** The PUT endpoint of each job's container, read from the container's environment. */
async function endpointsOf(agentIdLabel: string, count: number): Promise<string[]> {
  const containers = await waitFor(`${count} job containers`, async () => {
    const list = await docker.listContainers({ filters: { label: [agentIdLabel], status: ['running'] } });
    return list.length >= count ? list : undefined;
  }, 60_000, 100);
  const endpoints: string[] = [];
  for (const c of containers) {
    const info = await docker.getContainer(c.Id).inspect();
    const env = info.Config.Env.find((e) => e.startsWith('FOREMAN_PUT_JOB_ENDPOINT='));
    if (env) endpoints.push(env.slice('FOREMAN_PUT_JOB_ENDPOINT='.length));
  }
  return endpoints;
}

async function benchProxy(jobCount: number): Promise<void> {
  await testJobImage();
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'warn', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '600000' });
  // BENCH_AGENT_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the agent under load.
  const agent = spawnAgent(env, {}, process.env.BENCH_AGENT_FLAGS?.split(' ').filter(Boolean) ?? []);
  let agentId: string | undefined;
  try {
    const ids = Array.from({ length: jobCount }, (_, i) => `proxy-${i}`);
    control.reply(ids.map((id) => job(id, callbacks.url(), { action: 'sleep' })));
    const first = await waitFor('a job container', async () => (await docker.listContainers({ filters: { label: ['foreman.job-id=proxy-0'] } }))[0], 60_000, 100);
    agentId = first.Labels['foreman.agent'];
    const endpoints = await endpointsOf(`foreman.agent=${agentId}`, jobCount);

    const direct = await load([callbacks.url('direct')], 50, loadSeconds);
    const before = callbacks.requests.length;
    const proxied = await load(endpoints, 50, loadSeconds);
    const forwardedDuring = callbacks.requests.length - before;
    const drainStart = Date.now();
    await waitFor('the outbox to drain', () => callbacks.requests.length - before >= proxied.latencies.length, 300_000, 20);
    const drainSeconds = (Date.now() - drainStart) / 1000;
    const forwardRate = (callbacks.requests.length - before) / (loadSeconds + drainSeconds);

    console.log(`\n## Status proxy: container PUT → callback, 50 connections over ${jobCount} job${jobCount === 1 ? '' : 's'}`);
    console.log('| | PUT/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|');
    console.log(`| raw: straight to the callback receiver | ${fmt(direct.rate, 0)} | ${fmt(percentile(direct.latencies, 50), 2)} | ${fmt(percentile(direct.latencies, 99), 2)} | ${direct.errors} |`);
    console.log(`| through foreman (answered once stored) | ${fmt(proxied.rate, 0)} | ${fmt(percentile(proxied.latencies, 50), 2)} | ${fmt(percentile(proxied.latencies, 99), 2)} | ${proxied.errors} |`);
    console.log(`added latency p50: ${fmt(percentile(proxied.latencies, 50) - percentile(direct.latencies, 50), 2)} ms (target ≤ 1 ms); throughput ${fmt(proxied.rate / direct.rate, 3)}× raw (target ≥ 5000 PUT/s)`);
    console.log(`forwarded: ${forwardedDuring} during the load, the rest within ${fmt(drainSeconds)} s more: ${fmt(forwardRate, 0)} deliveries/s end to end`);
    // Unloaded: one connection, so latency is the cost of one update, not queueing behind 49 others.
    const directOne = await load([callbacks.url('direct')], 1, 2);
    const proxiedOne = await load(endpoints, 1, 2);
    console.log(
      `one connection: raw p50 ${fmt(percentile(directOne.latencies, 50), 2)} ms, through foreman p50 ${fmt(percentile(proxiedOne.latencies, 50), 2)} ms: added ${fmt(percentile(proxiedOne.latencies, 50) - percentile(directOne.latencies, 50), 2)} ms`,
    );
  } finally {
    await teardown({ agent, control, callbacks, env, agentId });
  }
}

async function benchIdle(): Promise<void> {
  const control = await new FakeControlServer().start();
  const env = testEnv(control.url, { FOREMAN_LOG_LEVEL: 'warn', FOREMAN_CORE_POLL_FREQUENCY: '1000' });
  const agent = spawnAgent(env);
  try {
    await waitFor('a few polls', () => control.polls.length >= 3, 30_000, 100);
    const pid = agent.child.pid ?? 0;
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      samples.push(rssMb(pid));
      await waitFor('the next poll', () => control.polls.length >= 4 + i, 10_000, 100);
    }
    // A bare node process that has loaded nothing: what any Node.js agent costs at least.
    const node = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    await once(node, 'spawn');
    const pidOf = node.pid ?? 0;
    const bareRss = await waitFor('bare node to settle', async () => {
      await new Promise((r) => setTimeout(r, 1000));
      return rssMb(pidOf);
    }, 10_000);
    const bareAnon = rssMb(pidOf, 'RssAnon');
    node.kill();
    const agentRss = sortNum(samples)[Math.floor(samples.length / 2)] ?? NaN;
    const agentAnon = rssMb(pid, 'RssAnon');
    console.log('\n## Idle footprint');
    console.log(`agent RSS (median of 5, idle, polling every 1 s): ${fmt(agentRss)} MB (target ≤ 70 MB); bare \`node -e\` ${fmt(bareRss)} MB; ratio ${fmt(agentRss / bareRss, 2)}×`);
    console.log(`of which anonymous (heap, not the mapped node binary): agent ${fmt(agentAnon)} MB, bare node ${fmt(bareAnon)} MB`);
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
    await control.close();
    await cleanup(env);
  }
}

const which = args.only;
if (!which || which === 'dispatch') await benchDispatch();
if (!which || which === 'proxy') {
  await benchProxy(1);
  await benchProxy(10);
}
if (!which || which === 'idle') await benchIdle();
