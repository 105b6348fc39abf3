/**
 * Many jobs: a soak (memory after thousands of trivial jobs) and a fan-out (100 jobs at once, the agent's
 * CPU and event-loop delay beside the engine's CPU). Figures, not assertions. Run from bench/run.ts:
 *
 *   npm run bench -- --only soak [--soak-jobs 10000] [--soak-untuned]
 *   npm run bench -- --only fanout [--fanout-jobs 100] [--fanout-rounds 1]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testJobImage } from '../test/support/image.ts';
import { benchAgentFlags, cpuOf, rssMb, TUNED } from './footprint.ts';
import { spawnAgent, testEnv, type TestEnv } from '../test/support/agents.ts';
import { cleanup } from '../test/support/containers.ts';
import { freePort } from '../test/support/ports.ts';
import { job } from '../test/support/reports.ts';
import { CallbackReceiver, type RecordedRequest } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';

/** The engine's own processes: dockerd, containerd and each container's shim (not the containers' programs). */
function enginePids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm === 'dockerd' || comm === 'containerd' || comm.startsWith('containerd-shim') || comm === 'docker-init') pids.push(Number(entry));
    } catch {
      // The process ended while listed.
    }
  }
  return pids;
}

/**
 * CPU the engine's processes use, sampled: shims come and go with their containers, so each process counts
 * from its first sample (from 0 when it started after the first) to its last.
 */
class EngineCpu {
  private readonly seen = new Map<number, { first: number; last: number }>();
  private samples = 0;

  sample(): void {
    for (const pid of enginePids()) {
      const now = cpuOf(pid);
      const entry = this.seen.get(pid);
      if (entry) entry.last = now;
      else this.seen.set(pid, { first: this.samples === 0 ? now : 0, last: now });
    }
    this.samples++;
  }

  get seconds(): number {
    let total = 0;
    for (const { first, last } of this.seen.values()) total += last - first;
    return total;
  }
}

/**
 * A control server that hands out jobs as the agent has room (its `x-foreman-capacity`), up to `limit`,
 * which a bench may raise to release jobs a round at a time.
 */
export class JobFeeder {
  handedOut = 0;
  private server: Server | undefined;
  url = '';

  constructor(
    public limit: number,
    private readonly make: (index: number) => Record<string, unknown>,
  ) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const capacity = Number(req.headers['x-foreman-capacity'] ?? 1);
      const count = Math.max(0, Math.min(capacity, this.limit - this.handedOut));
      const jobs = Array.from({ length: count }, (_, i) => this.make(this.handedOut + i));
      this.handedOut += count;
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jobs));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/job`;
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** Completed reports seen by the receiver (the container's own `completed` PUTs). */
function completions(callbacks: CallbackReceiver): number {
  return callbacks.requests.filter((r) => r.headers['x-foreman-job-status'] === 'completed').length;
}

/** Stops the agent first, so it makes no more requests to the feeder or receiver while they close. */
async function tearDown(agent: ReturnType<typeof spawnAgent>, feeder: JobFeeder, callbacks: CallbackReceiver, env: TestEnv): Promise<void> {
  agent.child.kill('SIGTERM');
  await agent.exited;
  await feeder.close();
  await callbacks.stop();
  await cleanup(env);
}

/**
 * The agent runs as the systemd unit and the image run it (TUNED), unless `tuned` is false: with V8's
 * default young generation, which grows from 1 to 16 MB per semi-space under steady work, RSS rises by
 * about 30 MB over the first thousand jobs while the heap in use stays flat.
 */
export async function benchSoak(jobs: number, tuned: boolean): Promise<void> {
  await testJobImage();
  const callbacks = await new CallbackReceiver().start();
  const feeder = await new JobFeeder(jobs, (i) => job(`soak-${i}`, callbacks.url(), { values: [i] })).start();
  const env = testEnv(feeder.url, {
    FOREMAN_LOG_LEVEL: 'warn',
    FOREMAN_CORE_MAX_CONCURRENT_JOBS: '8',
    FOREMAN_CORE_PORT: String(await freePort()),
    FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '0',
  });
  const agent = tuned ? spawnAgent(env, TUNED.env, TUNED.flags) : spawnAgent(env);
  const pid = agent.child.pid ?? 0;
  const started = Date.now();
  const marks: Array<{ done: number; rss: number; seconds: number }> = [];
  try {
    for (const mark of [100, ...Array.from({ length: Math.floor(jobs / 1000) }, (_, i) => (i + 1) * 1000)].filter((m) => m <= jobs)) {
      await waitFor(`${mark} jobs completed`, () => completions(callbacks) >= mark, 3_600_000, 200);
      marks.push({ done: mark, rss: rssMb(pid), seconds: (Date.now() - started) / 1000 });
      console.log(`  ${mark} jobs: RSS ${rssMb(pid).toFixed(1)} MB after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    const first = marks[0];
    const last = marks.at(-1);
    console.log('\n## Soak');
    if (first && last) {
      console.log(
        tuned
          ? `agent run with ${TUNED.flags.join(' ')} and MALLOC_ARENA_MAX=2, as the systemd unit and the image run it (--soak-untuned: without)`
          : 'agent run without tuning flags',
      );
      console.log(`${jobs} trivial jobs (8 at a time) in ${last.seconds.toFixed(0)} s (${(last.done / last.seconds).toFixed(1)} jobs/s)`);
      console.log(
        `agent RSS after the first ${first.done}: ${first.rss.toFixed(1)} MB; after ${last.done}: ${last.rss.toFixed(1)} MB; growth ${(last.rss - first.rss).toFixed(1)} MB (goal: within 10 MB)`,
      );
    }
  } finally {
    await tearDown(agent, feeder, callbacks, env);
  }
}

/** The agent's metrics page, as name → value for the plain gauges. */
async function metrics(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-z0-9_]+) ([0-9.e+-]+)$/.exec(line);
    if (match?.[1] && match[2]) values.set(match[1], Number(match[2]));
  }
  return values;
}

/** What one fan-out round measured. */
interface FanoutRound {
  seconds: number;
  agentCpu: number;
  agentSystem: number;
  engine: number;
  p99Ms: number;
  maxMs: number;
  peak: number;
  updates: number;
  /** The agent's busiest 10 s: its share of one core then, and what the jobs were doing. */
  busiest: Busiest;
}

/** A stretch of the round, in seconds from its start, and the agent's share of one core over it. */
interface CpuWindow {
  share: number;
  from: number;
  to: number;
}

/** The busiest window, with what the jobs were doing in it. */
interface Busiest extends CpuWindow {
  /** Jobs sending updates at some point in the window. */
  sending: number;
  /** Jobs whose first update fell in the window. */
  starting: number;
  /** Jobs whose completion fell in the window. */
  finishing: number;
}

/** The window of at least `windowS` seconds of `samples` (time in s, CPU seconds) with the highest CPU share; undefined when the run was shorter. */
function busiestWindow(samples: ReadonlyArray<{ t: number; cpu: number }>, windowS: number): CpuWindow | undefined {
  let best: CpuWindow | undefined;
  for (const end of samples) {
    const start = samples.findLast((s) => s.t <= end.t - windowS);
    if (!start) continue;
    const share = (end.cpu - start.cpu) / (end.t - start.t);
    if (!best || share > best.share) best = { share, from: start.t, to: end.t };
  }
  return best;
}

/** Runs jobs `from` to `from + count - 1` (handed out by `feeder` as the agent has room) and measures the agent and engine until all complete. */
async function fanoutRound(
  pid: number,
  metricsPort: number,
  feeder: JobFeeder,
  callbacks: CallbackReceiver,
  from: number,
  count: number,
): Promise<FanoutRound> {
  await metrics(metricsPort); // resets the event-loop delay histogram: the window starts here
  const t0 = Date.now();
  const agentCpu0 = cpuOf(pid);
  const agentSystem0 = cpuOf(pid, 'system');
  const engineCpu = new EngineCpu();
  engineCpu.sample();
  const samples = [{ t: 0, cpu: agentCpu0 }];
  feeder.limit = from + count;
  await waitFor(
    'every job of the round to complete',
    () => {
      engineCpu.sample();
      samples.push({ t: (Date.now() - t0) / 1000, cpu: cpuOf(pid) });
      return completions(callbacks) >= from + count;
    },
    900_000,
    500,
  );
  const seconds = (Date.now() - t0) / 1000;
  const m = await metrics(metricsPort);
  const ofRound = (r: RecordedRequest): boolean => Number(String(r.headers['x-foreman-job-id']).slice('fan-'.length)) >= from;
  const updates = callbacks.requests.filter((r) => r.headers['x-foreman-job-status'] === 'running' && ofRound(r));
  // How many jobs were sending updates at once: each job counts from its first update to its completion.
  const spans = callbacks.requests
    .filter((r) => r.headers['x-foreman-job-status'] === 'completed' && ofRound(r))
    .map((done) => {
      const id = done.headers['x-foreman-job-id'];
      return { from: (Math.min(...updates.filter((u) => u.headers['x-foreman-job-id'] === id).map((u) => u.at)) - t0) / 1000, to: (done.at - t0) / 1000 };
    });
  const window = busiestWindow(samples, 10) ?? { share: NaN, from: NaN, to: NaN };
  const within = (t: number): boolean => window.from <= t && t <= window.to;
  return {
    seconds,
    agentCpu: (cpuOf(pid) - agentCpu0) / seconds,
    agentSystem: (cpuOf(pid, 'system') - agentSystem0) / seconds,
    engine: engineCpu.seconds / seconds,
    p99Ms: (m.get('foreman_nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000,
    maxMs: (m.get('foreman_nodejs_eventloop_lag_max_seconds') ?? NaN) * 1000,
    peak: Math.max(...spans.map((a) => spans.filter((b) => b.from <= a.from && a.from <= b.to).length)),
    updates: updates.length,
    busiest: {
      ...window,
      sending: spans.filter((a) => a.from <= window.to && window.from <= a.to).length,
      starting: spans.filter((a) => within(a.from)).length,
      finishing: spans.filter((a) => within(a.to)).length,
    },
  };
}

/**
 * `rounds` fan-outs of `count` jobs, one after the other, on one agent: the first shows a freshly started
 * agent, whose code V8 has not optimized yet; later rounds show an agent already in service.
 */
export async function benchFanout(count: number, rounds = 1): Promise<void> {
  await testJobImage();
  const callbacks = await new CallbackReceiver().start();
  const feeder = await new JobFeeder(0, (i) => job(`fan-${i}`, callbacks.url(), { action: 'progress', steps: 20, delayMs: 1000, values: [i] })).start();
  const metricsPort = await freePort();
  const env = testEnv(feeder.url, {
    FOREMAN_LOG_LEVEL: 'warn',
    FOREMAN_CORE_MAX_CONCURRENT_JOBS: String(count),
    FOREMAN_CORE_PORT: String(await freePort()),
    FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '300000',
    FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
  });
  const agent = spawnAgent(env, {}, benchAgentFlags());
  const pid = agent.child.pid ?? 0;
  try {
    await waitFor(
      'the metrics page',
      () =>
        metrics(metricsPort).then(
          () => true,
          () => false,
        ),
      30_000,
      200,
    );
    console.log('\n## Fan-out');
    for (let round = 0; round < rounds; round++) {
      const r = await fanoutRound(pid, metricsPort, feeder, callbacks, round * count, count);
      const which = rounds === 1 ? '' : round === 0 ? 'round 1 (fresh agent): ' : `round ${round + 1} (same agent): `;
      console.log(
        `${which}${count} jobs (max_concurrent_jobs = ${count}), each sending a progress update every second for 20 s: all done in ${r.seconds.toFixed(1)} s, up to ${r.peak} sending at once, ${r.updates} updates forwarded`,
      );
      console.log(
        `  agent CPU over the run: ${(r.agentCpu * 100).toFixed(1)} % of one core (goal: under 10 %), ${(r.agentSystem * 100).toFixed(1)} % of it in the kernel; ${((r.agentCpu * r.seconds * 1000) / count).toFixed(0)} ms per job (launch, 20 updates, removal); busiest 10 s: ${(r.busiest.share * 100).toFixed(1)} %`,
      );
      const b = r.busiest;
      console.log(
        `  the busiest 10 s were ${b.from.toFixed(1)}–${b.to.toFixed(1)} s into the round: ${b.sending} jobs sending, ${b.starting} of them sending their first update and ${b.finishing} completing then`,
      );
      console.log(`  event-loop delay p99 ${r.p99Ms.toFixed(1)} ms, max ${r.maxMs.toFixed(1)} ms`);
      console.log(
        `  engine CPU (dockerd, containerd, shims) over the run: ${(r.engine * 100).toFixed(1)} % of one core; agent RSS at the end ${rssMb(pid).toFixed(1)} MB`,
      );
    }
  } finally {
    await tearDown(agent, feeder, callbacks, env);
  }
}
