/**
 * Speed and footprint of the agent, each as a ratio against the raw engine (or a bare baseline)
 * measured in the same run. Prints a table; asserts nothing.
 *
 *   npm run bench                  # all four
 *   npm run bench -- --only proxy  # dispatch | proxy | idle | logs | soak | fanout | steady | tracing (soak, fanout: bench/scale.ts;
 *                                  # steady, also run by fanout: bench/steady.ts; tracing: bench/tracing.ts)
 *   npm run bench -- --only tracing [--tracing-jobs 100 --tracing-rounds 3]   # BENCH_BASELINE_BIN=… adds another build's idle RSS
 *   npm run bench -- --only logs --log-lines 200000 --log-runs 3
 *   npm run bench -- --only handout  # the control server's hand-out rate (bench/handout.ts)
 *   npm run bench -- --only images   # start latency with and without the server's image preference (bench/images.ts)
 *
 * The agent is the built bundle (bin/foreman.js → dist/): run `npm run build` after changing src/.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { testJobImage } from '../test/support/image.ts';
import { benchAgentFlags, benchIdle, rssMb } from './footprint.ts';
import { benchFanout, benchSoak } from './scale.ts';
import { benchHandout } from './handout.ts';
import { benchImages } from './images.ts';
import { benchSteady, sleepingJobs } from './steady.ts';
import { benchTracing } from './tracing.ts';
import type Docker from 'dockerode';
import { spawnAgent, teardown, testEnv, type TestEnv } from '../test/support/agents.ts';
import { docker, type EngineEvent, watchContainerEvents } from '../test/support/containers.ts';
import { job } from '../test/support/reports.ts';
import { CallbackReceiver, FakeControlServer } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    rounds: { type: 'string', default: '25' },
    seconds: { type: 'string', default: '5' },
    'log-lines': { type: 'string', default: '200000' },
    'log-runs': { type: 'string', default: '3' },
    'soak-jobs': { type: 'string', default: '10000' },
    'soak-untuned': { type: 'boolean', default: false },
    'fanout-jobs': { type: 'string', default: '100' },
    'fanout-rounds': { type: 'string', default: '1' },
    'tracing-jobs': { type: 'string', default: '100' },
    'tracing-rounds': { type: 'string', default: '3' },
    'handout-jobs': { type: 'string', default: '2000' },
    'handout-agents': { type: 'string', default: '8' },
    'images-jobs': { type: 'string', default: '24' },
    'images-rounds': { type: 'string', default: '2' },
    'images-gap': { type: 'string', default: '2500' },
  },
});
const rounds = Number(args.rounds);
const loadSeconds = Number(args.seconds);
const logLines = Number(args['log-lines']);
const logRuns = Number(args['log-runs']);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

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
        const served = await waitFor(
          'the poll carrying the job',
          () => (control.polls.length > pollsBefore ? control.polls[pollsBefore] : undefined),
          10_000,
          2,
        );
        const started = await waitFor('agent start event', () => watcher.starts.get(id), 20_000, 5);
        agentSamples.push(started - served.at);
        await callbacks.waitForCompletion(id);
        // Like the raw loop, start the next one only once this container is gone.
        await waitFor(
          'the container to be removed',
          async () => (await docker.listContainers({ all: true, filters: { label: [`foreman.job-id=${id}`] } })).length === 0,
          20_000,
          20,
        );
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

async function benchProxy(jobCount: number): Promise<void> {
  const { callbacks, endpoints, close } = await sleepingJobs('proxy', jobCount);
  try {
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
    console.log(
      `| raw: straight to the callback receiver | ${fmt(direct.rate, 0)} | ${fmt(percentile(direct.latencies, 50), 2)} | ${fmt(percentile(direct.latencies, 99), 2)} | ${direct.errors} |`,
    );
    console.log(
      `| through foreman (answered once stored) | ${fmt(proxied.rate, 0)} | ${fmt(percentile(proxied.latencies, 50), 2)} | ${fmt(percentile(proxied.latencies, 99), 2)} | ${proxied.errors} |`,
    );
    console.log(
      `added latency p50: ${fmt(percentile(proxied.latencies, 50) - percentile(direct.latencies, 50), 2)} ms (target ≤ 1 ms); throughput ${fmt(proxied.rate / direct.rate, 3)}× raw (target ≥ 5000 PUT/s)`,
    );
    console.log(`forwarded: ${forwardedDuring} during the load, the rest within ${fmt(drainSeconds)} s more: ${fmt(forwardRate, 0)} deliveries/s end to end`);
    // Unloaded: one connection, so latency is the cost of one update, not queueing behind 49 others.
    const directOne = await load([callbacks.url('direct')], 1, 2);
    const proxiedOne = await load(endpoints, 1, 2);
    console.log(
      `one connection: raw p50 ${fmt(percentile(directOne.latencies, 50), 2)} ms, through foreman p50 ${fmt(percentile(proxiedOne.latencies, 50), 2)} ms: added ${fmt(percentile(proxiedOne.latencies, 50) - percentile(directOne.latencies, 50), 2)} ms`,
    );
  } finally {
    await close();
  }
}

/** What a logs server received for one job, counted cheaply (newlines, not JSON), with when. */
interface LogCount {
  lines: number;
  posts: number;
  bytes: number;
  /** When `expected` lines had arrived. */
  allAt?: number;
  /** When the `x-foreman-log-end` request arrived, and its total. */
  endAt?: number;
  endTotal?: number;
}

/** A logs server on 127.0.0.1 that accepts every NDJSON batch and counts its lines per job. */
class LineCounter {
  readonly jobs = new Map<string, LogCount>();
  private readonly expected = new Map<string, number>();
  private server: Server | undefined;
  private port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const id = decodeURIComponent(String(req.headers['x-foreman-job-id']));
      let lines = 0;
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        for (let k = chunk.indexOf(0x0a); k >= 0; k = chunk.indexOf(0x0a, k + 1)) lines++;
      });
      req.on('end', () => {
        const count = this.count(id);
        const at = Date.now();
        count.lines += lines;
        count.bytes += bytes;
        if (req.headers['x-foreman-log-end'] === undefined) count.posts++;
        else {
          count.endAt ??= at;
          count.endTotal = Number(req.headers['x-foreman-log-end']);
        }
        if (count.allAt === undefined && count.lines >= (this.expected.get(id) ?? Infinity)) count.allAt = at;
        res.writeHead(200).end();
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(jobId: string): string {
    return `http://127.0.0.1:${this.port}/logs/${encodeURIComponent(jobId)}`;
  }

  expect(jobId: string, lines: number): void {
    this.expected.set(jobId, lines);
  }

  count(jobId: string): LogCount {
    let count = this.jobs.get(jobId);
    if (!count) {
      count = { lines: 0, posts: 0, bytes: 0 };
      this.jobs.set(jobId, count);
    }
    return count;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

/** A write to fd 1 that rides out a non-blocking pipe (EAGAIN), in the printers below. */
const WRITE_ALL = `const fs=require('fs');function w(s){const b=Buffer.from(s);for(let o=0;o<b.length;){try{o+=fs.writeSync(1,b,o)}catch(e){if(e.code!=='EAGAIN')throw e}}}`;

/** `node -e` that prints `lines` lines (`line <n> `, padded with x to `bytes` when given) as fast as it can, 64 KiB a write. */
function burstPrinter(lines: number, bytes: number): string[] {
  const script = `${WRITE_ALL}let s='';for(let i=0;i<${lines};i++){let t='line '+i+' ';${bytes > 0 ? `t=t.padEnd(${bytes - 1},'x');` : ''}s+=t+'\\n';if(s.length>=65536){w(s);s=''}}if(s)w(s);`;
  return ['/usr/local/bin/node', '-e', script];
}

/** `node -e` that prints `lines` short lines at `perSecond`, by the wall clock (every 10 ms, what is due). */
function pacedPrinter(lines: number, perSecond: number): string[] {
  const script = `${WRITE_ALL}const t0=Date.now();let i=0;const tick=()=>{const due=Math.min(${lines},Math.floor((Date.now()-t0)*${perSecond}/1000));let s='';for(;i<due;i++)s+='log '+i+' stdout \\n';if(s)w(s);if(i<${lines})setTimeout(tick,10)};tick();`;
  return ['/usr/local/bin/node', '-e', script];
}

/** Counts the engine's frames (one per stored message) in a multiplexed log stream. */
class FrameCounter {
  frames = 0;
  private pending = Buffer.alloc(0);
  push(chunk: Buffer): void {
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let at = 0;
    while (data.length - at >= 8) {
      const size = data.readUInt32BE(at + 4);
      if (data.length - at - 8 < size) break;
      at += 8 + size;
      this.frames++;
    }
    this.pending = Buffer.from(data.subarray(at));
  }
}

let clockTicks: number | undefined;
/** CPU time (user + system, all threads) the process has used, in seconds. */
function cpuSeconds(pid: number): number {
  clockTicks ??= (() => {
    try {
      return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      return 100;
    }
  })();
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After "pid (comm) ": state is field 3, utime 14 and stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

const median = (xs: number[]): number => percentile(sortNum(xs), 50);
/** Other work on the machine skews these figures (the engine, the agent and the printer share its cores). */
const machineLoad = (): string => `1-min load average ${fmt(loadavg()[0] ?? NaN, 2)} on ${availableParallelism()} cores`;
const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface LogRun {
  readonly id: string;
  /** Container start → the logs server had every line; → the log end arrived. */
  readonly allMs: number;
  readonly endMs: number;
  readonly count: LogCount;
}

/** A control server, a callback receiver, a line-counting logs server and a spawned agent, with the engine's start and die events of its containers. */
async function logStack(): Promise<{
  env: TestEnv;
  pid: number;
  events: Map<string, { start?: number; die?: number }>;
  startOf(id: string): Promise<number>;
  viaAgent(id: string, command: string[], lines: number, logs?: boolean): Promise<LogRun>;
  close(): Promise<void>;
}> {
  await testJobImage();
  const control = await new FakeControlServer().start();
  const callbacks = await new CallbackReceiver().start();
  const receiver = await new LineCounter().start();
  const env = testEnv(control.url, {
    FOREMAN_LOG_LEVEL: 'warn',
    FOREMAN_CORE_POLL_FREQUENCY: '250',
    // The agent removes a stopped container only after waiting (at most 10 s) for its output to be read
    // to the end, and ends the log there. Far off, so that a slow run is measured rather than cut
    // short; the bench removes each container itself once its log and report are in.
    FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '60000',
    FOREMAN_CORE_MAX_LOG_BYTES: String(1024 * 1024 * 1024),
  });
  const agent = spawnAgent(env, {}, benchAgentFlags());
  const events = new Map<string, { start?: number; die?: number }>();
  const watchers: Array<{ stop(): void }> = [];
  let agentId: string | undefined;
  const close = async (): Promise<void> => {
    for (const w of watchers) w.stop();
    await teardown({ agent, control, callbacks, env, agentId });
    await receiver.close();
  };
  try {
    // Warm up (creates the network); its report names the agent.
    control.reply([job('bench-logs-warm', callbacks.url(), {}, { command: burstPrinter(1000, 0), logsUrl: receiver.url('bench-logs-warm') })]);
    const warm = await waitFor(
      'the warm-up report',
      () => callbacks.for('bench-logs-warm').find((r) => r.headers['x-foreman-job-status'] === 'completed'),
      60_000,
    );
    agentId = String(warm.headers['x-foreman-agent-id']);
    const onEvent = (e: EngineEvent): void => {
      const id = e.Actor.Attributes['foreman.job-id'] ?? e.Actor.Attributes['bench.id'];
      if (!id) return;
      const entry = events.get(id) ?? {};
      if (e.Action === 'start') entry.start = e.timeNano / 1e6;
      if (e.Action === 'die') entry.die = e.timeNano / 1e6;
      events.set(id, entry);
    };
    watchers.push(await watchContainerEvents(['start', 'die'], `foreman.agent=${agentId}`, onEvent));
    watchers.push(await watchContainerEvents(['start', 'die'], 'bench.logs=1', onEvent));
  } catch (err) {
    await close();
    throw err;
  }
  const startOf = (id: string): Promise<number> => waitFor(`the start of ${id}`, () => events.get(id)?.start, 60_000, 2);
  const viaAgent = async (id: string, command: string[], lines: number, logs = true): Promise<LogRun> => {
    receiver.expect(id, lines);
    control.reply([job(id, callbacks.url(), {}, { command, ...(logs ? { logsUrl: receiver.url(id) } : {}) })]);
    const started = await startOf(id);
    const count = receiver.count(id);
    if (logs) await waitFor(`the log end of ${id}`, () => count.endAt, 600_000, 2);
    // The command exits without reporting: the agent reports it failed, once the log has ended.
    await waitFor(`the report of ${id}`, () => callbacks.for(id).find((r) => r.headers['x-foreman-job-status'] === 'completed'), 600_000);
    for (const c of await docker.listContainers({ all: true, filters: { label: [`foreman.job-id=${id}`, `foreman.agent=${agentId}`] } })) {
      await docker.getContainer(c.Id).remove({ force: true });
    }
    if (logs && (count.lines !== lines || count.endTotal !== lines))
      console.warn(`! ${id}: ${count.lines} lines received, log end says ${String(count.endTotal)}, ${lines} printed`);
    return { id, allMs: (count.allAt ?? NaN) - started, endMs: (count.endAt ?? NaN) - started, count };
  };
  return { env, pid: agent.child.pid ?? 0, events, startOf, viaAgent, close };
}

/** Lines/s through the agent against the engine's own follow, for short and 200-byte lines. */
async function benchLogThroughput(): Promise<void> {
  const stack = await logStack();
  const rawContainers = new Set<Docker.Container>();
  let serial = 0;
  /** The same command run by hand on the same network, its output followed as the agent asks for it (follow, both streams, timestamps). */
  const viaEngine = async (command: string[], lines: number): Promise<number> => {
    const id = `bench-raw-logs-${serial++}`;
    const container = await docker.createContainer({
      Image: 'foreman-test-job:latest',
      Cmd: command,
      Labels: { 'bench.logs': '1', 'bench.id': id },
      HostConfig: { NetworkMode: stack.env.networkName, Init: true },
    });
    rawContainers.add(container);
    try {
      await container.start();
      const started = await stack.startOf(id);
      const stream = (await container.logs({ follow: true, stdout: true, stderr: true, timestamps: true })) as unknown as AsyncIterable<Buffer>;
      const counter = new FrameCounter();
      let allAt = NaN;
      for await (const chunk of stream) {
        counter.push(chunk);
        if (counter.frames >= lines && Number.isNaN(allAt)) allAt = Date.now();
      }
      if (counter.frames !== lines) console.warn(`! ${id}: the engine gave ${counter.frames} messages, ${lines} printed`);
      return allAt - started;
    } finally {
      await container.remove({ force: true });
      rawContainers.delete(container);
    }
  };
  const loadAtStart = machineLoad();
  try {
    console.log(`\n## Live logs: ${logLines} lines printed as fast as possible → delivered (median of ${logRuns}; ms from the container's start event)`);
    console.log('Two identical containers one after the other, alternating: the raw one followed by this process (`docker logs --follow --timestamps`');
    console.log("through dockerode), the agent's one streamed to a logs server on 127.0.0.1 that counts lines.");
    console.log(
      '| line | raw engine follow lines/s | through foreman lines/s (last line) | ratio | foreman lines/s (log end) | ratio | batches |\n|---|---|---|---|---|---|---|',
    );
    for (const [label, bytes] of [
      ['short (~12 B)', 0],
      ['200 B', 200],
    ] as const) {
      const command = burstPrinter(logLines, bytes);
      const raw: number[] = [];
      const all: number[] = [];
      const ends: number[] = [];
      const posts: number[] = [];
      for (let r = 0; r < logRuns; r++) {
        raw.push(await viaEngine(command, logLines));
        const run = await stack.viaAgent(`bench-logs-${serial++}`, command, logLines);
        all.push(run.allMs);
        ends.push(run.endMs);
        posts.push(run.count.posts);
      }
      const rate = (ms: number[]): number => logLines / (median(ms) / 1000);
      console.log(
        `| ${label} | ${fmt(rate(raw), 0)} | ${fmt(rate(all), 0)} | ${fmt(rate(all) / rate(raw), 2)} | ${fmt(rate(ends), 0)} | ${fmt(rate(ends) / rate(raw), 2)} | ${fmt(median(posts), 0)} |`,
      );
      console.log(
        `  ms: raw ${raw.map((x) => fmt(x, 0)).join(' ')}; foreman last line ${all.map((x) => fmt(x, 0)).join(' ')}, log end ${ends.map((x) => fmt(x, 0)).join(' ')}`,
      );
    }
    console.log(
      `target: foreman ≥ 0.8× the raw engine. Agent peak RSS over these runs (VmHWM): ${fmt(rssMb(stack.pid, 'VmHWM'))} MB. ${machineLoad()} at the end (${loadAtStart} at the start)`,
    );
  } finally {
    for (const c of rawContainers) await c.remove({ force: true }).catch(() => undefined);
    await stack.close();
  }
}

/** The agent's CPU and memory while a job prints 10,000 short lines a second, with and without a logsUrl (two agents, alternating). */
async function benchLogCpu(): Promise<void> {
  const rate = 10_000;
  const seconds = 10;
  const lines = rate * seconds;
  const paced = pacedPrinter(lines, rate);
  const baseline = await logStack();
  const streaming = await logStack().catch(async (err: unknown) => {
    await baseline.close();
    throw err;
  });
  try {
    const loadAtStart = machineLoad();
    const idleRss = [rssMb(baseline.pid), rssMb(streaming.pid)];
    const idleFrom = cpuSeconds(baseline.pid);
    const idleT0 = performance.now();
    await sleepMs(3000);
    const idleCpu = (cpuSeconds(baseline.pid) - idleFrom) / ((performance.now() - idleT0) / 1000);
    let serial = 0;
    const cpuRun = async (
      stack: Awaited<ReturnType<typeof logStack>>,
      logs: boolean,
    ): Promise<{ cpu: number; wholeCpu: number; rss: number; printed: number; delivered: number; lag: number; floor: number }> => {
      const { pid } = stack;
      const id = `bench-cpu-${serial++}`;
      const done = stack.viaAgent(id, paced, lines, logs);
      done.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
      const started = await stack.startOf(id);
      const cpuAtStart = cpuSeconds(pid);
      // Beside the agent that does not follow this job's output: a bare follower of the same container, the floor.
      const [container] = logs ? [] : await docker.listContainers({ filters: { label: [`foreman.job-id=${id}`] } });
      const follower = container ? spawn(process.execPath, ['--import', 'tsx', 'bench/follow-floor.ts', container.Id], { stdio: 'ignore' }) : undefined;
      const followerExit = follower ? new Promise((resolve) => follower.once('exit', resolve)) : Promise.resolve();
      const wallAtStart = performance.now();
      // The steady part: from 2 s after the start to 8 s.
      await sleepMs(Math.max(0, started + 2000 - Date.now()));
      const from = cpuSeconds(pid);
      const followerFrom = follower?.pid ? cpuSeconds(follower.pid) : NaN;
      const t0 = performance.now();
      const rss: number[] = [];
      while (performance.now() - t0 < 6000) {
        rss.push(rssMb(pid));
        await sleepMs(250);
      }
      const cpu = (cpuSeconds(pid) - from) / ((performance.now() - t0) / 1000);
      const floor = follower?.pid ? (cpuSeconds(follower.pid) - followerFrom) / ((performance.now() - t0) / 1000) : NaN;
      const run = await done;
      follower?.kill();
      await followerExit;
      const wholeCpu = (cpuSeconds(pid) - cpuAtStart) / ((performance.now() - wallAtStart) / 1000);
      const died = stack.events.get(id)?.die ?? NaN;
      return {
        cpu,
        wholeCpu,
        rss: median(rss),
        printed: lines / ((died - started) / 1000),
        delivered: logs ? lines / (run.allMs / 1000) : NaN,
        // How long after the container's end the last line arrived.
        lag: logs ? started + run.allMs - died : NaN,
        floor,
      };
    };
    const withLogs: Array<Awaited<ReturnType<typeof cpuRun>>> = [];
    const without: Array<Awaited<ReturnType<typeof cpuRun>>> = [];
    for (let r = 0; r < logRuns; r++) {
      without.push(await cpuRun(baseline, false));
      withLogs.push(await cpuRun(streaming, true));
    }
    const m = (runs: typeof withLogs, pick: (x: (typeof withLogs)[number]) => number): number => median(runs.map(pick));
    const row = (label: string, runs: typeof withLogs, pid: number, idle: number | undefined): string =>
      `| ${label} | ${fmt(
        m(runs, (x) => x.printed),
        0,
      )} | ${fmt(
        m(runs, (x) => x.delivered),
        0,
      )} | ${fmt(
        m(runs, (x) => x.lag),
        0,
      )} | ${fmt(100 * m(runs, (x) => x.cpu))} % | ${fmt(100 * m(runs, (x) => x.wholeCpu))} % | ${fmt(m(runs, (x) => x.rss))} MB | ${fmt(rssMb(pid, 'VmHWM'))} MB | ${fmt(idle ?? NaN)} MB |`;
    console.log(
      `\n## Live logs: an agent process while its job prints ${rate} short lines/s for ${seconds} s (median of ${logRuns}; one agent per row, runs alternating)`,
    );
    console.log(
      '| job | printed lines/s | delivered lines/s | last line after the container ended, ms | agent CPU 2–8 s after start (% of one core) | agent CPU start → report | agent RSS while printing | agent peak RSS | agent RSS before |\n|---|---|---|---|---|---|---|---|---|',
    );
    console.log(row('without logsUrl (baseline)', without, baseline.pid, idleRss[0]));
    console.log(row('with logsUrl', withLogs, streaming.pid, idleRss[1]));
    console.log(
      `idle agent (polling every 250 ms): ${fmt(100 * idleCpu)} % of a core; streaming costs ${fmt(100 * (m(withLogs, (x) => x.cpu) - m(without, (x) => x.cpu)))} points of a core at ${rate} lines/s. ${machineLoad()} at the end (${loadAtStart} at the start)`,
    );
    const floor = m(without, (x) => x.floor);
    console.log(
      `floor: a bare process following the same output (bench/follow-floor.ts: dockerode, counting frames, nothing stored or sent) used ${fmt(100 * floor)} % of a core in the same 2–8 s; the agent streaming used ${fmt(m(withLogs, (x) => x.cpu) / floor, 2)}× that`,
    );
  } finally {
    await streaming.close();
    await baseline.close();
  }
}

const which = args.only;
if (!which || which === 'dispatch') await benchDispatch();
if (!which || which === 'proxy') {
  await benchProxy(1);
  await benchProxy(10);
}
if (!which || which === 'idle') await benchIdle();
if (!which || which === 'logs') {
  await benchLogThroughput();
  await benchLogCpu();
}
// Long (the soak runs 10,000 jobs): only when asked for.
if (which === 'fanout') await benchFanout(Number(args['fanout-jobs']), Number(args['fanout-rounds']));
if (which === 'fanout' || which === 'steady') await benchSteady(100, 20, 30);
if (which === 'tracing') await benchTracing(Number(args['tracing-jobs']), Number(args['tracing-rounds']));
if (which === 'soak') await benchSoak(Number(args['soak-jobs']), !args['soak-untuned']);
// The control server, not the agent: only when asked for.
if (which === 'handout') await benchHandout(Number(args['handout-jobs']), Number(args['handout-agents']));
if (which === 'images') await benchImages(Number(args['images-jobs']), Number(args['images-rounds']), Number(args['images-gap']));
