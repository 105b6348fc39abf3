/**
 * The job kits inside real job containers on the real engine: examples/node-job (packages/job) and
 * examples/python-job (packages/job-python), each in an image built FROM scratch, run by a real agent that is
 * killed with -9 mid-job and restarted. The job completes, and each of its updates arrives once and in order.
 * The containers reach the agent through a recording proxy (test/support/job-api-proxy.ts), so every job-API
 * request and reply is checked against docs/openapi/job-api.yaml, and the fake servers check every callback and
 * log request against docs/openapi/control-server.yaml.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildNodeJobImage } from '../examples/node-job/build.ts';
import { buildPythonJobImage } from '../examples/python-job/build.ts';
import { spawnStack } from './support/agents.ts';
import { testEngine } from './support/containers.ts';
import { JobApiProxy } from './support/job-api-proxy.ts';
import { receivedLog } from './support/logs.ts';
import { freePort } from './support/ports.ts';
import type { RecordedRequest } from './support/servers.ts';
import { assertInOrder, job, reportOf, seqs } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

const execFileAsync = promisify(execFile);
const skip = testEngine ? `builds its images on the host's Docker engine only (not ${testEngine})` : false;

// Each kit sends its progress as its language writes the number (Python: `1.0`); the agent's job API reads the header as a
// number and forwards it as it reads it back, so `1.0` arrives as `1`.
const kits = [
  { name: 'JavaScript', build: () => buildNodeJobImage(), progress: ['0.2', '0.4', '0.6', '0.8', '1'] },
  { name: 'Python', build: () => buildPythonJobImage(), progress: ['0.2', '0.4', '0.6', '0.8', '1'] },
];

/** The first copy of each delivery, by seq, in seq order. */
function firstCopies(updates: readonly RecordedRequest[]): RecordedRequest[] {
  return updates.filter((u, i) => seqs([...updates]).indexOf(Number(u.headers['x-foreman-delivery-seq'])) === i);
}

for (const kit of kits) {
  describe(`the ${kit.name} job kit in a real container`, { skip, timeout: 300_000 }, () => {
    let image: string;

    before(async () => {
      image = await kit.build();
    });

    after(async () => {
      // Built for this file only: leave the engine as it was.
      if (image) await execFileAsync('docker', ['image', 'rm', image]).catch(() => undefined);
    });

    test('the job completes across an agent killed with -9 mid-job; each update arrives once, in order; a failing job is reported failed', async () => {
      const proxy = await JobApiProxy.start(await freePort());
      const s = await spawnStack({ ...proxy.agentEnv(), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' }).catch(async (err: unknown) => {
        await proxy.close();
        throw err;
      });
      const { control, callbacks } = s;
      const id = `kit-${kit.name.toLowerCase()}-1`;
      try {
        control.reply([job(id, callbacks.url(), { steps: 5, delayMs: 1500 }, { image, logsUrl: callbacks.url('logs') })]);
        // Killed right after an update arrived, so no PUT is in flight: the job is sleeping before its next one.
        await waitFor('the second update', () => callbacks.for(id).find((u) => u.method === 'PUT' && u.headers['x-foreman-delivery-seq'] === '2'), 60_000);
        await s.stop({ signal: 'SIGKILL' });
        // Long enough for the job's next PUT to find no agent and retry.
        await new Promise((resolve) => setTimeout(resolve, 4_000));
        await s.restart();

        const done = await callbacks.waitForCompletion(id, 120_000);
        assert.deepEqual(JSON.parse(done.body.toString()), { result: 'done', steps: 5 }, 'the result the job reported');
        assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'outcome');
        const updates = callbacks.for(id).filter((u) => u.method === 'PUT');
        assertInOrder(updates);
        // At least once to the control server (a delivery may be sent again after the kill, with its id), but each
        // of the job's updates became one delivery: six ids for six sequence numbers.
        assert.equal(new Set(seqs(updates)).size, 6, `five running updates and one completed: ${JSON.stringify(seqs(updates))}`);
        assert.equal(new Set(updates.map((u) => u.headers['x-foreman-delivery-id'])).size, 6, 'one delivery id per update');
        const firsts = firstCopies(updates);
        assert.deepEqual(
          firsts
            .filter((u) => u.headers['x-foreman-job-status'] === 'running')
            .map((u) => [u.headers['x-foreman-job-progress'], JSON.parse(u.body.toString()) as unknown]),
          kit.progress.map((p, k) => [p, { step: k + 1 }]),
          'the progress and body of each step, in order',
        );

        const log = receivedLog(callbacks.requests, id);
        const text = log.lines.map((l) => l.text);
        assert.ok(
          text.some((l) => l.startsWith('retrying the job API')),
          `the kit retried while the agent was down: ${JSON.stringify(text)}`,
        );
        assert.ok(text.includes('step 5/5') && text.includes('done'), `the job's whole output: ${JSON.stringify(text)}`);

        const gets = proxy.exchanges.filter((e) => e.method === 'GET' && e.reply?.status === 200);
        const puts = proxy.exchanges.filter((e) => e.method === 'PUT' && e.reply?.status === 200);
        assert.equal(gets.length, 1, 'one GET answered');
        assert.equal(puts.length, 6, 'six PUTs answered, none twice');
        assert.ok(
          proxy.exchanges.some((e) => e.reply === undefined),
          'a request found no agent',
        );

        const failing = `kit-${kit.name.toLowerCase()}-fail`;
        control.reply([job(failing, callbacks.url(), { fail: true }, { image })]);
        const report = await callbacks.waitForCompletion(failing, 60_000);
        assert.equal(report.headers['x-foreman-job-outcome'], 'failed', 'outcome');
        assert.equal(reportOf(report).exitCode, 3, "fail()'s exit code");
        assert.ok(
          reportOf(report).logs?.some((l) => l.includes('failing on purpose')),
          `the log tail: ${JSON.stringify(reportOf(report).logs)}`,
        );
        const [details] = callbacks.for(failing).filter((u) => u.headers['x-foreman-job-status'] === 'running');
        assert.deepEqual(JSON.parse(details?.body.toString() ?? 'null'), { error: 'failing on purpose' }, 'the details, as an update before the report');
      } finally {
        await s.close().finally(() => proxy.close());
      }
    });
  });
}
