// Its own file, so that no other test has loaded fastify into this process first (prepare.test.ts likewise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { loadedFastify, openApi } from '../testing/job-api-kit.ts';

test('the job API listens without fastify and loads it with the first request', async () => {
  const api = openApi({ authorize: (id, secret) => id === 'j' && secret === 's' });
  const { port } = await api.listen('127.0.0.1', 0);
  try {
    assert.equal(loadedFastify(), false, 'listening loads no fastify');
    const get = (path: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        request({ host: '127.0.0.1', port, path }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
          .on('error', reject)
          .end();
      });
    // Two at once while fastify loads: both are answered.
    const [first, wrong] = await Promise.all([get('/job/j?token=s'), get('/job/j?token=wrong')]);
    assert.deepEqual(first, { status: 200, body: '{"id":"j"}' });
    assert.deepEqual(wrong, { status: 404, body: '{"error":"no such job"}' });
    assert.equal(loadedFastify(), true);
  } finally {
    await api.close();
    await api.close();
  }
});
