/**
 * Per-job order across a restart, on the real engine: a container that PUTs every few milliseconds
 * while its agent is killed and restarted, with updates still stored from before. The restarted
 * agent must send those before any update its job API takes after the restart.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { readLog, spawnStack } from './support/agents.ts';
import { freePort } from './support/ports.ts';
import { job } from './support/reports.ts';
import type { RecordedRequest } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

before(() => testJobImage());

/** The seq of each delivery the first time it arrived, in arrival order. */
function firstArrivals(requests: readonly RecordedRequest[]): number[] {
  const firsts: number[] = [];
  for (const r of requests) {
    const seq = Number(r.headers['x-foreman-delivery-seq']);
    if (!firsts.includes(seq)) firsts.push(seq);
  }
  return firsts;
}

test('updates stored before a kill -9 go out before those the restarted agent takes, for three restarts', async (t) => {
  const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
  const { control, callbacks } = s;
  try {
    // Refused for now: updates pile up in the store.
    callbacks.status = 503;
    control.reply([job('order-1', callbacks.url(), { action: 'progress', steps: 400, delayMs: 5 })]);
    for (let round = 1; round <= 3; round++) {
      const seen = callbacks.for('order-1').length;
      await waitFor(`a delivery attempt in round ${round}`, () => callbacks.for('order-1').length > seen, 30_000);
      await s.restart({ signal: 'SIGKILL' });
    }
    const restarted = s.agent;
    await waitFor('the restarted agent to serve again', () => readLog(restarted.logFile).includes('job API listening'), 30_000);
    callbacks.status = 200;
    await callbacks.waitForCompletion('order-1', 120_000);
    const firsts = firstArrivals(callbacks.for('order-1'));
    assert.deepEqual(
      firsts,
      firsts.map((_, k) => k + 1),
      `first arrivals out of order: ${firsts.slice(0, 20).join(',')}…`,
    );
    t.diagnostic(`${firsts.length} updates, first arrivals in seq order across three kill -9 restarts`);
  } finally {
    await s.close();
  }
});
