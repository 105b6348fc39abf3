import type { JobUsage } from '../protocol/wire.ts';
import Fastify, { type FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { splitAddress, type HealthProbes } from './probes.ts';

/** What the agent holds right now, read when Prometheus scrapes (src/agent/supervisor.ts gives it). */
export interface AgentSnapshot {
  /** `core.max_concurrent_jobs`. */
  readonly slots: number;
  /** Jobs holding a slot, and those waiting for one. */
  readonly running: number;
  readonly pending: number;
  /** Callback deliveries not yet settled, and when the oldest of them was stored (undefined: none). */
  readonly callbackBacklog: number;
  readonly callbackOldestAt: number | undefined;
  /** Live log lines stored and not yet accepted by their logs servers. */
  readonly logBacklogLines: number;
  /** Whether the agent is connected to the engine (it has not lost it since it last answered). */
  readonly engineUp: boolean;
  /** Now, on the agent's clock, for the oldest delivery's age. */
  readonly now: number;
}

/** How an image pull ended. */
export type PullResult = 'success' | 'failure' | 'canceled';

/** How a poll ended: it brought jobs, none, was refused for its token, or failed (network, timeout, another status, a bad reply). */
export type PollResult = 'jobs' | 'empty' | 'unauthorized' | 'error';

/**
 * Prometheus metrics of one agent, on a registry of its own. Names follow Prometheus conventions: counters end in
 * `_total`, durations are histograms in `_seconds`, and what the agent holds is read at scrape time.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly jobsEnded = new Counter({
    name: 'foreman_jobs_ended_total',
    help: 'Jobs that ended, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly deliveries = new Counter({
    name: 'foreman_callback_deliveries_total',
    help: 'Callback deliveries settled, by result (delivered, rejected, expired)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly polls = new Counter({
    name: 'foreman_polls_total',
    help: 'Polls of the control server, by result: jobs (the reply brought some), empty, unauthorized (401/403), error',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly startLatency = new Histogram({
    name: 'foreman_job_start_latency_seconds',
    help: 'From the poll reply that brought a job to its container running (queueing and pull included)',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly runTime = new Histogram({
    name: 'foreman_job_run_seconds',
    help: 'From container start to container stopped, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    registers: [this.registry],
  });
  readonly deliveryLatency = new Histogram({
    name: 'foreman_callback_delivery_seconds',
    help: 'From an update being stored to its callback delivery settling (retries included), by result',
    labelNames: ['result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 300, 3600],
    registers: [this.registry],
  });
  readonly pullDuration = new Histogram({
    name: 'foreman_image_pull_duration_seconds',
    help: 'Image pulls (an image missing here, or alwaysPull), from the request to the engine to its end, by result (success, failure, canceled)',
    labelNames: ['result'] as const,
    buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [this.registry],
  });
  readonly memoryPeak = new Histogram({
    name: 'foreman_job_memory_peak_bytes',
    help: "The highest memory use of each ended job's container",
    buckets: [16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384].map((mib) => mib * 1024 * 1024),
    registers: [this.registry],
  });
  readonly cpuSeconds = new Histogram({
    name: 'foreman_job_cpu_seconds',
    help: "CPU time (user and system) of each ended job's container",
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    registers: [this.registry],
  });
  readonly imagesRemoved = new Counter({
    name: 'foreman_images_removed_total',
    help: 'Images the agent removed, by why: over images.budget_bytes (budget), or free disk under images.low_free_bytes (disk)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  private snapshot: (() => AgentSnapshot) | undefined;

  /** What an ended job's container used. */
  jobUsage(usage: JobUsage): void {
    if (usage.memoryPeakBytes !== null) this.memoryPeak.observe(usage.memoryPeakBytes);
    if (usage.cpuSeconds !== null) this.cpuSeconds.observe(usage.cpuSeconds);
  }

  constructor(build: { readonly version: string; readonly node: string }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'foreman_' });
    new Gauge({
      name: 'foreman_build_info',
      help: 'Always 1; the labels say which foreman and which Node.js run',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
    }).set({ version: build.version, node: build.node }, 1);
    // Read at scrape time: nothing is updated on the agent's own paths.
    const read = (pick: (s: AgentSnapshot) => number) => (): number | undefined => {
      const snapshot = this.snapshot?.();
      return snapshot ? pick(snapshot) : undefined;
    };
    const gauge = (name: string, help: string, pick: (s: AgentSnapshot) => number): void => {
      const value = read(pick);
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const now = value();
          if (now !== undefined) this.set(now);
        },
      });
    };
    gauge('foreman_jobs_running', 'Jobs holding a slot', (s) => s.running);
    gauge('foreman_jobs_pending', 'Jobs waiting for a slot', (s) => s.pending);
    gauge('foreman_job_slots', 'Jobs this agent runs at once (core.max_concurrent_jobs)', (s) => s.slots);
    gauge('foreman_job_slots_free', 'Slots no job holds', (s) => Math.max(0, s.slots - s.running));
    gauge('foreman_callback_backlog', 'Callback deliveries stored and not yet settled', (s) => s.callbackBacklog);
    gauge('foreman_callback_backlog_oldest_age_seconds', 'How long the oldest unsettled callback delivery has waited; 0 when none waits', (s) =>
      s.callbackOldestAt === undefined ? 0 : Math.max(0, s.now - s.callbackOldestAt) / 1000,
    );
    gauge('foreman_log_backlog_lines', 'Live log lines stored and not yet accepted by their logs servers', (s) => s.logBacklogLines);
    gauge('foreman_engine_up', '1 while the agent is connected to the Docker engine, 0 while it has lost it', (s) => (s.engineUp ? 1 : 0));
  }

  /** Where the gauges read what the agent holds, once the agent is built. */
  observe(snapshot: () => AgentSnapshot): void {
    this.snapshot = snapshot;
  }
}

/** Serves `GET /metrics`, and `/healthz` and `/readyz` beside them, on `address` (host:port). */
export async function serveMetrics(metrics: AgentMetrics, address: string, probes: HealthProbes): Promise<FastifyInstance> {
  const { host, port } = splitAddress(address);
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  for (const [path, probe] of [
    ['/healthz', probes.health],
    ['/readyz', probes.ready],
  ] as const) {
    app.get(path, async (_request, reply) => {
      const problem = await probe();
      return reply
        .code(problem === undefined ? 200 : 503)
        .type('text/plain; charset=utf-8')
        .send(problem === undefined ? 'ok\n' : `${problem}\n`);
    });
  }
  await app.listen({ host, port });
  return app;
}
