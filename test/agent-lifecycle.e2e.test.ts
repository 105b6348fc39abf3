/** The agent's own life, as a real process on the real engine: drain, detach, one-shot runs, health. */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { testJobImage } from './support/image.ts';
import { exitCode, readLog, spawnStack, type SpawnedStack } from './support/agents.ts';
import { containersOf, watchContainerEvents } from './support/containers.ts';
import pkg from '../package.json' with { type: 'json' };
import { FakeRegistry } from './support/fake-registry.ts';
import { freePort } from './support/ports.ts';
import { job, seqs } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

async function get(url: string): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url);
    return { status: res.status, text: await res.text() };
  } catch (err) {
    return { status: 0, text: String(err) };
  }
}

before(() => testJobImage());

test('drain: after SIGTERM polls go on with capacity 0, /readyz says draining, and the running job completes normally', async (t) => {
  const metricsPort = await freePort();
  const s = await spawnStack({ FOREMAN_CORE_DRAIN_TIMEOUT: '60000', FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` });
  try {
    s.control.reply([job('d-1', s.callbacks.url(), { action: 'progress', steps: 10, delayMs: 300, values: [4] })]);
    await waitFor('a first update', () => s.callbacks.for('d-1')[0], 30_000);
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/readyz`)).status, 200);
    s.agent.child.kill('SIGTERM');
    await waitFor('/readyz to say draining', async () => (await get(`http://127.0.0.1:${metricsPort}/readyz`)).status === 503);
    // From here on the agent is draining; a poll it sent just before the signal may still arrive after it.
    const drainingAt = Date.now();
    assert.match((await get(`http://127.0.0.1:${metricsPort}/readyz`)).text, /draining/);
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
    s.control.reply([job('d-late', s.callbacks.url(), { values: [1] })]);
    const done = await s.callbacks.waitForCompletion('d-1', 30_000);
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 4 });
    assert.equal(await exitCode(s.agent, 60_000), 0, readLog(s.agent.logFile).slice(-2000));
    t.diagnostic(`exited ${Date.now() - done.at} ms after the drained job's completion`);
    const during = s.control.polls.filter((p) => p.at > drainingAt && p.at < done.at);
    assert.ok(during.length >= 3, `${during.length} polls during the drain`);
    assert.deepEqual(new Set(during.map((p) => p.headers['x-foreman-capacity'])), new Set(['0']));
    assert.equal(s.callbacks.completion('d-late')?.headers['x-foreman-job-outcome'], 'agent-shutdown', 'a job sent during the drain never started');
  } finally {
    await s.close({ signal: 'SIGKILL' });
  }
});

test('a second signal ends the drain at once: the running job is stopped and reported agent-shutdown', async (t) => {
  const s = await spawnStack({ FOREMAN_CORE_DRAIN_TIMEOUT: '120000' });
  try {
    const agentId = await s.waitForAgentId();
    s.control.reply([job('d-cut', s.callbacks.url(), { action: 'sleep' })]);
    await waitFor(
      'the job container running',
      async () => (await containersOf(agentId)).find((x) => x.Labels['foreman.job-id'] === 'd-cut' && x.State === 'running'),
      30_000,
    );
    s.agent.child.kill('SIGTERM');
    await waitFor('the drain to begin', () => readLog(s.agent.logFile).includes('draining: no new jobs'));
    const cutAt = Date.now();
    s.agent.child.kill('SIGTERM');
    assert.equal(await exitCode(s.agent), 0, readLog(s.agent.logFile).slice(-2000));
    t.diagnostic(`exited ${Date.now() - cutAt} ms after the second signal`);
    assert.match(readLog(s.agent.logFile), /second signal: ending the drain now/);
    assert.equal(s.callbacks.completion('d-cut')?.headers['x-foreman-job-outcome'], 'agent-shutdown');
  } finally {
    await s.close({ signal: 'SIGKILL' });
  }
});

test('detach: the container outlives the agent, and the next agent on the data_dir forwards its completion', async () => {
  const s = await spawnStack({
    FOREMAN_CORE_DETACH_ON_TERMINATE: 'true',
    FOREMAN_CORE_PORT: String(await freePort()),
    FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '120000',
  });
  let events: { stop: () => void } | undefined;
  try {
    const agentId = await s.waitForAgentId();
    const creates: string[] = [];
    events = await watchContainerEvents(['create'], `foreman.agent=${agentId}`, (e) => {
      if (e.Actor.Attributes['foreman.job-id'] === 'det-1') creates.push(e.id);
    });
    s.control.reply([job('det-1', s.callbacks.url(), { action: 'progress', steps: 16, delayMs: 500, values: [5, 6] })]);
    await waitFor('a first update', () => s.callbacks.for('det-1')[0], 30_000);
    s.agent.child.kill('SIGTERM');
    assert.equal(await exitCode(s.agent), 0, readLog(s.agent.logFile).slice(-2000));
    assert.match(readLog(s.agent.logFile), /leaving running jobs to the next agent/);
    const left = (await containersOf(agentId)).find((c) => c.Labels['foreman.job-id'] === 'det-1');
    assert.equal(left?.State, 'running', 'the container outlived the agent');
    assert.equal(s.callbacks.completion('det-1'), undefined, 'nothing reported');

    await s.restart();
    const done = await s.callbacks.waitForCompletion('det-1', 60_000);
    assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 11 });
    const firsts = [...new Set(seqs(s.callbacks.for('det-1')))];
    assert.deepEqual(
      firsts,
      Array.from({ length: 17 }, (_, i) => i + 1),
      'every update, in order, none lost',
    );
    assert.equal(creates.length, 1, 'the job ran once');
  } finally {
    events?.stop();
    await s.close({ signal: 'SIGKILL' });
  }
});

test('--max-jobs 1 takes one job, ignores the rest, and exits 0 once it is reported, leaving nothing behind', async () => {
  const s = await spawnStack({}, { args: ['--max-jobs', '1'] });
  try {
    s.control.reply(
      [job('one-1', s.callbacks.url(), { action: 'progress', steps: 3, delayMs: 200, values: [2] })],
      [job('one-2', s.callbacks.url(), { values: [3] })],
    );
    assert.equal(await exitCode(s.agent, 60_000), 0, readLog(s.agent.logFile).slice(-2000));
    const done = s.callbacks.completion('one-1');
    assert.equal(done?.headers['x-foreman-job-outcome'], 'succeeded');
    assert.equal(s.callbacks.for('one-2').length, 0, 'the second job was not taken');
    assert.deepEqual(
      s.control.polls
        .slice(1)
        .map((p) => p.headers['x-foreman-capacity'])
        .filter((c) => c !== '0'),
      [],
      'no capacity offered after the one job',
    );
    assert.equal((await containersOf(String(done.headers['x-foreman-agent-id']))).length, 0);
    assert.match(readLog(s.agent.logFile), /took --max-jobs jobs/);
  } finally {
    await s.close({ signal: 'SIGKILL' });
  }
});

test('--exit-when-idle exits 0 once nothing ran for that long, after the job it was given', async (t) => {
  const startedAt = Date.now();
  const s = await spawnStack({}, { args: ['--exit-when-idle', '1500'] });
  try {
    s.control.reply([job('idle-1', s.callbacks.url(), { values: [1] })]);
    assert.equal(await exitCode(s.agent, 60_000), 0, readLog(s.agent.logFile).slice(-2000));
    const done = s.callbacks.completion('idle-1');
    assert.ok(done, 'the job ran first');
    const idleFor = Date.now() - done.at;
    t.diagnostic(`exited ${idleFor} ms after the last report (--exit-when-idle 1500), ${Date.now() - startedAt} ms after start`);
    assert.ok(idleFor >= 1400, `exited after only ${idleFor} ms idle`);
    assert.equal((await containersOf(String(done.headers['x-foreman-agent-id']))).length, 0);
  } finally {
    await s.close({ signal: 'SIGKILL' });
  }
});

test('an engine that does not answer: alive, not ready, foreman_engine_up 0; a healthy agent: ready, and its metrics count what it did', async () => {
  await unreachableEngine();
  await healthyAgent();
});

/** An agent whose engine does not answer is alive (a restart would not help: it rides the outage out), but not ready. */
async function unreachableEngine(): Promise<void> {
  const metricsPort = await freePort();
  const s = await spawnStack({ FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`, FOREMAN_DOCKER_URL: 'unix:///nonexistent/docker.sock' });
  try {
    const health = await waitFor('/healthz to answer', async () => {
      const r = await get(`http://127.0.0.1:${metricsPort}/healthz`);
      return r.status === 0 ? undefined : r;
    });
    assert.equal(health.status, 200, `alive: ${health.text}`);
    assert.equal(health.text, 'ok\n');
    const ready = await get(`http://127.0.0.1:${metricsPort}/readyz`);
    assert.equal(ready.status, 503, 'not ready');
    assert.match(ready.text, /^the Docker engine at unix:\/\/\/nonexistent\/docker\.sock does not answer: .*ENOENT/, 'readiness names the engine');
    assert.doesNotMatch(ready.text, /\n\s+at /, 'no stack trace');
    const metrics = (await get(`http://127.0.0.1:${metricsPort}/metrics`)).text;
    assert.match(metrics, /^foreman_engine_up 0$/m, 'the metric says the engine is down');
  } finally {
    await s.close();
  }
}

/** A healthy agent: both probes pass, and the metrics count the job it ran and the pull that failed. */
async function healthyAgent(): Promise<void> {
  const metricsPort = await freePort();
  const registry = await new FakeRegistry('drop').start();
  const s: SpawnedStack = await spawnStack({ FOREMAN_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`, FOREMAN_CORE_MAX_CONCURRENT_JOBS: '3' });
  try {
    s.control.reply([job('h-1', s.callbacks.url(), { values: [1] }), job('h-pull', s.callbacks.url(), {}, { image: registry.image('nope') })]);
    await s.callbacks.waitForCompletion('h-1', 30_000);
    assert.equal((await s.callbacks.waitForCompletion('h-pull', 60_000)).headers['x-foreman-job-outcome'], 'pull-failed', 'the pull failed');
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200, 'alive');
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/readyz`)).status, 200, 'ready');
    const metrics = await waitFor('the histograms to count the job', async () => {
      const text = (await get(`http://127.0.0.1:${metricsPort}/metrics`)).text;
      return /^foreman_job_run_seconds_count\{outcome="succeeded"\} 1$/m.test(text) ? text : undefined;
    });
    for (const [pattern, what] of [
      [/^foreman_job_start_latency_seconds_count 1$/m, 'the start latency, under its new name'],
      [/^foreman_callback_delivery_seconds_count\{result="delivered"\} [12]$/m, 'deliveries'],
      [
        new RegExp(`^foreman_build_info\\{version="${pkg.version.replaceAll('.', '\\.')}",node="${process.version.replaceAll('.', '\\.')}"\\} 1$`, 'm'),
        'the build',
      ],
      [/^foreman_job_slots 3$/m, 'the configured slots'],
      [/^foreman_job_slots_free 3$/m, 'the free slots'],
      [/^foreman_polls_total\{result="jobs"\} 1$/m, 'the poll that brought the jobs'],
      [/^foreman_polls_total\{result="empty"\} \d+$/m, 'the empty polls'],
      [/^foreman_callback_backlog 0$/m, 'the outbox backlog'],
      [/^foreman_callback_backlog_oldest_age_seconds 0$/m, 'the age of its oldest entry'],
      [/^foreman_log_backlog_lines 0$/m, 'the log-shipping backlog'],
      [/^foreman_image_pull_duration_seconds_count\{result="failure"\} 1$/m, 'the failed pull'],
      [/^foreman_engine_up 1$/m, 'the engine'],
    ] as const) {
      assert.match(metrics, pattern, what);
    }
    assert.doesNotMatch(metrics, /^foreman_job_start_seconds/m, 'the old name is gone');
  } finally {
    await s.close();
    await registry.close();
  }
}
