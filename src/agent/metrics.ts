import Fastify, { type FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one agent, on a registry of its own. */
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
  readonly startLatency = new Histogram({
    name: 'foreman_job_start_seconds',
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
  private readonly running = new Gauge({ name: 'foreman_jobs_running', help: 'Jobs holding a slot', registers: [this.registry] });
  private readonly pending = new Gauge({ name: 'foreman_jobs_pending', help: 'Jobs waiting for a slot', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'foreman_' });
  }

  setJobs(running: number, pending: number): void {
    this.running.set(running);
    this.pending.set(pending);
  }
}

/** One probe's verdict: ok, or why not, in one line. */
export type Probe = () => Promise<string | undefined> | string | undefined;

export interface HealthProbes {
  /** Liveness: the engine and the store answer. */
  readonly health: Probe;
  /** Readiness: the last poll succeeded and the agent is not draining. */
  readonly ready: Probe;
}

/** Serves `GET /metrics`, `/healthz` and `/readyz` on `address` (host:port). */
export async function serveMetrics(metrics: AgentMetrics, address: string, probes: HealthProbes): Promise<FastifyInstance> {
  const separator = address.lastIndexOf(':');
  const host = address.slice(0, separator).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(address.slice(separator + 1));
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
