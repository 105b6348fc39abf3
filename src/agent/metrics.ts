import Fastify, { type FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

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

/** Serves `GET /metrics` on `address` (host:port). */
export async function serveMetrics(metrics: AgentMetrics, address: string): Promise<FastifyInstance> {
  const separator = address.lastIndexOf(':');
  const host = address.slice(0, separator).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(address.slice(separator + 1));
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  await app.listen({ host, port });
  return app;
}
