/**
 * Tracing end to end: real agent processes (the bundle) on the real engine, exporting over OTLP/HTTP to a real
 * receiver in this test that decodes what OpenTelemetry's exporter sends. A job's spans continue its
 * `traceparent`, the container joins the trace, every callback and log request carries it, and a kill -9
 * mid-job changes none of it.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { readLog, spawnStack } from './support/agents.ts';
import { OtlpReceiver, type ReceivedSpan } from './support/otlp.ts';
import { freePort } from './support/ports.ts';
import { job } from './support/reports.ts';
import type { RecordedRequest } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const SPAN_KIND_CLIENT = 3;
const SPAN_KIND_CONSUMER = 5;

/** `00-<trace>-<span>-<flags>` taken apart. */
function traceparentOf(value: unknown): { traceId: string; spanId: string; flags: string } {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(value));
  assert.ok(match, `a W3C traceparent, not ${String(value)}`);
  return { traceId: match[1] ?? '', spanId: match[2] ?? '', flags: match[3] ?? '' };
}

/** What the job printed to its live log, as the logs server received it. */
function printed(requests: readonly RecordedRequest[]): string {
  return requests.map((r) => r.body.toString('utf8')).join('\n');
}

/** The agent's JSON log lines about this job. */
function logLinesAbout(text: string, jobId: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.jobId === jobId);
}

describe('tracing', () => {
  before(() => testJobImage());

  test('a job with a traceparent: agent spans with the right parents, TRACEPARENT in the container, traceparent on every callback and log request, the same trace after a kill -9', async () => {
    const otlp = await new OtlpReceiver().start();
    const s = await spawnStack(
      { FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000', OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url },
      // The SDK's own variable: spans leave 200 ms after they end, so those of the first agent are out before the kill.
      { extraEnv: { OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_SERVICE_NAME: 'foreman-under-test' } },
    );
    const logs: string[] = [];
    try {
      const { control, callbacks } = s;
      control.reply([
        job(
          'traced-1',
          callbacks.url(),
          { action: 'log', lines: 40, perTick: 1, tickMs: 250, printEnv: ['TRACEPARENT', 'TRACESTATE'] },
          { logsUrl: callbacks.url('logs'), traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=opaque' },
        ),
      ]);
      // Before the kill: the launch's spans are exported, children of one job span in the job's trace.
      const start = await otlp.waitForSpan(TRACE, 'foreman.start');
      const jobSpanId = start.parentSpanId;
      for (const name of ['foreman.queue', 'foreman.pull', 'foreman.create']) {
        const span = await otlp.waitForSpan(TRACE, name);
        assert.equal(span.parentSpanId, jobSpanId, `${name} is a child of the job span`);
      }
      assert.equal((await otlp.waitForSpan(TRACE, 'foreman.pull')).attributes['container.image.name'], 'foreman-test-job:latest', 'the pull names its image');
      const containerId = (await otlp.waitForSpan(TRACE, 'foreman.create')).attributes['container.id'];
      assert.match(String(containerId), /^[0-9a-f]{64}$/, 'the create span names the container');
      const seen = await waitFor('the container to print its TRACEPARENT', () => {
        const text = printed(callbacks.requests.filter((r) => r.url === '/logs'));
        return /TRACEPARENT=([0-9a-f-]+)/.exec(text) ? text : undefined;
      });
      const inContainer = traceparentOf(/TRACEPARENT=([0-9a-f-]+)/.exec(seen)?.[1]);
      assert.equal(inContainer.traceId, TRACE, "the container's TRACEPARENT is in the job's trace");
      assert.equal(inContainer.flags, '01', 'sampled, as the job was');
      assert.match(seen, /TRACESTATE=vendor=opaque/, 'the tracestate goes with it');

      logs.push(readLog(s.agent.logFile));
      await s.restart({ signal: 'SIGKILL' });
      const done = await callbacks.waitForCompletion('traced-1', 60_000);
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'the job completed after the restart');

      // After the restart: the same job span (same id, same parent), the run span the container was told of, the report.
      const jobSpan = await otlp.waitForSpan(TRACE, 'foreman.job', () => true, 30_000);
      assert.equal(jobSpan.spanId, jobSpanId, 'the job span keeps its id across the kill');
      assert.equal(jobSpan.parentSpanId, PARENT, "the job span is a child of the job's traceparent");
      assert.equal(jobSpan.kind, SPAN_KIND_CONSUMER, 'the job span is a consumer span');
      assert.equal(jobSpan.attributes['foreman.job.id'], 'traced-1');
      assert.equal(jobSpan.attributes['foreman.job.outcome'], 'succeeded');
      assert.equal(jobSpan.attributes['foreman.resumed'], true, 'the second agent continued it');
      assert.equal(jobSpan.resource['service.name'], 'foreman-under-test', 'OTEL_SERVICE_NAME names the service');
      assert.equal(jobSpan.resource['service.instance.id'], s.agentId(), 'the agent id is the service instance');
      const run = await otlp.waitForSpan(TRACE, 'foreman.run');
      assert.equal(run.spanId, inContainer.spanId, "the container's TRACEPARENT names the run span as its parent");
      assert.equal(run.parentSpanId, jobSpanId, 'the run span is a child of the job span');
      assert.ok(run.startMs <= start.endMs + 1000 && run.endMs >= run.startMs, `the run span spans the container's run (${run.startMs}–${run.endMs})`);
      const report = await otlp.waitForSpan(TRACE, 'foreman.report');
      assert.equal(report.parentSpanId, jobSpanId, 'the report span is a child of the job span, in the same trace after the kill');
      assert.equal(report.attributes['foreman.delivery.result'], 'delivered');
      await otlp.waitForSpan(TRACE, 'foreman.remove', (span) => span.parentSpanId === jobSpanId);

      // Every callback and log request carried the trace: the callbacks as their attempt spans, the logs as their batches'.
      const callbackSpans = otlp.named(TRACE, 'foreman.callback');
      const requests = callbacks.for('traced-1');
      assert.ok(requests.some((r) => r.url === '/logs') && requests.some((r) => r.url === '/cb'), 'both kinds of request were sent');
      for (const request of requests) {
        const carried = traceparentOf(request.headers.traceparent);
        assert.equal(carried.traceId, TRACE, `${request.method} ${request.url} carries the job's trace`);
        assert.equal(request.headers.tracestate, 'vendor=opaque', `${request.method} ${request.url} carries its tracestate`);
      }
      const final = traceparentOf(done.headers.traceparent);
      const attempt = await waitFor('the span of the final delivery attempt', () => callbackSpans.find((span) => span.spanId === final.spanId));
      assert.equal(attempt.parentSpanId, report.spanId, 'the final delivery attempt is a child of the report span');
      assert.equal(attempt.kind, SPAN_KIND_CLIENT);
      assert.equal(attempt.attributes['http.request.method'], 'PUT');
      assert.equal(attempt.attributes['http.response.status_code'], 200);
      const batches = await waitFor('the log batch spans', () => {
        const spans = otlp.named(TRACE, 'foreman.logs');
        return spans.some((span) => span.attributes['foreman.log.end'] === true) ? spans : undefined;
      });
      for (const request of requests.filter((r) => r.url === '/logs')) {
        const carried = traceparentOf(request.headers.traceparent);
        // A batch sent by the first agent and not yet exported when it was killed has no span: the second sends it again.
        const span = batches.find((b) => b.spanId === carried.spanId);
        if (span) assert.equal(span.parentSpanId, jobSpanId, 'a log batch span is a child of the job span');
      }
      assert.ok(
        batches.every((b) => b.parentSpanId === jobSpanId && b.attributes['http.request.method'] === 'POST'),
        'every log batch span is a POST under the job span',
      );

      // The agent's log lines about the job carry its trace and job span.
      logs.push(readLog(s.agent.logFile));
      const lines = logs.flatMap((text) => logLinesAbout(text, 'traced-1'));
      const traced = lines.filter((line) => line.traceId === TRACE && line.spanId === jobSpanId);
      assert.ok(
        traced.some((line) => line.msg === 'job container started'),
        'the start line carries the trace',
      );
      assert.ok(
        traced.some((line) => line.msg === 're-adopted running job container'),
        'the re-adoption line carries the trace',
      );
      assert.ok(traced.length >= lines.length / 2, `most lines about the job carry its trace (${traced.length} of ${lines.length})`);
      assert.deepEqual(otlp.refused, [], 'every export was a JSON trace export');
    } finally {
      await s.close({ signal: 'SIGKILL' });
      await otlp.close();
    }
  });

  test("a malformed traceparent is ignored with one warning and the job runs in a trace of its own; a poll reply's header is a parent too", async () => {
    const otlp = await new OtlpReceiver().start();
    const s = await spawnStack({ FOREMAN_TRACING_ENDPOINT: `${otlp.url}/v1/traces` }, { extraEnv: { OTEL_BSP_SCHEDULE_DELAY: '200' } });
    try {
      const { control, callbacks } = s;
      control.reply([job('garbled-1', callbacks.url(), { values: [1, 2] }, { traceparent: '00-not-a-trace-01' })]);
      const done = await callbacks.waitForCompletion('garbled-1');
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'the job ran');
      const own = traceparentOf(done.headers.traceparent);
      const jobSpan = await otlp.waitForSpan(own.traceId, 'foreman.job');
      assert.equal(jobSpan.parentSpanId, '', 'its job span begins a trace of its own');
      const warnings = readLog(s.agent.logFile)
        .split('\n')
        .filter((line) => line.includes('malformed traceparent'));
      assert.equal(warnings.length, 1, `one warning:\n${warnings.join('\n')}`);
      assert.match(warnings[0] ?? '', /"jobId":"garbled-1"/);

      // A control server that sends the trace context as a header of its reply.
      control.replyHeaders = { traceparent: `00-${TRACE}-${PARENT}-01` };
      control.reply([job('headed-1', callbacks.url(), { values: [3] })]);
      const headed = await callbacks.waitForCompletion('headed-1');
      control.replyHeaders = {};
      assert.equal(traceparentOf(headed.headers.traceparent).traceId, TRACE, "the report is in the reply header's trace");
      const headedSpan: ReceivedSpan = await otlp.waitForSpan(TRACE, 'foreman.job');
      assert.equal(headedSpan.parentSpanId, PARENT, "the job span is a child of the reply's traceparent");
    } finally {
      await s.close();
      await otlp.close();
    }
  });
});
