// Its own file, so that no other test has loaded fastify into this process first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadedFastify, openApi } from '../testing/job-api-kit.ts';

test('prepare() loads the routes before any request, once', async () => {
  const api = openApi();
  await api.listen('127.0.0.1', 0);
  try {
    assert.equal(loadedFastify(), false);
    api.prepare();
    api.prepare();
    const deadline = Date.now() + 30_000;
    while (!loadedFastify() && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(loadedFastify(), true, 'prepare() loads fastify');
    // The app prepare() built is the one requests use.
    assert.equal(await api.app(), await api.app());
    assert.equal((await (await api.app()).inject({ method: 'GET', url: '/job/x?token=t' })).statusCode, 200);
  } finally {
    await api.close();
  }
});
