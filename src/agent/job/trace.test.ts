/** A runner's trace, on the real OpenTelemetry SDK (spans kept in memory), against the fake engine and the in-memory store. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { settle } from '../../testing/clock-kit.ts';
import { jobSpec, makeKit } from '../../testing/agent-kit.ts';
import { createTracing } from '../../tracing/otel.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function tracedKit() {
  const exporter = new InMemorySpanExporter();
  const holder: { lookup?: (id: string) => ReturnType<typeof kit.store.get> } = {};
  const tracing = createTracing({
    endpoint: 'http://127.0.0.1:1/v1/traces',
    serviceName: 'foreman',
    version: 'test',
    agentId: 'agent-1',
    log: pino({ level: 'silent' }),
    clock: { now: () => Date.now(), after: () => ({ cancel: () => undefined }) },
    lookup: (id) => holder.lookup?.(id)?.trace ?? undefined,
    exporter,
  });
  const kit = makeKit({ tracing });
  holder.lookup = (id) => kit.store.get(id);
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
