import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { MemoryStore } from '../../jobs/memory-store.ts';
import { HEADER } from '../../protocol/wire.ts';
import { systemClock } from '../../shared/clock.ts';
import type { Delivery } from '../../jobs/store.ts';
import { JobHooks, PreJobHookError } from './hooks.ts';
import { runHook } from './hook-process.ts';

const log = pino({ level: 'silent' });

function world(t: { after(fn: () => void): void }, script: string, timeoutMs = 10_000) {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-hooks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hook = join(dir, 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\n${script}\n`);
  chmodSync(hook, 0o755);
  const store = new MemoryStore({ agentId: 'agent-1' });
  const hooks = new JobHooks(
    { store, log, clock: systemClock },
    { preJob: [hook, 'pre'], postJob: [hook, 'post'], timeoutMs, agentId: 'agent-1', settleWaitMs: timeoutMs + 1000 },
  );
  t.after(() => void hooks.close());
  const runs = join(dir, 'runs');
  return { store, hooks, runs, dir };
}

/** A job that was launched with a post hook owed, then ended `failed` with exit code 3. */
function endedJob(store: MemoryStore, id = 'j1') {
  store.admit({ id, image: 'img:1', body: {}, callbackUrl: 'http://127.0.0.1:9/cb' }, 'secret', `c-${id}`);
  store.transition(id, 'creating', { postHookDue: true });
  return store.transition(id, 'stopped', { outcome: 'failed', exitCode: 3 });
}

test('a hook runs argv without a shell, with a clean environment and the job variables; its output tail is kept', async () => {
  const run = await runHook(['/bin/sh', '-c', 'echo "$FOREMAN_JOB_ID $HOME"; echo err >&2; exit 4'], { FOREMAN_JOB_ID: 'j 1' }, 5000, systemClock);
  assert.equal(run.exitCode, 4, 'its exit code');
  assert.deepEqual(run.tail, ['j 1 ', 'err'], 'its output, without the agent environment (no HOME)');
  const missing = await runHook(['/no/such/hook'], {}, 5000, systemClock);
  assert.match(missing.error ?? '', /ENOENT/, 'a command that cannot start is a result, not a throw');
});

test('a hook that outlives its timeout is killed, with what it started', async () => {
  const run = await runHook(['/bin/sh', '-c', 'sleep 30 & sleep 30'], {}, 200, systemClock);
  assert.equal(run.timedOut, true, 'timed out');
  assert.equal(run.exitCode, null, 'no exit code');
});

test('pre_job: a failure throws with its output tail', async (t) => {
  const { store, hooks } = world(t, 'echo "pre for $FOREMAN_JOB_ID on $FOREMAN_AGENT_ID"; exit 7');
  store.admit({ id: 'j1', image: 'img:1', body: {}, callbackUrl: 'http://127.0.0.1:9/cb' }, 's', 'c');
  const job = store.transition('j1', 'creating');
  await assert.rejects(hooks.preJob(job, new AbortController().signal), (err: unknown) => {
    assert.ok(err instanceof PreJobHookError, 'a PreJobHookError');
    assert.match(err.message, /exited with code 7/, err.message);
    assert.deepEqual(err.tail, ['pre for j1 on agent-1'], 'its output');
    return true;
  });
});

test('post_job: runs once with the outcome and exit code; the final delivery waits for it and carries its result', async (t) => {
  const { store, hooks, runs } = world(
    t,
    `echo "$1 $FOREMAN_JOB_OUTCOME $FOREMAN_JOB_EXIT_CODE $FOREMAN_JOB_IMAGE" >> ${'"$(dirname "$0")/runs"'}; sleep 0.3; exit 2`,
  );
  const job = endedJob(store);
  hooks.jobStopped(job);
  hooks.jobStopped(job);
  await hooks.settled('j1', new AbortController().signal);
  assert.equal(readFileSync(runs, 'utf8'), 'post failed 3 img:1\n', 'one run, with the job variables');
  const stored = store.get('j1');
  assert.ok(stored?.postHookEndedAt !== null && stored?.postHookStartedAt !== null, 'its start and end are stored');
  hooks.jobStopped(store.get('j1') ?? job);
  const delivery: Delivery = {
    id: 'd1',
    jobId: 'j1',
    seq: 1,
    url: 'http://127.0.0.1:9/cb',
    headers: { [HEADER.jobStatus]: 'completed' },
    body: Buffer.from(JSON.stringify({ outcome: 'failed', reason: 'exit', message: 'x', exitCode: 3 })),
    createdAt: 0,
    attempts: 0,
  };
  const sent = hooks.stamp(delivery);
  assert.match(sent.headers[HEADER.postJobHook] ?? '', /^exit=2; ms=\d+$/, 'the header');
  const body = JSON.parse(sent.body.toString()) as { postJobHook?: { exitCode: number } };
  assert.equal(body.postJobHook?.exitCode, 2, "the agent's report carries it too");
  const forwarded = hooks.stamp({ ...delivery, body: Buffer.from('{"mine":1}') });
  assert.equal(forwarded.body.toString(), '{"mine":1}', "a container's own body goes as it came");
  await hooks.close();
  assert.equal(readFileSync(runs, 'utf8').split('\n').length - 1, 1, 'no second run');
});

test('at start, a hook started but not seen to end runs again; one never started runs', async (t) => {
  const { store, hooks, runs } = world(t, `echo "$FOREMAN_JOB_ID" >> ${'"$(dirname "$0")/runs"'}`);
  endedJob(store, 'a');
  endedJob(store, 'b');
  store.recordPostHook('b', 1);
  endedJob(store, 'c');
  store.recordPostHook('c', 1);
  store.recordPostHook('c', 2, 'exit=0; ms=1');
  hooks.resume();
  await Promise.all(['a', 'b', 'c'].map((id) => hooks.settled(id, new AbortController().signal)));
  assert.deepEqual(readFileSync(runs, 'utf8').trim().split('\n').sort(), ['a', 'b'], 'the owed hooks ran, the ended one did not');
});
