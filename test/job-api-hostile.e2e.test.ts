/** The real agent's job API, for a real job container, given a valid update followed by bytes that are not HTTP. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { testJobImage } from './support/image.ts';
import { type Stack, startStack } from './support/agents.ts';
import { job } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

let stack: Stack;

before(async () => {
  await testJobImage();
  stack = await startStack();
});

after(() => stack?.close());

test('an update recorded and forwarded gets its 200 even when malformed bytes follow it on the connection', async () => {
  const { control, callbacks, running } = stack;
  control.reply([job('keepalive-1', callbacks.url(), { action: 'sleep' })]);
  const record = await waitFor(
    'the job to run',
    () => (running.store.get('keepalive-1')?.state === 'started' ? running.store.get('keepalive-1') : undefined),
    30_000,
  );
  const api = new URL(running.agent.jobApiUrl);
  const socket = connect(Number(api.port), api.hostname);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  const closed = once(socket, 'close');
  socket.write(
    `PUT /job/keepalive-1?token=${record.secret} HTTP/1.1\r\nhost: ${api.host}\r\nx-foreman-job-status: running\r\nx-foreman-job-progress: 0.5\r\ncontent-length: 14\r\n\r\n{"step":"one"}` +
      '\x16\x03\x01 this is not HTTP\r\n\r\n',
  );
  await closed;
  const text = Buffer.concat(received).toString();
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"status":"accepted"[^}]*\}HTTP\/1\.1 400 Bad Request\r\n/);
  const forwarded = await waitFor('the update at the callback', () =>
    callbacks.for('keepalive-1').find((r) => r.headers['x-foreman-job-status'] === 'running'),
  );
  assert.equal(forwarded.body.toString(), '{"step":"one"}');
});

test('a PUT whose chunked body is malformed gets a 400 at once, its connection is closed, and nothing of it is recorded or forwarded', async () => {
  const { control, callbacks, running } = stack;
  control.reply([job('chunked-1', callbacks.url(), { action: 'sleep' })]);
  const record = await waitFor(
    'the job to run',
    () => (running.store.get('chunked-1')?.state === 'started' ? running.store.get('chunked-1') : undefined),
    30_000,
  );
  const api = new URL(running.agent.jobApiUrl);
  const head = `PUT /job/chunked-1?token=${record.secret} HTTP/1.1\r\nhost: ${api.host}\r\nx-foreman-job-status: running\r\ntransfer-encoding: chunked\r\n\r\n`;
  for (const body of ['zz\r\nabc\r\n0\r\n\r\n', '5\r\nchunk\r\nqq\r\n0\r\n\r\n']) {
    const socket = connect(Number(api.port), api.hostname);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => undefined);
    socket.write(head + body);
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      once(socket, 'close').then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 4000))),
    ]);
    clearTimeout(timer);
    socket.destroy();
    const text = Buffer.concat(received).toString();
    assert.ok(closed, `the agent closed the connection within 4 s (it answered ${JSON.stringify(text)})`);
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"malformed HTTP request"\}$/, `one 400 for ${JSON.stringify(body)}`);
  }
  // A good update after them is forwarded first of all: the malformed ones left nothing in the outbox.
  const good = await fetch(`${running.agent.jobApiUrl}/job/chunked-1?token=${record.secret}`, {
    method: 'PUT',
    headers: { 'x-foreman-job-status': 'running' },
    body: 'after',
  });
  assert.equal(good.status, 200, 'a well-formed update is accepted');
  const forwarded = await waitFor('the good update at the callback', () => callbacks.for('chunked-1')[0]);
  assert.equal(forwarded.body.toString(), 'after', 'the first update forwarded is the good one');
  assert.equal(forwarded.headers['x-foreman-delivery-seq'], '1', 'no delivery was queued for the malformed ones');
});
