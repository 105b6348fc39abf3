/** A runner's trace, on the real OpenTelemetry SDK (spans kept in memory), against the fake engine and the in-memory store. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { settle } from '../../testing/clock-kit.ts';
import { jobSpec, makeKit, type Kit } from '../../testing/agent-kit.ts';
import type { TraceIds } from '../../tracing/job-trace.ts';
import { createTracing } from '../../tracing/otel.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

/** Tracing on the real SDK, its spans kept in memory as each ends. */
function inMemoryTracing(lookup: (id: string) => TraceIds | undefined = () => undefined) {
  const exporter = new InMemorySpanExporter();
  const tracing = createTracing({
    endpoint: 'http://127.0.0.1:1/v1/traces',
    serviceName: 'foreman',
    version: 'test',
    agentId: 'agent-1',
    log: pino({ level: 'silent' }),
    clock: { now: () => Date.now(), after: () => ({ cancel: () => undefined }) },
    lookup,
    exporter,
  });
  return { exporter, tracing };
}

function tracedKit() {
  const holder: { kit?: Kit } = {};
  const { exporter, tracing } = inMemoryTracing((id) => holder.kit?.store.get(id)?.trace ?? undefined);
  const kit = makeKit({ tracing });
  holder.kit = kit;
  return { kit, exporter, tracing };
}

test('a traced job: its ids stored at launch, TRACEPARENT in its container under the run span, its spans ended by its removal', async () => {
  const { kit, exporter, tracing } = tracedKit();
  kit.scheduler.receive([jobSpec('j1', { traceparent: `00-${TRACE}-${PARENT}-01`, env: { TRACEPARENT: 'the job set its own' } })]);
  await settle();
  const container = kit.executor.containerOf('j1');
  assert.ok(container, 'the job launched');
  const ids = kit.store.get('j1')?.trace;
  assert.ok(ids, 'the trace ids are stored with the job');
  assert.equal(container.spec.env.TRACEPARENT, `00-${TRACE}-${ids.run}-01`, "the agent's TRACEPARENT wins over the job's own env");
  assert.equal(container.spec.env.FROM_CORE, 'core', '[core.env] still applies');
  kit.executor.exit(container.id, 3);
  await settle();
  await kit.clock.advance(5000);
  assert.equal(kit.state('j1'), 'removed', 'the job ran its course');
  const spans = exporter.getFinishedSpans();
  const names = spans.map((s) => s.name).sort();
  assert.deepEqual(names, ['foreman.create', 'foreman.job', 'foreman.pull', 'foreman.queue', 'foreman.remove', 'foreman.run', 'foreman.start'], 'every step');
  const job = spans.find((s) => s.name === 'foreman.job');
  assert.equal(job?.parentSpanContext?.spanId, PARENT, "the job span continues the job's traceparent");
  assert.equal(job.attributes['foreman.job.outcome'], 'failed');
  assert.equal(job.attributes['process.exit.code'], 3);
  assert.ok(
    spans.filter((s) => s !== job).every((s) => s.parentSpanContext?.spanId === job.spanContext().spanId),
    'every other span is a child of the job span',
  );
  // Its report went out in the job's trace (the outbox adds the attempt's span; here the store kept the delivery).
  assert.equal(kit.reports('j1')[0]?.outcome, 'failed');
  await tracing.close();
});

test('an untraced agent sets no TRACEPARENT and stores no trace', async () => {
  const kit = makeKit();
  kit.scheduler.receive([jobSpec('j1', { traceparent: `00-${TRACE}-${PARENT}-01` })]);
  await settle();
  assert.equal(kit.executor.containerOf('j1')?.spec.env.TRACEPARENT, undefined, 'no TRACEPARENT');
  assert.equal(kit.store.get('j1')?.trace, null, 'no trace stored');
});

test('a job canceled while queued is traced too: its job span ends with the outcome', async () => {
  const { exporter, tracing } = inMemoryTracing();
  const kit = makeKit({ tracing, maxConcurrentJobs: 1 });
  kit.scheduler.receive([jobSpec('first'), jobSpec('queued', { traceparent: `00-${TRACE}-${PARENT}-01` })]);
  await settle();
  kit.scheduler.cancel(['queued']);
  await settle();
  assert.equal(kit.reports('queued')[0]?.outcome, 'canceled', 'the queued job was reported canceled');
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === TRACE);
  assert.deepEqual(spans.map((s) => s.name).sort(), ['foreman.job', 'foreman.queue'], 'its queue wait and its job span');
  assert.equal(spans.find((s) => s.name === 'foreman.job')?.attributes['foreman.job.outcome'], 'canceled');
  await tracing.close();
});
