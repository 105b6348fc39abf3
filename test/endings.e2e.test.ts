/** Every way a job can end without its own `completed` is reported to the callback, and the agent keeps going. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { type InProcessAgent, type Stack, startStack } from './support/agents.ts';
import { containersOf, testEngine, watchContainerEvents } from './support/containers.ts';
import { type EndingReport, job, reportOf } from './support/reports.ts';
import { CallbackReceiver, FakeControlServer } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

/** The completion timeout counts the launch too, and a swarm takes a second or more to place and start a task. */
const COMPLETION_MS = testEngine === 'swarm' ? 6000 : 2000;

describe('endings', () => {
  let stack: Stack;
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  let running: InProcessAgent;

  before(async () => {
    await testJobImage();
    stack = await startStack({ FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: String(COMPLETION_MS), FOREMAN_DOCKER_MEMORY_LIMIT: String(128 * 1024 * 1024) });
    ({ control, callbacks, running } = stack);
  });

  after(() => stack?.close());

  async function endingOf(id: string): Promise<{ report: EndingReport; headers: Record<string, unknown> }> {
    const done = await callbacks.waitForCompletion(id);
    return { report: reportOf(done), headers: done.headers };
  }

  test('a container that crashes is reported with its exit code and last log lines, within 2 s of exiting', async () => {
    const dies: number[] = [];
    const events = await watchContainerEvents(['die'], `foreman.agent=${running.agent.agentId}`, (event) => {
      if (event.Actor.Attributes['foreman.job-id'] === 'crash-1') dies.push(event.timeNano / 1e6);
    });
    try {
      control.reply([job('crash-1', callbacks.url(), { action: 'exit', code: 3, message: 'boom: disk on fire' })]);
      const { report, headers } = await endingOf('crash-1');
      assert.equal(headers['x-foreman-job-status'], 'completed');
      assert.equal(headers['x-foreman-job-outcome'], 'failed');
      assert.equal(headers['content-type'], 'application/json');
      assert.equal(report.outcome, 'failed');
      assert.equal(report.exitCode, 3);
      assert.match(report.message, /exited with code 3/);
      assert.ok(
        report.logs?.some((l) => l.includes('boom: disk on fire')),
        JSON.stringify(report.logs),
      );
      const record = running.store.get('crash-1');
      assert.equal(record?.outcome, 'failed');
      // The engine's die event drives the report: it arrives within 2 s of the exit, not on a polling tick.
      const diedAt = await waitFor('the die event', () => dies[0]);
      const reportedAt = callbacks.completion('crash-1')?.at ?? 0;
      assert.ok(reportedAt - diedAt < 2000, `reported ${reportedAt - diedAt} ms after the exit`);
      await waitFor('crash-1 removed', () => running.store.get('crash-1')?.state === 'removed');
    } finally {
      events.stop();
    }
  });

  test('a container killed for using more than docker.memory_limit is reported as oom-killed', async () => {
    control.reply([job('oom-1', callbacks.url(), { action: 'oom' })]);
    const { report, headers } = await endingOf('oom-1');
    assert.equal(headers['x-foreman-job-outcome'], 'oom-killed');
    assert.equal(report.reason, 'oom');
    assert.equal(report.exitCode, 137);
  });

  test('a job that does not complete in time is stopped, reported and removed', async () => {
    control.reply([job('slow-1', callbacks.url(), { action: 'sleep' })]);
    const { report, headers } = await endingOf('slow-1');
    assert.equal(headers['x-foreman-job-outcome'], 'timed-out');
    assert.equal(report.outcome, 'timed-out');
    assert.match(report.message, new RegExp(`job_completion_timeout \\(${COMPLETION_MS} ms\\)`));
    const record = await waitFor('slow-1 removed', () => {
      const r = running.store.get('slow-1');
      return r?.state === 'removed' ? r : undefined;
    });
    assert.equal(record.outcome, 'timed-out');
    const left = await containersOf(running.agent.agentId);
    assert.equal(left.filter((c) => c.Labels['foreman.job-id'] === 'slow-1').length, 0);
  });

  test('an image that cannot be pulled fails that job only, and is reported', async () => {
    control.reply([job('nopull-1', callbacks.url(), { values: [1] }, { image: '127.0.0.1:1/foreman/no-such-image:latest' })]);
    const { report, headers } = await endingOf('nopull-1');
    assert.equal(headers['x-foreman-job-outcome'], 'pull-failed');
    assert.match(report.message, /pulling image 127\.0\.0\.1:1\/foreman\/no-such-image:latest failed/);
    control.reply([job('after-pull-1', callbacks.url(), { values: [4] })]);
    const next = await callbacks.waitForCompletion('after-pull-1');
    assert.deepEqual(JSON.parse(next.body.toString()), { result: 4 });
  });

  test("an image reference the engine rejects is reported as pull-failed with the engine's reason", async () => {
    control.reply([job('badref-1', callbacks.url(), { values: [1] }, { image: 'UPPER/Image:1' })]);
    const { report, headers } = await endingOf('badref-1');
    assert.equal(headers['x-foreman-job-outcome'], 'pull-failed');
    assert.match(report.message, /image UPPER\/Image:1 is not usable: .*repository name must be lowercase/);
  });

  test('alwaysPull pulls even an image that exists locally', async () => {
    // There is no registry here, so a forced pull of the local test image must fail.
    control.reply([job('always-1', callbacks.url(), { values: [1] }, { alwaysPull: true })]);
    const { report, headers } = await endingOf('always-1');
    assert.equal(headers['x-foreman-job-outcome'], 'pull-failed');
    assert.match(report.message, /pulling image foreman-test-job:latest failed/);
  });

  test('a container the engine cannot create or start is reported as start-failed and removed', async () => {
    control.reply([
      job('nocreate-1', callbacks.url(), { values: [1] }, { env: { '': 'empty name' } }),
      job('nostart-1', callbacks.url(), { values: [1] }, { env: { BAD: 'nul\u0000byte' } }),
    ]);
    const created = await endingOf('nocreate-1');
    assert.equal(created.headers['x-foreman-job-outcome'], 'start-failed');
    // A swarm service takes any env; the engine refuses it when the task's container is made.
    assert.match(
      created.report.message,
      testEngine === 'swarm'
        ? /swarm could not start the job: .*invalid environment variable/
        : /creating the container failed: .*invalid environment variable/,
    );
    const started = await endingOf('nostart-1');
    assert.equal(started.headers['x-foreman-job-outcome'], 'start-failed');
    assert.match(started.report.message, testEngine === 'swarm' ? /swarm could not start the job: / : /starting the container failed/);
    await waitFor('nostart-1 removed', () => running.store.get('nostart-1')?.state === 'removed');
    const left = await containersOf(running.agent.agentId);
    assert.equal(left.filter((c) => c.Labels['foreman.job-id'] === 'nostart-1').length, 0);
  });

  test('a command that does not exist makes the container exit 127, reported as failed', async () => {
    control.reply([job('badcmd-1', callbacks.url(), { values: [1] }, { command: ['/no/such/binary'] })]);
    const { report, headers } = await endingOf('badcmd-1');
    assert.equal(headers['x-foreman-job-outcome'], 'failed');
    assert.equal(report.exitCode, 127);
  });

  test('garbage from the control server is logged and survived; invalid jobs with a callback are reported', async () => {
    control.reply(
      { status: 200, body: 'this is not json' },
      { status: 500, body: '' },
      { status: 200, body: '42' },
      [1, 'two', null],
      [{ id: 'invalid-1', image: 'x', callbackUrl: callbacks.url() }],
      [{ image: 'no id at all', body: {}, callbackUrl: callbacks.url() }],
      [job('after-garbage-1', callbacks.url(), { values: [7] })],
    );
    const next = await callbacks.waitForCompletion('after-garbage-1');
    assert.deepEqual(JSON.parse(next.body.toString()), { result: 7 });
    const { report, headers } = await endingOf('invalid-1');
    assert.equal(headers['x-foreman-job-outcome'], 'invalid');
    assert.match(report.message, /missing required field "body"/);
    assert.equal(control.queued, 0);
  });

  test('a job id seen before is never run twice', async () => {
    control.reply([job('once-1', callbacks.url(), { values: [1] })]);
    await callbacks.waitForCompletion('once-1');
    control.reply([job('once-1', callbacks.url(), { values: [2] })], [job('once-marker', callbacks.url(), { values: [3] })]);
    await callbacks.waitForCompletion('once-marker');
    assert.equal(callbacks.for('once-1').length, 1);
  });
});
