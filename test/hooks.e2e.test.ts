/**
 * `[hooks]` on the real engine, with real agent processes: pre_job before the pull (a failure ends the job
 * `hook-failed`), and post_job exactly once for every ending — succeeded, failed, canceled, timed-out,
 * hook-failed, agent-shutdown, a job resolved at restart — counted from a file the hook appends to; a kill -9
 * during the hook runs it again after the restart. The final callback carries the hook's result.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHookResult } from '../src/protocol/wire.ts';
import { testJobImage } from './support/image.ts';
import { spawnStack, type SpawnedStack } from './support/agents.ts';
import { containersOf, docker } from './support/containers.ts';
import { job, reportOf } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

/**
 * The hook: appends `<phase> <event> <job> <outcome> <exit code>` to runs.log. Its behaviour by job id:
 * `pre-fail*` fails its pre_job with output, `post-fail*` fails its post_job, `slow-hook*` makes post_job
 * take 4 s between its start and end lines.
 */
const HOOK = `#!/bin/sh
dir=$(dirname "$0")
echo "$1 start $FOREMAN_JOB_ID $FOREMAN_JOB_OUTCOME $FOREMAN_JOB_EXIT_CODE $FOREMAN_AGENT_ID" >> "$dir/runs.log"
case "$1:$FOREMAN_JOB_ID" in
  pre:pre-fail*) echo "no device free for $FOREMAN_JOB_IMAGE"; exit 9 ;;
  post:post-fail*) echo "post" >> "$dir/runs.log.tmp"; exit 4 ;;
  post:slow-hook*) sleep 4 ;;
esac
echo "$1 end $FOREMAN_JOB_ID" >> "$dir/runs.log"
`;

describe('hooks', () => {
  let dir: string;
  let s: SpawnedStack;

  /** The lines of runs.log for `jobId` with `phase` and `event` (`start` or `end`). */
  function runs(jobId: string, phase: 'pre' | 'post', event: 'start' | 'end' = 'start'): string[][] {
    const file = join(dir, 'runs.log');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .filter(([p, e, id]) => p === phase && e === event && id === jobId);
  }

  /** Waits for the job's final update, and checks its post hook ran once, before it, with what it was told. */
  async function endedOnce(id: string, outcome: string, exitCode: string | null = ''): Promise<Record<string, unknown>> {
    const done = await s.callbacks.waitForCompletion(id, 60_000);
    assert.equal(done.headers['x-foreman-job-outcome'], outcome, `${id}: its outcome`);
    const post = runs(id, 'post');
    assert.equal(post.length, 1, `${id}: post_job ran once before the final update: ${JSON.stringify(post)}`);
    assert.equal(post[0]?.[3], outcome, `${id}: post_job told the outcome`);
    if (exitCode !== null) assert.equal(post[0]?.[4], exitCode, `${id}: post_job told the exit code`);
    const result = parseHookResult(String(done.headers['x-foreman-post-job-hook']));
    assert.ok(result, `${id}: the final update carries the hook's result: ${String(done.headers['x-foreman-post-job-hook'])}`);
    return done.headers;
  }

  before(async () => {
    await testJobImage();
    dir = mkdtempSync(join(tmpdir(), 'foreman-hooks-e2e-'));
    const hook = join(dir, 'hook.sh');
    writeFileSync(hook, HOOK);
    chmodSync(hook, 0o755);
    s = await spawnStack({
      FOREMAN_HOOKS_PRE_JOB: `${hook},pre`,
      FOREMAN_HOOKS_POST_JOB: `${hook},post`,
      FOREMAN_HOOKS_TIMEOUT: '20s',
      FOREMAN_CORE_MAX_CONCURRENT_JOBS: '8',
      FOREMAN_CORE_CANCEL_GRACE_PERIOD: '1000',
    });
    await s.waitForAgentId();
  });

  after(async () => {
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every ending runs post_job once, after the container stopped and before the final update, which carries its result', async () => {
    s.control.reply([
      job('ok-1', s.callbacks.url(), { action: 'progress', steps: 1, delayMs: 0 }),
      job('exit-1', s.callbacks.url(), { action: 'exit', code: 3, ms: 300 }),
      job('cancel-1', s.callbacks.url(), { action: 'sleep' }),
      job('slow-1', s.callbacks.url(), { action: 'sleep' }, { timeout: 3000 }),
      job('post-fail-1', s.callbacks.url(), { action: 'exit', code: 5 }),
      job('pre-fail-1', s.callbacks.url(), {}, { image: 'foreman-never-pulled.invalid/x:1' }),
    ]);
    await waitFor('cancel-1 running', () => s.callbacks.for('cancel-1').length > 0 || runs('cancel-1', 'pre', 'end').length > 0);
    await waitFor('cancel-1 container', async () => (await containersOf(s.agentId())).some((c) => c.Labels['foreman.job-id'] === 'cancel-1'));
    s.control.replyHeaders = { 'x-foreman-cancel': 'cancel-1' };

    const ok = await endedOnce('ok-1', 'succeeded');
    assert.equal(runs('ok-1', 'pre').length, 1, 'pre_job ran once');
    assert.match(String(ok['x-foreman-post-job-hook']), /^exit=0; ms=\d+$/, 'the header says how it went');

    await endedOnce('exit-1', 'failed', '3');
    const failed = await s.callbacks.waitForCompletion('exit-1');
    assert.equal((reportOf(failed) as { postJobHook?: { exitCode: number } }).postJobHook?.exitCode, 0, "the agent's report carries it too");

    await endedOnce('cancel-1', 'canceled', null);
    s.control.replyHeaders = {};
    await endedOnce('slow-1', 'timed-out');

    const postFailed = await endedOnce('post-fail-1', 'failed', '5');
    assert.match(String(postFailed['x-foreman-post-job-hook']), /^exit=4; /, 'a failing post hook is reported…');
    assert.equal(postFailed['x-foreman-job-outcome'], 'failed', '…and does not change the outcome');

    const preFailed = await s.callbacks.waitForCompletion('pre-fail-1');
    const report = reportOf(preFailed);
    assert.equal(report.outcome, 'hook-failed', 'a failed pre_job ends the job hook-failed');
    assert.equal(report.reason, 'hook', 'its reason');
    assert.match(report.message, /pre_job hook exited with code 9.*no device free for foreman-never-pulled\.invalid\/x:1/s, report.message);
    assert.equal(runs('pre-fail-1', 'post').length, 1, 'post_job still ran once: the job had its pre_job');
    const images = await docker.listImages({ filters: { reference: ['foreman-never-pulled.invalid/x'] } });
    assert.equal(images.length, 0, 'nothing was pulled');
  });

  test('a job that ended while the agent was down runs post_job once at the restart', async () => {
    s.control.reply([job('down-1', s.callbacks.url(), { action: 'sleep' })]);
    const container = await waitFor('down-1 running', async () =>
      (await containersOf(s.agentId())).find((c) => c.Labels['foreman.job-id'] === 'down-1' && c.State === 'running'),
    );
    await waitFor('down-1 started', () => runs('down-1', 'pre', 'end').length === 1);
    s.agent.child.kill('SIGKILL');
    await s.agent.exited;
    await docker.getContainer(container.Id).kill();
    await s.restart();
    await endedOnce('down-1', 'failed', '137');
  });

  test('a kill -9 during post_job runs it again after the restart; the final update goes once, after it', async () => {
    s.control.reply([job('slow-hook-1', s.callbacks.url(), { action: 'progress', steps: 1, delayMs: 0 })]);
    await waitFor('the post hook started', () => runs('slow-hook-1', 'post').length === 1, 30_000);
    assert.equal(s.callbacks.completion('slow-hook-1'), undefined, 'the final update waits for the hook');
    await s.restart({ signal: 'SIGKILL' });
    const done = await s.callbacks.waitForCompletion('slow-hook-1', 60_000);
    assert.equal(runs('slow-hook-1', 'post').length, 2, 'the interrupted hook ran again (at-least-once in this case only)');
    assert.ok(runs('slow-hook-1', 'post', 'end').length >= 1, 'and ended before the final update');
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded', 'the outcome');
    const finals = new Set(
      s.callbacks
        .for('slow-hook-1')
        .filter((r) => r.headers['x-foreman-job-status'] === 'completed')
        .map((r) => r.headers['x-foreman-delivery-id']),
    );
    assert.equal(finals.size, 1, 'one final update');
  });

  test('a job the agent ends as it stops (agent-shutdown) runs post_job once before its report', async () => {
    s.control.reply([job('shutdown-1', s.callbacks.url(), { action: 'sleep' })]);
    await waitFor('shutdown-1 container', async () => (await containersOf(s.agentId())).some((c) => c.Labels['foreman.job-id'] === 'shutdown-1'));
    await waitFor('shutdown-1 started', () => runs('shutdown-1', 'pre', 'end').length === 1);
    assert.equal(await s.stop(), 0, 'the agent stopped cleanly');
    await endedOnce('shutdown-1', 'agent-shutdown');
  });
});
