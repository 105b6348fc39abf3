import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import pino from 'pino';
import { openApi } from '../testing/job-api-kit.ts';
import { createJobApi, type JobUpdate } from './server.ts';

function setup() {
  const updates: JobUpdate[] = [];
  const redactions: string[][] = [];
  const api = createJobApi({
    log: pino({ level: 'silent' }),
    maxBodySize: 1024,
    backend: {
      authorize: (id, secret) => id === 'a/b c' && secret === 's3cret',
      fetchJob: (id) => Promise.resolve({ status: 200, body: { id, body: { values: [1] } } }),
      updateJob: (_id, update) => {
        updates.push(update);
        return Promise.resolve({ status: 200, body: { ok: true } });
      },
      addRedactions: (_id, values) => {
        redactions.push([...values]);
        return Promise.resolve({ status: 200, body: { redacting: values.length } });
      },
    },
  });
  return { api, updates, redactions };
}

const url = `/job/${encodeURIComponent('a/b c')}?token=s3cret`;

test('GET and PUT with the right id and secret reach the backend, body byte for byte', async () => {
  const { api, updates } = setup();
  const get = await (await api.app()).inject({ method: 'GET', url });
  assert.equal(get.statusCode, 200);
  assert.deepEqual(get.json(), { id: 'a/b c', body: { values: [1] } });

  const payload = Buffer.from('{"result":  6 }\n');
  const put = await (
    await api.app()
  ).inject({
    method: 'PUT',
    url,
    headers: { 'x-foreman-job-status': 'completed', 'x-foreman-job-progress': '0.5', 'content-type': 'application/json' },
    payload,
  });
  assert.equal(put.statusCode, 200);
  assert.equal(updates[0]?.status, 'completed');
  assert.equal(updates[0]?.progress, 0.5);
  assert.deepEqual(updates[0]?.body, payload);

  const bare = await (await api.app()).inject({ method: 'PUT', url, headers: { 'x-foreman-job-status': 'running' } });
  assert.equal(bare.statusCode, 200);
  assert.equal(updates[1]?.progress, 0);
  await api.close();
  await api.close();
});

test('a wrong or missing secret, or another id, is a 404 that reveals nothing', async () => {
  const { api, updates } = setup();
  for (const path of ['/job/a%2Fb%20c?token=nope', '/job/a%2Fb%20c', '/job/other?token=s3cret', '/nothing']) {
    const res = await (await api.app()).inject({ method: 'PUT', url: path, headers: { 'x-foreman-job-status': 'completed' } });
    assert.equal(res.statusCode, 404, path);
    assert.deepEqual(res.json(), { error: 'no such job' });
  }
  assert.equal(updates.length, 0);
});

test('bad headers get 400 with a message; oversized bodies get 413', async () => {
  const { api } = setup();
  const cases: Array<[Record<string, string>, number, RegExp]> = [
    [{}, 400, /x-foreman-job-status must be "running" or "completed"/],
    [{ 'x-foreman-job-status': 'done' }, 400, /x-foreman-job-status must be/],
    [{ 'x-foreman-job-status': 'running', 'x-foreman-job-progress': 'abc' }, 400, /x-foreman-job-progress must be a number/],
  ];
  for (const [headers, status, message] of cases) {
    const res = await (await api.app()).inject({ method: 'PUT', url, headers });
    assert.equal(res.statusCode, status, JSON.stringify(headers));
    assert.match(res.json<{ error: string }>().error, message);
  }
  const big = await (
    await api.app()
  ).inject({
    method: 'PUT',
    url,
    headers: { 'x-foreman-job-status': 'running', 'content-type': 'text/plain' },
    payload: 'x'.repeat(2048),
  });
  assert.equal(big.statusCode, 413);
  assert.doesNotMatch(big.body, /at .*\.ts/);
});

test('a backend failure is a 503 the container can retry', async () => {
  const api = openApi({ fetchJob: () => Promise.reject(new Error('SQLITE_BUSY: database is locked')) });
  const res = await (await api.app()).inject({ method: 'GET', url: '/job/x?token=t' });
  assert.equal(res.statusCode, 503);
  assert.doesNotMatch(res.body, /SQLITE/);
});

test('a valid PUT followed by bytes that are not HTTP on the same connection still gets its own answer, then a 400', async () => {
  let release: () => void = () => undefined;
  const stored = new Promise<void>((resolve) => (release = resolve));
  const updates: string[] = [];
  const api = createJobApi({
    log: pino({ level: 'silent' }),
    maxBodySize: 1024,
    backend: {
      authorize: () => true,
      fetchJob: () => Promise.resolve({ status: 200, body: {} }),
      addRedactions: () => Promise.resolve({ status: 200, body: {} }),
      // Answered only once the update is "stored", after the bad bytes have been parsed.
      updateJob: async (_id, update) => {
        updates.push(update.body.toString());
        await stored;
        return { status: 200, body: { status: 'accepted' } };
      },
    },
  });
  const { port } = await api.listen('127.0.0.1', 0);
  try {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = once(socket, 'close');
    socket.write(`PUT /job/j?token=t HTTP/1.1\r\nhost: x\r\nx-foreman-job-status: running\r\ncontent-length: 2\r\n\r\nok\x00\x01 not http\r\n\r\n`);
    while (updates.length === 0) await new Promise((resolve) => setImmediate(resolve));
    release();
    await closed;
    const text = Buffer.concat(received).toString();
    assert.deepEqual(updates, ['ok']);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"status":"accepted"\}HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"malformed HTTP request"\}$/);
  } finally {
    await api.close();
  }
});

/** Writes raw bytes on a connection of its own; resolves with what came back once the agent closed it, or after `deadlineMs`. */
async function exchange(port: number, bytes: string, deadlineMs = 4000): Promise<{ text: string; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => undefined);
  // Written without ending our side, so only the agent can end the exchange.
  socket.write(bytes);
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    once(socket, 'close').then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs))),
  ]);
  clearTimeout(timer);
  socket.destroy();
  return { text: Buffer.concat(received).toString(), closed };
}

const PUT_HEAD = 'PUT /job/j?token=t HTTP/1.1\r\nhost: x\r\nx-foreman-job-status: running\r\n';

test('a malformed body or header gets a 400 at once and its connection is closed; nothing of it is recorded', async () => {
  const updates: string[] = [];
  const api = openApi({
    updateJob: (_id, update) => {
      updates.push(update.body.toString());
      return Promise.resolve({ status: 200, body: { status: 'accepted' } });
    },
  });
  const { port } = await api.listen('127.0.0.1', 0);
  try {
    const cases: Record<string, string> = {
      'chunk size that is not hex': `${PUT_HEAD}transfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
      'chunk without its CRLF': `${PUT_HEAD}transfer-encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n`,
      'chunk size past 2^64': `${PUT_HEAD}transfer-encoding: chunked\r\n\r\n1ffffffffffffffffff\r\nabc\r\n0\r\n\r\n`,
      'chunk extension with a control byte': `${PUT_HEAD}transfer-encoding: chunked\r\n\r\n3;a=\x01\r\nabc\r\n0\r\n\r\n`,
      'content-length and chunked together': `${PUT_HEAD}content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      'a header name with a space': `${PUT_HEAD}bad header: 1\r\ncontent-length: 2\r\n\r\nok`,
      'a content-length that is not a number': `${PUT_HEAD}content-length: 2x\r\n\r\nok`,
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const { text, closed } = await exchange(port, bytes);
      assert.ok(closed, `${what}: the agent closed the connection within 4 s (it answered ${JSON.stringify(text)})`);
      assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*connection: close[\s\S]*\{"error":"malformed HTTP request"\}$/, `${what}: one 400`);
    }
    assert.deepEqual(updates, [], 'no malformed request reached the backend');
    // The server goes on answering.
    const good = await exchange(port, `${PUT_HEAD}content-length: 2\r\nconnection: close\r\n\r\nok`);
    assert.match(good.text, /^HTTP\/1\.1 200 OK/, 'a well-formed request after them is answered');
    assert.deepEqual(updates, ['ok'], 'and recorded');
  } finally {
    await api.close();
  }
});

test('a valid PUT followed on the same connection by one whose chunked body is malformed: the first is answered and recorded, then a 400', async () => {
  let release: () => void = () => undefined;
  const stored = new Promise<void>((resolve) => (release = resolve));
  const updates: string[] = [];
  const api = openApi({
    updateJob: async (_id, update) => {
      updates.push(update.body.toString());
      await stored;
      return { status: 200, body: { status: 'accepted' } };
    },
  });
  const { port } = await api.listen('127.0.0.1', 0);
  try {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = once(socket, 'close');
    socket.write(`${PUT_HEAD}content-length: 5\r\n\r\nfirst${PUT_HEAD}transfer-encoding: chunked\r\n\r\n6\r\nsecond\r\nzz\r\nabc\r\n0\r\n\r\n`);
    while (updates.length === 0) await new Promise((resolve) => setImmediate(resolve));
    // The bad chunk is parsed while the first update is being stored; the 400 waits for its answer.
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    await closed;
    const text = Buffer.concat(received).toString();
    assert.deepEqual(updates, ['first'], 'only the whole request reached the backend');
    assert.match(
      text,
      /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"status":"accepted"\}HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"malformed HTTP request"\}$/,
      `the first answer, then the 400: ${JSON.stringify(text)}`,
    );
  } finally {
    await api.close();
  }
});

test('a port in use fails listen() at once, and close() still resolves', async () => {
  const { api } = setup();
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const address = taken.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await assert.rejects(api.listen('127.0.0.1', port), /EADDRINUSE/);
    await api.close();
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test('POST /job/<id>/redactions takes {"values": [...]} within its limits, behind the same secret', async () => {
  const { api, redactions } = setup();
  const app = await api.app();
  const redactUrl = `/job/${encodeURIComponent('a/b c')}/redactions?token=s3cret`;
  const ok = await app.inject({ method: 'POST', url: redactUrl, payload: { values: ['hunter22', 'another-value'] } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.deepEqual(ok.json(), { redacting: 2 }, 'the reply');
  assert.deepEqual(redactions, [['hunter22', 'another-value']], 'the backend got the values');
  for (const payload of ['not json', '{"values": "x"}', '{"values": []}', '{"values": ["abc"]}', JSON.stringify({ values: Array(65).fill('long-enough') })]) {
    const bad = await app.inject({ method: 'POST', url: redactUrl, payload });
    assert.equal(bad.statusCode, 400, payload);
    assert.match(bad.json<{ error: string }>().error, /"values"/, 'a clear error');
  }
  const wrong = await app.inject({ method: 'POST', url: redactUrl.replace('s3cret', 'nope'), payload: { values: ['hunter22'] } });
  assert.equal(wrong.statusCode, 404, 'a wrong secret reveals nothing');
  assert.equal(redactions.length, 1, 'nothing more reached the backend');
  await api.close();
});
