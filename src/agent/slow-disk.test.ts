/**
 * A disk whose sync never finishes until told: the agent, composed over the real SQLite store and the fake
 * engine, keeps answering other containers and its health probe while one container's update waits for
 * its sync, and answers that update only once it is on disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { fsync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import { FakeExecutor } from '../executor/fake/fake-executor.ts';
import { SqliteStore } from '../jobs/sqlite-store.ts';
import { systemClock } from '../shared/clock.ts';
import { IMAGE } from '../testing/agent-kit.ts';
import { composeAgent } from './compose.ts';
import { serveProbesOnAddress } from './probes.ts';

test("while a sync hangs, other jobs' GETs and /healthz answer within 50 ms; the update waiting for it answers once it is on disk", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-slowdisk-'));
  // The disk: syncs finish only while `open` is true; held ones finish when it is opened again.
  let open = true;
  const held: Array<() => void> = [];
  const sync = (fd: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const run = (): void => fsync(fd, (err) => (err ? reject(err) : resolve()));
      if (open) run();
      else held.push(run);
    });
  const jobs = [
    { id: 'writer', image: IMAGE, body: {}, callbackUrl: 'http://127.0.0.1:9/cb' },
    { id: 'reader', image: IMAGE, body: { n: 1 }, callbackUrl: 'http://127.0.0.1:9/cb' },
  ];
  const control = createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jobs.splice(0))));
  control.listen(0, '127.0.0.1');
  await once(control, 'listening');
  // Also when the set-up below fails: an open server would keep the test process alive.
  t.after(() => {
    control.closeAllConnections();
    control.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { config } = loadConfig({
    env: {
      FOREMAN_CORE_URL: `http://127.0.0.1:${(control.address() as AddressInfo).port}/job`,
      FOREMAN_CORE_TOKEN: 't',
      FOREMAN_CORE_PORT: '0',
      FOREMAN_CORE_POLL_FREQUENCY: '50',
      FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '600000',
      FOREMAN_CORE_DATA_DIR: dir,
      FOREMAN_CORE_SHUTDOWN_TIMEOUT: '500',
    },
    cwd: dir,
    home: dir,
  });
  const log = pino({ level: 'silent' });
  const store = SqliteStore.open({ dataDir: dir, log, fsync: sync });
  const executor = new FakeExecutor({ agentId: store.agentId, images: [IMAGE] });
  const agent = composeAgent(config, { store, executor, clock: systemClock, log, version: 'test' });
  const probes = await serveProbesOnAddress({ health: () => agent.health(), ready: () => agent.ready() }, '127.0.0.1:0');
  const healthz = `http://${probes.where}/healthz`;
  try {
    await agent.start();
    const endpoint = (id: string): string => `${agent.jobApiUrl}/job/${id}?token=${store.get(id)?.secret ?? ''}`;
    const deadline = Date.now() + 10_000;
    while (!['writer', 'reader'].every((id) => store.get(id)?.state === 'started')) {
      assert.ok(Date.now() < deadline, 'both jobs started');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Both containers fetch their job once (the routes load on the first request).
    for (const id of ['writer', 'reader']) assert.equal((await fetch(endpoint(id))).status, 200, `${id} fetched its job`);

    open = false;
    let answered = false;
    const update = fetch(endpoint('writer'), { method: 'PUT', headers: { 'x-foreman-job-status': 'running' }, body: '{"step":1}' }).then((res) => {
      answered = true;
      return res.status;
    });
    for (let i = 0; i < 50 && held.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(held.length > 0, 'the update is committed and waits for its sync');

    const timings: number[] = [];
    for (let i = 0; i < 10; i++) {
      for (const url of [endpoint('reader'), healthz]) {
        const started = performance.now();
        const res = await fetch(url);
        await res.arrayBuffer();
        timings.push(performance.now() - started);
        assert.equal(res.status, 200, `${url.includes('healthz') ? '/healthz' : "the other job's GET"} answers while the sync hangs`);
      }
    }
    timings.sort((a, b) => a - b);
    t.diagnostic(`while the sync hung: median ${timings[10]?.toFixed(1)} ms, max ${timings.at(-1)?.toFixed(1)} ms over ${timings.length} requests`);
    assert.ok((timings[10] ?? Infinity) < 50, `answers within 50 ms (median ${timings[10]?.toFixed(1)} ms)`);
    assert.equal(answered, false, 'the update is not answered before it is on disk');

    open = true;
    for (const run of held.splice(0)) run();
    assert.equal(await update, 200, 'answered once the sync finished');
  } finally {
    open = true;
    for (const run of held.splice(0)) run();
    await agent.close();
    await probes.close();
    control.closeAllConnections();
    control.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
