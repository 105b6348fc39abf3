import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endingReport, forwardedUpdate, trimLogTail, wireHeaders } from './messages.ts';

const to = { jobId: 'job 1/ü', agentId: 'agent-7', callbackUrl: 'http://127.0.0.1:9/cb' };

test('a forwarded update keeps the container headers and body, drops hop-by-hop ones, and says who sent it', () => {
  const body = Buffer.from('{"a": 1}');
  const message = forwardedUpdate(to, {
    outcome: undefined,
    headers: {
      'x-foreman-job-status': 'running',
      'x-foreman-job-progress': '0.5',
      'content-type': 'application/json',
      'x-multi': ['a', 'b'],
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      host: 'agent:3000',
      'content-length': '8',
      'user-agent': 'job/1',
      'x-foreman-delivery-id': 'spoofed',
      'x-foreman-delivery-seq': '99',
      'x-foreman-job-outcome': 'succeeded',
      'x-foreman-job-id': 'someone-else',
      'x-foreman-agent-id': 'someone-else',
      'x-absent': undefined,
    },
    body,
  });
  assert.equal(message.url, to.callbackUrl);
  assert.equal(message.body, body);
  assert.deepEqual(message.headers, {
    'x-foreman-job-status': 'running',
    'x-foreman-job-progress': '0.5',
    'content-type': 'application/json',
    'x-multi': 'a, b',
    'x-foreman-job-id': encodeURIComponent('job 1/ü'),
    'x-foreman-agent-id': 'agent-7',
  });
});

test('a forwarded completed update carries outcome succeeded', () => {
  const message = forwardedUpdate(to, { outcome: 'succeeded', headers: { 'x-foreman-job-status': 'completed' }, body: Buffer.alloc(0) });
  assert.equal(message.headers['x-foreman-job-outcome'], 'succeeded');
  const canceled = forwardedUpdate(to, { outcome: 'canceled', headers: { 'x-foreman-job-status': 'completed' }, body: Buffer.alloc(0) });
  assert.equal(canceled.headers['x-foreman-job-outcome'], 'canceled');
});

test('an ending report: status completed, the outcome in a header and in a JSON body with exit code and log tail', () => {
  const report = endingReport(to, { outcome: 'failed', reason: 'exit', message: 'exited with code 3', exitCode: 3, logs: ['boom'] });
  assert.deepEqual(report.headers, {
    'content-type': 'application/json',
    'x-foreman-job-status': 'completed',
    'x-foreman-job-outcome': 'failed',
    'x-foreman-job-id': encodeURIComponent('job 1/ü'),
    'x-foreman-agent-id': 'agent-7',
  });
  assert.deepEqual(JSON.parse(report.body.toString()), { outcome: 'failed', reason: 'exit', message: 'exited with code 3', exitCode: 3, logs: ['boom'] });
  const bare = endingReport(to, { outcome: 'lost', reason: 'container-vanished', message: 'gone', exitCode: null });
  assert.deepEqual(JSON.parse(bare.body.toString()), { outcome: 'lost', reason: 'container-vanished', message: 'gone' });
});

test('the log tail keeps the last 20 lines, each cut at 1000 characters', () => {
  const lines = Array.from({ length: 25 }, (_, i) => `line ${i}`);
  lines.push('x'.repeat(1500));
  const tail = trimLogTail(lines);
  assert.equal(tail.length, 20);
  assert.equal(tail[0], 'line 6');
  assert.equal(tail.at(-1), `${'x'.repeat(1000)}…`);
});

test('each attempt sends the delivery id and seq and our user agent, over whatever was stored', () => {
  const headers = wireHeaders(
    {
      id: 'd-1',
      jobId: 'j',
      seq: 4,
      url: 'http://x/',
      headers: { 'x-a': '1', 'x-foreman-delivery-seq': '4' },
      body: Buffer.alloc(0),
      createdAt: 0,
      attempts: 0,
    },
    'foreman/1.0',
  );
  assert.deepEqual(headers, { 'x-a': '1', 'x-foreman-delivery-id': 'd-1', 'x-foreman-delivery-seq': '4', 'user-agent': 'foreman/1.0' });
});
