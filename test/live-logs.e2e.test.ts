/** Live job logs, end to end on the real engine: streamed while the job runs, whole, in order, before the report. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { type Stack, startStack } from './support/agents.ts';
import { containersOf } from './support/containers.ts';
import { job, reportOf } from './support/reports.ts';
import { CallbackReceiver } from './support/servers.ts';
import { waitFor } from './support/wait.ts';
import { assertWhole, engineMessages, joinedLines, printedLines, receivedLog } from './support/logs.ts';

const SECRET = 'core-env-secret-6f1d2a';

describe('live job logs', () => {
  let stack: Stack;
  let logs: CallbackReceiver;

  before(async () => {
    await testJobImage();
    logs = await new CallbackReceiver().start();
    stack = await startStack({
      FOREMAN_CORE_ENV_DEPLOY_TOKEN: SECRET,
      FOREMAN_CORE_MAX_LOG_BYTES: String(2 * 1024 * 1024),
      // Kept for a while, so the test can compare with what the engine itself holds.
      FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '120000',
    });
  });

  after(async () => {
    await stack?.close();
    await logs?.stop();
  });

  test('thousands of lines on both streams, long ones split, arrive once each, in the engine order, ended before the report', async () => {
    const { control, callbacks, running } = stack;
    const shape = { lines: 3000, longEvery: 300, longBytes: 40_000 };
    // 300 lines every 50 ms: faster than the 1 s batches, so batches fill up between sends.
    control.reply([
      job(
        'log-1',
        callbacks.url(),
        { action: 'log', ...shape, perTick: 300, tickMs: 50, printEnv: ['DEPLOY_TOKEN', 'FOREMAN_GET_JOB_ENDPOINT'] },
        { logsUrl: logs.url('logs/log-1') },
      ),
    ]);
    const firstBatch = await waitFor('the first log batch', () => logs.requests.find((r) => r.method === 'POST'));
    const report = await callbacks.waitForCompletion('log-1');
    assert.ok(firstBatch.at <= report.at, 'the first log batch arrived before the report');
    const log = receivedLog(logs.requests, 'log-1');
    assertWhole(log);
    assert.ok(log.end && log.end.at <= report.at, 'the log end arrived before the report');
    assert.equal(log.duplicates, 0);
    assert.ok(log.batches >= 2, `${log.batches} batches`);
    for (const r of logs.requests.filter((q) => q.method === 'POST')) {
      assert.equal(r.url, '/logs/log-1');
      assert.ok(r.body.length <= 256 * 1024 + 100 * 1024, `a batch of ${r.body.length} bytes`);
      assert.equal(r.headers['x-foreman-agent-id'], running.agent.agentId);
    }

    // Every printed line, long ones in 16 KiB parts, on its own stream and in its order.
    const printed = printedLines(shape);
    assert.deepEqual(joinedLines(log.lines, 'stdout'), printed.stdout);
    assert.deepEqual(joinedLines(log.lines, 'stderr'), printed.stderr);
    assert.equal(log.lines.filter((l) => l.text.length === 16 * 1024).length, 2 * 10, 'ten 40 kB lines, each in three parts');

    // [core.env] values and the job's own secret never reach the log.
    const secret = running.store.get('log-1')?.secret ?? '';
    assert.ok(secret.length > 0, 'the job has a secret in the store');
    assert.ok(
      log.lines.some((l) => l.text === 'DEPLOY_TOKEN=[redacted]'),
      'the [core.env] value is printed redacted',
    );
    assert.ok(
      log.lines.some((l) => l.text.startsWith('FOREMAN_GET_JOB_ENDPOINT=') && l.text.endsWith('token=[redacted]')),
      'the job endpoint is printed with its token redacted',
    );
    assert.ok(!log.lines.some((l) => l.text.includes(SECRET) || l.text.includes(secret)), 'a log line holds the [core.env] value or the job secret');

    // The same lines in the same order as the engine's own `docker logs`.
    const container = (await containersOf(running.agent.agentId)).find((c) => c.Labels['foreman.job-id'] === 'log-1');
    assert.ok(container, 'the job container is still there (kept by job_removal_timeout)');
    const engine = await engineMessages(container.Id);
    const hide = (text: string): string => text.replaceAll(SECRET, '[redacted]').replaceAll(secret, '[redacted]');
    assert.deepEqual(
      log.lines.map((l) => `${l.stream} ${l.text}`),
      engine.map((m) => `${m.stream} ${hide(m.text)}`),
    );
  });

  test('a job that fails: its log ends before the failure report, and neither shows a [core.env] value', async () => {
    const { control, callbacks } = stack;
    control.reply([
      job('log-fail', callbacks.url(), { action: 'exit', code: 4, message: `could not log in with ${SECRET}` }, { logsUrl: logs.url('logs/log-fail') }),
    ]);
    const report = await callbacks.waitForCompletion('log-fail');
    assert.equal(report.headers['x-foreman-job-outcome'], 'failed');
    const log = receivedLog(logs.requests, 'log-fail');
    assertWhole(log);
    assert.ok(log.end && log.end.at <= report.at, 'the log end arrived before the report');
    // stdout and stderr are separate pipes: the engine may store the stderr line before the stdout one printed earlier.
    assert.ok(
      log.lines.some((l) => l.stream === 'stderr' && l.text === 'could not log in with [redacted]'),
      JSON.stringify(log.lines),
    );
    assert.ok(reportOf(report).logs?.includes('could not log in with [redacted]'), JSON.stringify(reportOf(report).logs));
    assert.ok(!JSON.stringify(reportOf(report)).includes(SECRET), 'the failure report holds the [core.env] value');
  });

  test('past max_log_bytes one line says so and the rest is dropped, while the job runs on to its end', async () => {
    const { control, callbacks } = stack;
    control.reply([job('log-big', callbacks.url(), { action: 'log', lines: 300, longEvery: 1, longBytes: 16_000 }, { logsUrl: logs.url('logs/log-big') })]);
    const report = await callbacks.waitForCompletion('log-big');
    assert.equal(report.headers['x-foreman-job-outcome'], 'succeeded');
    const log = receivedLog(logs.requests, 'log-big');
    assertWhole(log);
    const last = log.lines.at(-1);
    assert.match(last?.text ?? '', /^\[foreman\] log truncated after (\d+) bytes$/);
    const bytes = Number(/(\d+) bytes$/.exec(last?.text ?? '')?.[1]);
    assert.ok(bytes <= 2 * 1024 * 1024 && bytes > 2 * 1024 * 1024 - 16_100, `truncated after ${bytes} bytes`);
    assert.equal(
      log.lines.slice(0, -1).reduce((sum, l) => sum + Buffer.byteLength(l.text), 0),
      bytes,
    );
  });

  test('a job without logsUrl streams nothing, and a logs server that refuses (4xx) stops only the log', async () => {
    const { control, callbacks } = stack;
    const refusing = await new CallbackReceiver().start();
    refusing.status = 404;
    try {
      control.reply([
        job('log-none', callbacks.url(), { action: 'log', lines: 50 }),
        job('log-refused', callbacks.url(), { action: 'log', lines: 2000, perTick: 200, tickMs: 100 }, { logsUrl: refusing.url('gone') }),
      ]);
      const done = await callbacks.waitForCompletion('log-refused');
      await callbacks.waitForCompletion('log-none');
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
      assert.equal(refusing.requests.length, 1, 'one refused batch, then nothing more');
      assert.equal(logs.requests.filter((r) => r.headers['x-foreman-job-id'] === 'log-none').length, 0);
    } finally {
      await refusing.stop();
    }
  });
});
