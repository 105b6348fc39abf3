/**
 * What tracing costs (`npm run bench -- --only tracing`), each figure beside its baseline in the same run:
 *
 * - idle RSS of this build with tracing off, with tracing on (OpenTelemetry loaded, nothing to export), and, when
 *   BENCH_BASELINE_BIN names one, another build (say the branch point's `bin/foreman.js`, run by a script that
 *   `exec`s node on it): three agents of each, side by side, after a minute idle;
 * - the agent's CPU per job with tracing on against off: the same trivial jobs, 4 at a time, each with a
 *   `traceparent`, rounds interleaved, spans exported to a real OTLP/HTTP receiver on 127.0.0.1.
 */
import { testJobImage } from '../test/support/image.ts';
import { spawnAgent, testEnv } from '../test/support/agents.ts';
import { cleanup } from '../test/support/containers.ts';
import { OtlpReceiver } from '../test/support/otlp.ts';
import { freePort } from '../test/support/ports.ts';
import { job } from '../test/support/reports.ts';
import { CallbackReceiver } from '../test/support/servers.ts';
import { waitFor } from '../test/support/wait.ts';
import pino from 'pino';
import { systemClock } from '../src/shared/clock.ts';
import { traced } from '../src/tracing/job-trace.ts';
import { createTracing } from '../src/tracing/otel.ts';
import { cpuOf, idleAgentRss, type IdleRss } from './footprint.ts';
import { JobFeeder } from './scale.ts';

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function idle(rounds: number): Promise<void> {
  const otlp = await new OtlpReceiver().start();
  const baseline = process.env.BENCH_BASELINE_BIN;
  const off: IdleRss[] = [];
  const on: IdleRss[] = [];
  const base: IdleRss[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const [a, b, c] = await Promise.all([
        idleAgentRss({}, []),
        idleAgentRss({ FOREMAN_TRACING_ENDPOINT: otlp.url }, []),
        baseline ? idleAgentRss({}, [], baseline) : Promise.resolve(undefined),
      ]);
      off.push(a);
      on.push(b);
      if (c) base.push(c);
    }
  } finally {
    await otlp.close();
  }
  const show = (runs: IdleRss[]): string => `${fmt(median(runs.map((r) => r.settled)))} MB (all: ${runs.map((r) => fmt(r.settled)).join(', ')})`;
  console.log('\n## Tracing: idle footprint');
  console.log(`agent RSS after a minute idle, polling every 1 s (median of ${rounds} agents of each, side by side):`);
  console.log(`  tracing off: ${show(off)}`);
  console.log(
    `  tracing on (OpenTelemetry loaded, nothing to export): ${show(on)}; +${fmt(median(on.map((r) => r.settled)) - median(off.map((r) => r.settled)))} MB`,
  );
  if (base.length > 0) {
    console.log(
      `  baseline build (${baseline ?? ''}): ${show(base)}; tracing off is ${fmt(median(off.map((r) => r.settled)) - median(base.map((r) => r.settled)), 2)} MB above it`,
    );
  }
}

/** Agent CPU seconds for `jobs` trivial jobs, from the first hand-out to the last report. */
async function cpuForJobs(jobs: number, traced: boolean, round: number): Promise<{ cpu: number; spans: number }> {
  const otlp = await new OtlpReceiver().start();
  const callbacks = await new CallbackReceiver().start();
  const traceparent = (i: number): string => `00-${(round * 100_000 + i + 1).toString(16).padStart(32, '0')}-00f067aa0ba902b7-01`;
  const feeder = await new JobFeeder(0, (i) =>
    job(`t${round}-${traced ? 'on' : 'off'}-${i}`, callbacks.url(), { values: [i] }, { traceparent: traceparent(i) }),
  ).start();
  const env = testEnv(feeder.url, {
    FOREMAN_LOG_LEVEL: 'warn',
    FOREMAN_CORE_MAX_CONCURRENT_JOBS: '4',
    FOREMAN_CORE_PORT: String(await freePort()),
    FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '0',
    ...(traced ? { FOREMAN_TRACING_ENDPOINT: otlp.url } : {}),
  });
  const agent = spawnAgent(env, { OTEL_BSP_SCHEDULE_DELAY: '500' });
  const pid = agent.child.pid ?? 0;
  try {
    await waitFor('the agent to poll', () => feeder.handedOut === 0 && cpuOf(pid) > 0, 30_000);
    // Past its start-up, so both sides count only the jobs.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const before = cpuOf(pid);
    feeder.limit = jobs;
    const reports = (): number => callbacks.requests.filter((r) => r.headers['x-foreman-job-status'] === 'completed').length;
    await waitFor(`${jobs} jobs completed`, () => reports() >= jobs, 600_000, 100);
    // Their removals and last spans: give the exporter its delay.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return { cpu: cpuOf(pid) - before, spans: otlp.spans.length };
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
    await feeder.close();
    await callbacks.stop();
    await otlp.close();
    await cleanup(env);
  }
}

/**
 * The CPU the spans of one job cost in this process, beside the same job's calls untraced: a job span and its queue,
 * pull, create, start, run, report and remove spans, two callback attempts and two log batches, exported by the real
 * OTLP/HTTP exporter to a receiver on 127.0.0.1 (whose own CPU, in this process too, is counted: an upper bound).
 */
export async function inProcess(jobs: number): Promise<{ traced: number; plain: number }> {
  const otlp = await new OtlpReceiver().start();
  // Read by the SDK: a queue that holds every span of the run (its default, 2048, drops what a burst adds beyond it).
  process.env.OTEL_BSP_MAX_QUEUE_SIZE = String(jobs * 12 + 1);
  process.env.OTEL_BSP_SCHEDULE_DELAY = '200';
  const tracing = createTracing({
    endpoint: `${otlp.url}/v1/traces`,
    serviceName: 'bench',
    version: 'bench',
    agentId: 'bench-agent',
    log: pino({ level: 'silent' }),
    clock: systemClock,
    lookup: () => undefined,
  });
  const one = async (i: number, on: boolean): Promise<void> => {
    const job = {
      id: `job-${i}`,
      spec: { image: 'bench/job:1', traceparent: `00-${(i + 1).toString(16).padStart(32, '0')}-00f067aa0ba902b7-01` },
      containerName: `c-${i}`,
      containerId: null,
      receivedAt: Date.now() - 5,
      startedAt: null,
      stoppedAt: null,
      trace: null,
    };
    const trace = on ? tracing.forJob(job) : undefined;
    await traced(trace, 'pull', { 'container.image.name': 'bench/job:1' }, () => Promise.resolve());
    await traced(trace, 'create', { 'container.name': job.containerName }, () => Promise.resolve('c0ffee'));
    await traced(trace, 'start', { 'container.id': 'c0ffee' }, () => Promise.resolve());
    trace?.running('c0ffee', Date.now());
    const delivery = {
      id: `d-${i}`,
      jobId: job.id,
      seq: 1,
      url: 'http://127.0.0.1:9/cb',
      headers: { 'x-foreman-job-status': 'completed' },
      createdAt: Date.now(),
    };
    for (let attempt = 1; attempt <= 2; attempt++) (on ? tracing.deliveryAttempt(delivery, attempt) : undefined)?.end({ status: 200 });
    if (on) tracing.deliverySettled(delivery, 'delivered');
    for (let batch = 0; batch < 2; batch++)
      (on ? tracing.logBatch(job.id, 'http://127.0.0.1:9/logs', { offset: batch, lines: 1, end: batch === 1 }) : undefined)?.end({ status: 200 });
    trace?.ended('succeeded');
    trace?.stopped(Date.now());
    await traced(trace, 'remove', { 'container.id': 'c0ffee' }, () => Promise.resolve(true));
    trace?.finished();
  };
  const cpuMs = async (on: boolean): Promise<number> => {
    const before = process.cpuUsage();
    for (let i = 0; i < jobs; i++) await one(i, on);
    if (on) await waitFor('every span exported', () => otlp.spans.length >= jobs * 12, 120_000, 10);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1000 / jobs;
  };
  try {
    await cpuMs(true); // warm-up
    otlp.spans.length = 0;
    const plain = await cpuMs(false);
    const withSpans = await cpuMs(true);
    return { traced: withSpans, plain };
  } finally {
    await tracing.close();
    await otlp.close();
  }
}

export async function benchTracing(jobs: number, rounds: number): Promise<void> {
  const own = await inProcess(2000);
  console.log("\n## Tracing: CPU of one job's spans, in process");
  console.log(
    `12 spans a job (job, queue, pull, create, start, run, report, 2 callback attempts, 2 log batches, remove), exported over OTLP/HTTP JSON to a receiver in the same process: ${fmt(own.traced, 2)} ms of CPU per job, against ${fmt(own.plain, 3)} ms for the same calls untraced`,
  );
  await testJobImage();
  await idle(rounds);
  const off: number[] = [];
  const on: number[] = [];
  let spans = 0;
  for (let round = 0; round < rounds; round++) {
    off.push((await cpuForJobs(jobs, false, round)).cpu);
    const traced = await cpuForJobs(jobs, true, round);
    on.push(traced.cpu);
    spans = traced.spans;
  }
  const perJob = (cpu: number): number => (1000 * cpu) / jobs;
  console.log('\n## Tracing: CPU per job');
  console.log(`${jobs} trivial jobs with a traceparent, 4 at a time, ${rounds} rounds interleaved; agent CPU from the first hand-out to the last report:`);
  console.log(`  tracing off: ${fmt(perJob(median(off)))} ms per job (all: ${off.map((c) => fmt(perJob(c))).join(', ')})`);
  console.log(
    `  tracing on: ${fmt(perJob(median(on)))} ms per job (all: ${on.map((c) => fmt(perJob(c))).join(', ')}); ${spans} spans exported in the last round (${fmt(spans / jobs)} a job)`,
  );
  console.log(`  cost of tracing: ${fmt(perJob(median(on)) - perJob(median(off)), 2)} ms of CPU per job (${fmt((median(on) / median(off) - 1) * 100)} %)`);
}
