import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { ManualClock } from '../testing/clock-kit.ts';
import type { TracedJob, TraceIds, Tracing } from './job-trace.ts';
import { traced } from './job-trace.ts';
import { createTracing } from './otel.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

/** Tracing on the real SDK, its spans kept in memory as each ends; `warnings` are the warn lines it logged. */
function setup(lookup: (jobId: string) => TraceIds | undefined = () => undefined) {
  const exporter = new InMemorySpanExporter();
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const tracing = createTracing({
    endpoint: 'http://127.0.0.1:1/v1/traces',
    serviceName: 'foreman-test',
    version: '9.9.9',
    agentId: 'agent-1',
    log,
    clock: new ManualClock(),
    lookup,
    exporter,
  });
  const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
  const named = (name: string): ReadableSpan[] => spans().filter((s) => s.name === name);
  const one = (name: string): ReadableSpan => {
    const found = named(name);
    assert.equal(
      found.length,
      1,
      `one ${name} span (of ${spans()
        .map((s) => s.name)
        .join(', ')})`,
    );
    return found[0] as ReadableSpan;
  };
  return { tracing, spans, named, one, warnings };
}

function job(extra: Omit<Partial<TracedJob>, 'spec'> & { spec?: Record<string, unknown> } = {}): TracedJob {
  const { spec, ...rest } = extra;
  return {
    id: 'job-1',
    spec: { image: 'example/job:1', ...spec },
    containerName: 'foreman-agent-1-job-1',
    containerId: null,
    receivedAt: Date.now() - 500,
    startedAt: null,
    stoppedAt: null,
    trace: null,
    ...rest,
  };
}

const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

test("a job's spans: a job span under its traceparent, the steps under it, and the container told of the run span", async () => {
  const { tracing, one } = setup();
  const trace = tracing.forJob(job({ spec: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=opaque' } }));
  assert.equal(trace.fresh, true, 'a new trace: its ids are to be stored');
  assert.match(trace.ids.job, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`), 'the job span is in the job trace, sampled');
  assert.equal(trace.ids.parent, `00-${TRACE}-${PARENT}-01`, 'its parent is kept');
  assert.equal(trace.ids.state, 'vendor=opaque', 'and its tracestate');
  assert.deepEqual(
    trace.containerEnv,
    { TRACEPARENT: `00-${TRACE}-${trace.ids.run}-01`, TRACESTATE: 'vendor=opaque' },
    'the container gets the run span as parent',
  );

  await traced(trace, 'pull', { 'container.image.name': 'example/job:1' }, () => Promise.resolve());
  await traced(trace, 'create', {}, () => Promise.resolve('c0ffee'));
  await assert.rejects(
    traced(trace, 'start', {}, () => Promise.reject(new TypeError('no such container'))),
    /no such container/,
    'traced passes the failure on',
  );
  trace.running('c0ffee', Date.now());
  trace.ended('failed', { reason: 'exit', message: 'the container exited with code 3', exitCode: 3 });
  trace.stopped(Date.now());
  trace.finished();
  trace.finished();

  const jobSpan = one('foreman.job');
  const jobId = jobSpan.spanContext().spanId;
  assert.equal(parentOf(jobSpan), PARENT, "the job span's parent is the job's traceparent");
  assert.equal(jobSpan.attributes['foreman.job.outcome'], 'failed');
  assert.equal(jobSpan.attributes['process.exit.code'], 3);
  assert.equal(jobSpan.status.message, 'the container exited with code 3', 'a failed job is an error, with its report message');
  for (const name of ['foreman.queue', 'foreman.pull', 'foreman.create', 'foreman.start', 'foreman.run']) {
    assert.equal(parentOf(one(name)), jobId, `${name} is a child of the job span`);
    assert.equal(one(name).spanContext().traceId, TRACE, `${name} is in the job's trace`);
  }
  assert.equal(one('foreman.create').attributes['container.id'], 'c0ffee', 'the create span names the container it made');
  assert.equal(one('foreman.start').attributes['error.type'], 'TypeError', 'a failed step names the error class, not its message');
  assert.equal(one('foreman.run').spanContext().spanId, trace.ids.run, 'the run span has the id the container was given');
  assert.equal(one('foreman.job').resource.attributes['service.name'], 'foreman-test');
  assert.equal(one('foreman.job').resource.attributes['service.instance.id'], 'agent-1');
  await tracing.close();
});

test('after a restart, the job span and the run span start again under their stored ids, and no second queue span is made', async () => {
  const first = setup();
  const before = first.tracing.forJob(job());
  const ids = before.ids;
  const startedAt = Date.now() - 100;
  before.running('c1', startedAt);
  // kill -9: nothing of the job span or the run span was exported.
  assert.deepEqual(
    first.spans().map((s) => s.name),
    ['foreman.queue'],
    'only the queue span ended before the kill',
  );

  const second = setup();
  const after = second.tracing.forJob(job({ trace: ids, containerId: 'c1', startedAt }));
  assert.equal(after.fresh, false, 'continued: nothing new to store');
  assert.deepEqual(after.ids, ids, 'the same ids');
  assert.equal(after.containerEnv.TRACEPARENT, before.containerEnv.TRACEPARENT, 'the same TRACEPARENT');
  after.ended('succeeded');
  after.stopped(Date.now());
  after.finished();
  const jobSpan = second.one('foreman.job');
  assert.equal(`00-${jobSpan.spanContext().traceId}-${jobSpan.spanContext().spanId}-01`, ids.job, 'the job span keeps its ids');
  assert.equal(parentOf(jobSpan), undefined, 'a job without a traceparent has a root job span, also when continued');
  assert.equal(jobSpan.attributes['foreman.resumed'], true);
  const run = second.one('foreman.run');
  assert.equal(run.spanContext().spanId, ids.run, 'the run span keeps its id');
  assert.equal(run.startTime[0] * 1000 + Math.floor(run.startTime[1] / 1e6), startedAt, 'and its start');
  assert.equal(second.named('foreman.queue').length, 0, 'no second queue span');
  await first.tracing.close();
  await second.tracing.close();
});

test('a malformed traceparent is ignored with one warning: the job span begins a trace of its own', async () => {
  for (const bad of ['00-zz-00f067aa0ba902b7-01', `00-${'0'.repeat(32)}-${PARENT}-01`, 42, `00-${TRACE}-${PARENT}-01-extra`]) {
    const { tracing, one, warnings } = setup();
    const trace = tracing.forJob(job({ spec: { traceparent: bad } }));
    assert.equal(trace.ids.parent, undefined, `${String(bad)}: no parent`);
    trace.finished();
    assert.equal(parentOf(one('foreman.job')), undefined, `${String(bad)}: a root span`);
    assert.equal(warnings.length, 1, `${String(bad)}: one warning`);
    assert.match(warnings[0] ?? '', /malformed traceparent/, 'the warning says what was wrong');
    await tracing.close();
  }
  const { tracing, warnings } = setup();
  tracing.forJob(job()).finished();
  assert.equal(warnings.length, 0, 'a job without a traceparent is no warning');
  await tracing.close();
});

test('a parent that is not sampled: nothing is recorded, the context still goes to the container and the requests', async () => {
  const { tracing, spans } = setup();
  const trace = tracing.forJob(job({ spec: { traceparent: `00-${TRACE}-${PARENT}-00` } }));
  assert.equal(trace.containerEnv.TRACEPARENT, `00-${TRACE}-${trace.ids.run}-00`, 'the container is told the trace is not sampled');
  const attempt = tracing.deliveryAttempt({ id: 'd1', jobId: 'job-1', seq: 1, url: 'http://127.0.0.1:9/cb', headers: {}, createdAt: Date.now() }, 1);
  assert.match(attempt?.headers.traceparent ?? '', new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`), 'the callback carries the trace');
  attempt?.end({ status: 200 });
  trace.finished();
  assert.deepEqual(spans(), [], 'no span exported');
  await tracing.close();
});

test('callback attempts and log batches: client spans under the job span (the final report under a report span), their traceparent on the request', async () => {
  const stored = new Map<string, TraceIds>();
  const { tracing, one, named } = setup((id) => stored.get(id));
  const trace = tracing.forJob(job());
  const delivery = (id: string, status: string) => ({
    id,
    jobId: 'job-1',
    seq: Number(id.slice(1)),
    url: 'http://user:secret@127.0.0.1:9/cb?token=abc',
    headers: { 'x-foreman-job-status': status, 'x-foreman-job-outcome': 'succeeded' },
    createdAt: Date.now() - 50,
  });
  const running = tracing.deliveryAttempt(delivery('d1', 'running'), 1);
  running?.end({ status: 200 });
  const first = tracing.deliveryAttempt(delivery('d2', 'completed'), 1);
  first?.end({ error: 'connect ECONNREFUSED 127.0.0.1:9' });
  const second = tracing.deliveryAttempt(delivery('d2', 'completed'), 2);
  second?.end({ status: 503 });
  const third = tracing.deliveryAttempt(delivery('d2', 'completed'), 3);
  third?.end({ status: 200 });
  tracing.deliverySettled(delivery('d2', 'completed'), 'delivered');
  const batch = tracing.logBatch('job-1', 'http://127.0.0.1:9/logs', { offset: 10, lines: 5, end: false });
  batch?.end({ status: 202 });
  trace.finished();

  const jobSpanId = one('foreman.job').spanContext().spanId;
  const report = one('foreman.report');
  assert.equal(parentOf(report), jobSpanId, 'the report span is a child of the job span');
  assert.equal(report.attributes['foreman.delivery.result'], 'delivered');
  const attempts = named('foreman.callback');
  assert.equal(attempts.length, 4, 'a span per attempt');
  assert.equal(parentOf(attempts[0] as ReadableSpan), jobSpanId, 'an update is a child of the job span');
  for (const attempt of attempts.slice(1)) assert.equal(parentOf(attempt), report.spanContext().spanId, 'a final report attempt is a child of the report span');
  for (const [span, request] of [
    [attempts[0], running],
    [attempts[3], third],
  ] as const) {
    assert.equal(request?.headers.traceparent, `00-${span?.spanContext().traceId}-${span?.spanContext().spanId}-01`, 'the request carries its own span');
  }
  assert.equal(attempts[0]?.attributes['url.full'], 'http://user:***@127.0.0.1:9/cb?token=***', 'no credentials in url.full');
  assert.equal(attempts[1]?.attributes['error.type'], 'ECONNREFUSED');
  assert.equal(attempts[2]?.attributes['http.response.status_code'], 503);
  assert.equal(attempts[2]?.attributes['error.type'], '503');
  assert.equal(attempts[3]?.attributes['http.response.status_code'], 200);
  const logs = one('foreman.logs');
  assert.equal(parentOf(logs), jobSpanId, 'a log batch is a child of the job span');
  assert.equal(logs.attributes['http.request.method'], 'POST');
  assert.equal(logs.attributes['foreman.log.offset'], 10);

  // Once the runner let the job go, its stored ids still parent its requests (a callback retried after removal).
  assert.equal(tracing.logFields('job-1'), undefined, 'no log fields for a job no runner holds');
  assert.equal(tracing.deliveryAttempt(delivery('d3', 'running'), 1), undefined, 'nothing stored: no span');
  stored.set('job-1', trace.ids);
  const late = tracing.deliveryAttempt(delivery('d3', 'running'), 1);
  late?.end({ status: 200 });
  assert.equal(parentOf(named('foreman.callback')[4] as ReadableSpan), jobSpanId, 'a late attempt is still a child of the job span');
  await tracing.close();
});

test('log lines about a job get its trace id and job span id while a runner holds it; close is safe twice', async () => {
  const { tracing } = setup();
  const trace = tracing.forJob(job());
  const fields = tracing.logFields('job-1');
  assert.deepEqual(fields, { traceId: trace.ids.job.split('-')[1], spanId: trace.ids.job.split('-')[2] }, 'the job span');
  assert.equal(tracing.logFields('other'), undefined, 'nothing for another job');
  trace.finished();
  const again: Tracing = tracing;
  await Promise.all([again.close(), again.close()]);
});
