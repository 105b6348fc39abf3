import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeSocketPath, serveProbesOnAddress, serveProbesOnSocket, socketPathProblem, type HealthProbes } from './probes.ts';

function get(target: { socketPath: string } | { port: number }, path: string, method = 'GET'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...target, host: '127.0.0.1', path, method }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the probes on the socket in data_dir: 200 ok, 503 with the reason, 404 for anything else; a stale socket file is replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-probes-'));
  let ready: string | undefined = 'the last poll failed: connect ECONNREFUSED';
  const probes: HealthProbes = { health: () => undefined, ready: () => Promise.resolve(ready) };
  const path = probeSocketPath(dir);
  writeFileSync(path, 'left by an agent that was killed');
  const listener = await serveProbesOnSocket(probes, path);
  try {
    assert.deepEqual(await get({ socketPath: path }, '/healthz'), { status: 200, text: 'ok\n' }, 'alive');
    assert.deepEqual(await get({ socketPath: path }, '/readyz'), { status: 503, text: 'the last poll failed: connect ECONNREFUSED\n' }, 'not ready, with why');
    ready = undefined;
    assert.deepEqual(await get({ socketPath: path }, '/readyz?verbose'), { status: 200, text: 'ok\n' }, 'ready; a query is ignored');
    assert.deepEqual(await get({ socketPath: path }, '/healthz', 'HEAD'), { status: 200, text: '' }, 'HEAD has no body');
    assert.equal((await get({ socketPath: path }, '/metrics')).status, 404, 'no metrics here');
    assert.equal((await get({ socketPath: path }, '/healthz', 'POST')).status, 404, 'GET and HEAD only');
  } finally {
    await listener.close();
    await listener.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(path), false, 'the socket file is removed at close');
});

test('a probe that throws is a 503 naming the failure; the TCP listener serves the same', async () => {
  const probes: HealthProbes = {
    health: () => {
      throw new Error('SQLITE_IOERR');
    },
    ready: () => undefined,
  };
  const listener = await serveProbesOnAddress(probes, '127.0.0.1:0');
  try {
    const port = Number(listener.where.split(':').at(-1));
    assert.deepEqual(await get({ port }, '/healthz'), { status: 503, text: 'the probe failed: SQLITE_IOERR\n' });
    assert.deepEqual(await get({ port }, '/readyz'), { status: 200, text: 'ok\n' });
  } finally {
    await listener.close();
  }
});

test('a data_dir too deep for a Unix socket path is named, not a cryptic listen error', async () => {
  const path = probeSocketPath(`/var/lib/${'d'.repeat(100)}`);
  assert.match(
    socketPathProblem(path) ?? '',
    /^the probe socket \/var\/lib\/d+\/foreman\.sock is 122 bytes long, more than a Unix socket path may be \(107\); set a shorter core\.data_dir$/,
  );
  await assert.rejects(serveProbesOnSocket({ health: () => undefined, ready: () => undefined }, path), /more than a Unix socket path may be/);
  assert.equal(socketPathProblem('/var/lib/foreman/foreman.sock'), undefined);
});
