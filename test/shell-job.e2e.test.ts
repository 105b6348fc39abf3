/**
 * The shell job of docs/writing-jobs.md (examples/shell-job/job.sh: sh and curl, nothing else) run by a real agent:
 * it reports progress and its result, rides out an agent killed with -9 mid-job (curl retries connection errors
 * until the restarted agent answers), and a failing run is reported with its exit code and last lines.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildShellJobImage } from '../examples/shell-job/build.ts';
import { spawnStack } from './support/agents.ts';
import { testEngine } from './support/containers.ts';
import { freePort } from './support/ports.ts';
import { assertInOrder, job, reportOf, seqs } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

const execFileAsync = promisify(execFile);
const skip = testEngine ? `builds its image on the host's Docker engine only (not ${testEngine})` : false;

describe('the shell job of docs/writing-jobs.md', { skip, timeout: 300_000 }, () => {
  let image: string;

  before(async () => {
    image = await buildShellJobImage();
  });

  after(async () => {
    // Built for this file only: leave the engine as it was.
    if (image) await execFileAsync('docker', ['image', 'rm', image]).catch(() => undefined);
  });

  test('reports five steps and its result, across an agent killed with -9 mid-job', async () => {
    const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
    const { control, callbacks } = s;
    try {
      control.reply([job('shell-1', callbacks.url(), { greeting: 'hello' }, { image })]);
      await waitFor('the first progress update', () => callbacks.for('shell-1')[0], 60_000);

      await s.stop({ signal: 'SIGKILL' });
      // Long enough for the job's next PUT to find nothing listening and retry.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await s.restart();

      const done = await callbacks.waitForCompletion('shell-1', 120_000);
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 'done', steps: 5 }, 'the result the job reported');
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'outcome');
      const updates = callbacks.for('shell-1');
      assertInOrder(updates);
      assert.equal(new Set(seqs(updates)).size, 6, 'five running updates and one completed, each once');
      // Delivery is at least once: count each sequence number's first copy.
      const firsts = updates.filter((u, i) => seqs(updates).indexOf(Number(u.headers['x-foreman-delivery-seq'])) === i);
      assert.deepEqual(
        firsts.filter((u) => u.headers['x-foreman-job-status'] === 'running').map((u) => u.headers['x-foreman-job-progress']),
        ['0.1', '0.3', '0.5', '0.7', '0.9'],
        'the progress of each step, in order',
      );
    } finally {
      await s.close();
    }
  });

  test('a job that exits without completing is reported failed, with its exit code and last lines', async () => {
    const s = await spawnStack();
    const { control, callbacks } = s;
    try {
      control.reply([job('shell-fail', callbacks.url(), { fail: true }, { image })]);
      const report = reportOf(await callbacks.waitForCompletion('shell-fail', 60_000));
      assert.equal(report.outcome, 'failed', 'outcome');
      assert.equal(report.exitCode, 3, "the script's exit code");
      assert.ok(
        report.logs?.some((line) => line.includes('failing on purpose')),
        `the log tail holds the job's last words: ${JSON.stringify(report.logs)}`,
      );
    } finally {
      await s.close();
    }
  });
});
