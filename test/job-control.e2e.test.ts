/** Control of a running job, on the real engine: cancel (from poll replies and callback replies, across a kill -9) and the stall timeout. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { readLog, spawnStack, type Stack, startStack } from './support/agents.ts';
import { containersOf, type EngineEvent, watchContainerEvents } from './support/containers.ts';
import { freePort } from './support/ports.ts';
import { job, reportOf } from './support/reports.ts';
import type { RecordedRequest } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

const seqOf = (r: RecordedRequest): number => Number(r.headers['x-foreman-delivery-seq']);

/** Stop signals (SIGTERM = 15, SIGKILL = 9) the engine sent to a job's container, with their times. */
async function watchKills(jobId: string): Promise<{ kills: Array<{ signal: string; at: number }>; stop(): void }> {
  const kills: Array<{ signal: string; at: number }> = [];
  const events = await watchContainerEvents(['kill'], `foreman.job-id=${jobId}`, (e: EngineEvent) =>
    kills.push({ signal: e.Actor.Attributes.signal ?? '?', at: e.timeNano / 1e6 }),
  );
  return { kills, stop: () => events.stop() };
}

describe('job control', () => {
  let stack: Stack;

  before(async () => {
    await testJobImage();
    stack = await startStack({ FOREMAN_CORE_MAX_CONCURRENT_JOBS: '1', FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
  });

  after(() => stack?.close());

  test('while full the agent keeps polling (capacity 0); a cancel drops a queued job and stops a running one within 1 s', async (t) => {
    const { control, callbacks, running } = stack;
    const watch = await watchKills('c-run');
    try {
      control.reply([job('c-run', callbacks.url(), { action: 'sleep' }), job('c-queued', callbacks.url(), { values: [1] })]);
      await waitFor(
        'c-run running, c-queued waiting',
        () => running.store.get('c-run')?.state === 'running' && running.store.get('c-queued')?.state === 'pending',
      );
      const fullSince = Date.now();
      await waitFor('two heartbeat polls while full', () => control.polls.filter((p) => p.at > fullSince).length >= 2);
      assert.deepEqual(new Set(control.polls.filter((p) => p.at > fullSince).map((p) => p.headers['x-foreman-capacity'])), new Set(['0']));

      control.replyHeaders = { 'x-foreman-cancel': 'c-queued' };
      const queued = await callbacks.waitForCompletion('c-queued');
      assert.equal(queued.headers['x-foreman-job-outcome'], 'canceled');
      assert.deepEqual(reportOf(queued), { outcome: 'canceled', reason: 'cancel', message: 'the control server canceled the job before it started' });
      assert.equal((await containersOf(running.agent.agentId)).filter((c) => c.Labels['foreman.job-id'] === 'c-queued').length, 0, 'never created');

      const sentAt = Date.now();
      control.replyHeaders = { 'x-foreman-cancel': `unknown-id,${encodeURIComponent('c-run')}` };
      const ended = await callbacks.waitForCompletion('c-run');
      control.replyHeaders = {};
      const delivered = control.polls.find((p) => p.at >= sentAt);
      assert.ok(delivered, 'a poll was answered with the cancel header');
      const sigterm = watch.kills.find((k) => k.signal === '15');
      assert.ok(sigterm, JSON.stringify(watch.kills));
      t.diagnostic(`stop signal ${Math.round(sigterm.at - delivered.at)} ms after the poll reply`);
      assert.ok(sigterm.at - delivered.at < 1000, `stop signal ${sigterm.at - delivered.at} ms after the poll reply`);
      assert.equal(ended.headers['x-foreman-job-outcome'], 'canceled');
      const report = reportOf(ended);
      assert.equal(report.reason, 'cancel');
      assert.equal(report.exitCode, 143);
      assert.match(report.message, /canceled the job; its container exited with code 143/);
      await waitFor('c-run removed', () => running.store.get('c-run')?.state === 'removed');
    } finally {
      watch.stop();
    }
  });

  test('a cancel in a callback reply: updates sent in the grace period are forwarded, then the job is killed and reported canceled', async (t) => {
    const { callbacks, control, running } = stack;
    const watch = await watchKills('c-stubborn');
    try {
      control.reply([job('c-stubborn', callbacks.url(), { action: 'progress', steps: 1000, delayMs: 100, onTerm: 'ignore' }, { cancelGracePeriod: 1500 })]);
      await waitFor('a first update', () => callbacks.for('c-stubborn')[0]);
      callbacks.replyHeaders = { 'x-foreman-cancel': 'c-stubborn' };
      const ended = await callbacks.waitForCompletion('c-stubborn');
      callbacks.replyHeaders = {};
      const term = watch.kills.find((k) => k.signal === '15');
      const kill = watch.kills.find((k) => k.signal === '9');
      assert.ok(term && kill, JSON.stringify(watch.kills));
      t.diagnostic(`killed ${Math.round(kill.at - term.at)} ms after the stop signal (grace 1500)`);
      // The grace counts from the cancel, which comes a moment (more on a loaded machine) before the stop signal.
      assert.ok(kill.at - term.at >= 1000 && kill.at - term.at < 2500, `killed ${kill.at - term.at} ms after the stop signal (grace 1500)`);
      const report = reportOf(ended);
      assert.equal(report.outcome, 'canceled');
      assert.equal(report.exitCode, 137);
      const updates = callbacks.for('c-stubborn');
      const during = updates.filter((r) => r.at > term.at && r.headers['x-foreman-job-status'] === 'running');
      t.diagnostic(`${during.length} updates forwarded during the grace period`);
      assert.ok(during.length >= 5, `${during.length} updates forwarded during the grace period`);
      assert.equal(seqOf(ended), Math.max(...updates.map(seqOf)), 'the report comes after every update');
      assert.equal(ended, updates.at(-1), 'and arrives last');
      assert.equal(running.store.get('c-stubborn')?.outcome, 'canceled');
    } finally {
      watch.stop();
    }
  });

  test('a job that reports on its stop signal: its last update arrives before the canceled report, with its exit code', async () => {
    const { callbacks, control } = stack;
    control.reply([job('c-polite', callbacks.url(), { action: 'sleep', onTerm: 'report', termExitCode: 0 })]);
    await waitFor('c-polite running', () => stack.running.store.get('c-polite')?.state === 'running');
    control.replyHeaders = { 'x-foreman-cancel': 'c-polite' };
    const ended = await callbacks.waitForCompletion('c-polite');
    control.replyHeaders = {};
    const updates = callbacks.for('c-polite');
    assert.deepEqual(
      updates.map((r) => [r.headers['x-foreman-job-status'], seqOf(r)]),
      [
        ['running', 1],
        ['completed', 2],
      ],
    );
    assert.deepEqual(JSON.parse(updates[0]?.body.toString() ?? '{}'), { cleanup: true });
    assert.equal(reportOf(ended).exitCode, 0);
    assert.equal(ended.headers['x-foreman-job-outcome'], 'canceled');
  });

  test('a job that stops sending updates is stopped and reported stalled', async (t) => {
    const { callbacks, control } = stack;
    control.reply([job('c-stall', callbacks.url(), { action: 'progress', steps: 3, delayMs: 200, then: 'sleep' }, { stallTimeout: 1500 })]);
    const ended = await callbacks.waitForCompletion('c-stall');
    const updates = callbacks.for('c-stall').filter((r) => r.headers['x-foreman-job-status'] === 'running');
    assert.equal(updates.length, 3);
    const quietMs = ended.at - (updates.at(-1)?.at ?? 0);
    t.diagnostic(`reported stalled ${quietMs} ms after its last update (stall timeout 1500)`);
    assert.ok(quietMs >= 1400 && quietMs < 3500, `reported ${quietMs} ms after the last update (stall timeout 1500)`);
    const report = reportOf(ended);
    assert.equal(report.outcome, 'stalled');
    assert.equal(report.reason, 'stall');
    assert.match(report.message, /no update within its stall timeout \(1500 ms\)/);
  });

  /**
   * A job that never PUTs, with a stall timeout or a timeout of its own of `timeoutMs`: the engine's start event is where
   * its clock starts (the agent once took it before the engine's start call, about 0.6 s early, and ended such jobs early).
   */
  async function endsNoEarlierThanEngineStart(
    t: { diagnostic(message: string): void },
    id: string,
    timeoutMs: number,
    run: Record<string, unknown>,
    outcome: string,
    message: RegExp,
  ): Promise<void> {
    const { callbacks, control } = stack;
    const seen: Array<{ action: string; signal: string | undefined; at: number }> = [];
    const events = await watchContainerEvents(['start', 'kill'], `foreman.job-id=${id}`, (e: EngineEvent) =>
      seen.push({ action: e.Action, signal: e.Actor.Attributes.signal, at: e.timeNano / 1e6 }),
    );
    try {
      control.reply([job(id, callbacks.url(), { action: 'sleep' }, run)]);
      const ended = await callbacks.waitForCompletion(id);
      const started = seen.find((e) => e.action === 'start');
      const stopped = await waitFor('the stop signal', () => seen.find((e) => e.action === 'kill' && e.signal === '15'));
      assert.ok(started, `the engine reported the container's start: ${JSON.stringify(seen)}`);
      const signalMs = stopped.at - started.at;
      const reportMs = ended.at - started.at;
      t.diagnostic(
        `${outcome}: stop signal ${Math.round(signalMs)} ms, report ${Math.round(reportMs)} ms after the engine's start event (${JSON.stringify(run)})`,
      );
      assert.ok(signalMs >= timeoutMs, `the stop signal came ${signalMs} ms after the engine's start event: less than ${timeoutMs} ms`);
      assert.ok(reportMs >= timeoutMs, `the report came ${reportMs} ms after the engine's start event: less than ${timeoutMs} ms`);
      assert.ok(signalMs < timeoutMs + 3000, `the stop signal came ${signalMs} ms after the engine's start event`);
      assert.equal(ended.headers['x-foreman-job-outcome'], outcome, `reported ${outcome}`);
      assert.match(reportOf(ended).message, message, 'the report names the timeout');
      assert.equal(callbacks.for(id).length, 1, 'the job sent no update of its own');
    } finally {
      events.stop();
    }
  }

  test('the stall clock starts when the engine says the container started: a job that never PUTs gets its whole stall timeout', async (t) => {
    await endsNoEarlierThanEngineStart(t, 'c-silent', 2000, { stallTimeout: 2000 }, 'stalled', /no update within its stall timeout \(2000 ms\)/);
  });

  test('the completion clock starts when the engine says the container started: a job gets its whole own timeout', async (t) => {
    // 5 s, not 2: a job's own timeout also bounds its launch, and on a swarm the task's start alone can take 2 s.
    await endsNoEarlierThanEngineStart(t, 'c-own-timeout', 5000, { timeout: 5000 }, 'timed-out', /did not report completed within its timeout \(5000 ms\)/);
  });
});

test('kill -9 during a cancel grace period: the restarted agent finishes the cancel (the cancel is not sent again)', async (t) => {
  await testJobImage();
  const s = await spawnStack({ FOREMAN_CORE_PORT: String(await freePort()), FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000' });
  const { control, callbacks } = s;
  let watch: Awaited<ReturnType<typeof watchKills>> | undefined;
  try {
    watch = await watchKills('c-phoenix');
    const kills = watch.kills;
    control.reply([job('c-phoenix', callbacks.url(), { action: 'progress', steps: 1000, delayMs: 200, onTerm: 'ignore' }, { cancelGracePeriod: 5000 })]);
    const first = await waitFor('a first update', () => callbacks.for('c-phoenix')[0], 30_000);
    const agentId = String(first.headers['x-foreman-agent-id']);
    control.replyHeaders = { 'x-foreman-cancel': 'c-phoenix' };
    const term = await waitFor('the stop signal', () => kills.find((k) => k.signal === '15'));
    control.replyHeaders = {};
    await s.restart({ signal: 'SIGKILL' });
    const ended = await callbacks.waitForCompletion('c-phoenix', 30_000);
    const kill = kills.find((k) => k.signal === '9');
    assert.ok(kill, JSON.stringify(kills));
    t.diagnostic(`killed ${Math.round(kill.at - term.at)} ms after the stop signal, across a kill -9 and restart (grace 5000)`);
    assert.ok(kill.at - term.at >= 4800, `killed ${kill.at - term.at} ms after the stop signal: the grace period (5000) counts from the stored cancel`);
    assert.ok(kill.at - term.at < 12_000, `killed ${kill.at - term.at} ms after the stop signal`);
    assert.equal(ended.headers['x-foreman-job-outcome'], 'canceled', readLog(s.agent.logFile).slice(-2000));
    assert.equal(reportOf(ended).exitCode, 137);
    await waitFor('the container removed', async () => (await containersOf(agentId)).length === 0, 30_000);
  } finally {
    watch?.stop();
    await s.close({ signal: 'SIGKILL' });
  }
});
