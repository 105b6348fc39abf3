/**
 * Hostile and careless control-server input, against a real agent process on the real engine: no input
 * may end the process, leave a container behind, or put a secret in the log (issue 11, symptoms 1, 4, 5, 6).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ExecutorJobError } from '../src/executor/executor.ts';
import { DockerExecutor } from '../src/executor/docker/docker-executor.ts';
import { testJobImage } from './support/image.ts';
import { readLog, type SpawnedAgent, type SpawnedStack, spawnStack, type TestEnv } from './support/agents.ts';
import { docker, watchContainerEvents } from './support/containers.ts';
import { job, reportOf } from './support/reports.ts';
import { CallbackReceiver, FakeControlServer } from './support/servers.ts';
import { waitFor } from './support/wait.ts';

interface LogLine {
  readonly msg?: string;
  readonly jobId?: string;
  readonly reason?: string;
  readonly url?: string;
}

const SECRETS = ['core-url-secret', 'core-env-secret-6', 'empty-name-secret-1', 'plain-secret-7', 'secret-2', 'poll-secret-3', 'pw-secret-4', 'logs-secret-5'];

describe('hostile input', () => {
  let stack: SpawnedStack;
  let control: FakeControlServer;
  let callbacks: CallbackReceiver;
  /** Refuses everything (400): the agent logs the URL it gave up on. */
  let refusing: CallbackReceiver;
  let env: TestEnv;
  let agentId = '';
  const created = new Set<string>();
  let events: { stop: () => void } | undefined;

  const agent = (): SpawnedAgent => stack.agent;
  const lines = (): LogLine[] =>
    readLog(agent().logFile)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  const rejected = (jobId: string): LogLine | undefined =>
    lines().find((l) => l.msg === 'rejected an invalid job from the control server' && l.jobId === jobId);
  const alive = (): void => assert.equal(agent().child.exitCode, null, `the agent exited:\n${readLog(agent().logFile).slice(-2000)}`);

  /** Sends a good job and waits for its result: the agent is alive and took everything before it. */
  async function stillRunsJobs(id: string): Promise<void> {
    control.reply([job(id, callbacks.url(), { values: [20, 22] })]);
    const done = await callbacks.waitForCompletion(id);
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 42 });
    alive();
  }

  async function outcomeOf(id: string): Promise<{ outcome: unknown; message: string }> {
    const done = await callbacks.waitForCompletion(id);
    return { outcome: done.headers['x-foreman-job-outcome'], message: reportOf(done).message };
  }

  before(async () => {
    await testJobImage();
    refusing = await new CallbackReceiver().start();
    refusing.status = 400;
    events = await watchContainerEvents(['create'], 'foreman.managed=true', (e) => {
      if (e.Actor.Attributes['foreman.agent'] === agentId || agentId === '') created.add(e.Actor.Attributes['foreman.job-id'] ?? '');
    });
    stack = await spawnStack(
      { FOREMAN_CORE_ENV_CORE_SECRET: 'core-env-secret-6' },
      { controlUrl: (url) => url.replace('http://', 'http://agent:core-url-secret@') },
    );
    ({ control, callbacks, env } = stack);
    agentId = await stack.waitForAgentId();
  });

  after(async () => {
    events?.stop();
    await refusing?.stop();
    await stack?.close();
  });

  test("image references outside Docker's grammar (a//b, a/ …) are invalid and get no container", async () => {
    const bad = { 'img-1': 'a//b', 'img-2': 'a/', 'img-3': 'a/../b', 'img-4': '/a' };
    control.reply(Object.entries(bad).map(([id, image]) => job(id, callbacks.url(), { values: [1] }, { image })));
    for (const id of Object.keys(bad)) {
      const { outcome, message } = await outcomeOf(id);
      assert.equal(outcome, 'invalid');
      assert.match(message, /image is not an image reference/);
    }
    await stillRunsJobs('after-img');
    for (const id of Object.keys(bad)) assert.ok(!created.has(id), id);
  });

  test('an engine that answers with a redirect fails that pull; it never ends the process', async () => {
    // Validation keeps such references from the agent's engine; this asks the engine directly, as the agent would.
    const executor = new DockerExecutor({ docker, agentId: 'hostile-input', networkName: env.networkName, extraHosts: [], memoryLimit: 0 });
    for (const image of ['a//b', 'a/', 'a/./b']) {
      await assert.rejects(executor.ensureImage(image, false), (err: unknown) => {
        assert.ok(err instanceof ExecutorJobError && err.kind === 'pull', String(err));
        assert.match(err.message, new RegExp(`^image ${image.replaceAll('.', '\\.')} is not usable: the engine answered with a redirect`));
        return true;
      });
    }
    // A followed redirect failed later, on its own: give it the time to (the test run fails on an uncaught error).
    await new Promise((r) => setTimeout(r, 500));
  });

  test('callback and logs URLs that cannot be delivered to make the job invalid, with no container and no retries', async () => {
    const bad = { 'cb-1': 'http://', 'cb-2': 'https://', 'cb-3': 'http://127.0.0.1:99999/x', 'cb-4': 'http://127.0.0.1:0/x' };
    control.reply([
      ...Object.entries(bad).map(([id, callbackUrl]) => job(id, callbackUrl, { values: [1] })),
      job('logs-1', callbacks.url(), { values: [1] }, { logsUrl: 'http://127.0.0.1:99999/logs' }),
    ]);
    const { outcome, message } = await outcomeOf('logs-1');
    assert.equal(outcome, 'invalid');
    assert.match(message, /logsUrl is not a valid URL/);
    for (const id of Object.keys(bad)) {
      const line = await waitFor(`${id} rejected`, () => rejected(id));
      assert.match(line.reason ?? '', /callbackUrl (is not a valid URL|has port 0)/);
    }
    await stillRunsJobs('after-cb');
    for (const id of [...Object.keys(bad), 'logs-1']) assert.ok(!created.has(id), id);
    assert.ok(!lines().some((l) => l.msg?.startsWith('callback delivery failed')), 'no delivery was attempted');
  });

  test('a lone surrogate is rejected wherever it would be changed; other text round-trips exactly', async () => {
    const cb = JSON.stringify(callbacks.url());
    const entry = (id: string, extra: string): string => `{"id":"${id}","image":"foreman-test-job:latest","body":{"values":[1]},"callbackUrl":${cb}${extra}}`;
    const exotic = 'ünï-😀-\u0000-\u2028-"\\';
    control.reply({
      status: 200,
      body: `[${[
        entry('\\ud800', ''),
        entry('sur-env', ',"env":{"A":"x\\udfff"}'),
        entry('sur-cmd', ',"command":["node","\\ud800"]'),
        entry('sur-image', '').replace('foreman-test-job:latest', 'foreman-test-job\\ud800'),
        `{"id":${JSON.stringify(exotic)},"image":"foreman-test-job:latest","body":{"values":[5]},"callbackUrl":${cb}}`,
      ].join(',')}]`,
    });
    for (const [id, reason] of [
      ['sur-env', /env holds/],
      ['sur-cmd', /command holds/],
      ['sur-image', /image is not well-formed Unicode/],
    ] as const) {
      const { outcome, message } = await outcomeOf(id);
      assert.equal(outcome, 'invalid');
      assert.match(message, reason);
    }
    // Logged with the id escaped, and reported: the id percent-encoded (the lone surrogate as its WTF-8 bytes) and in the body.
    const line = await waitFor('the lone-surrogate id rejected', () => rejected('\\ud800'));
    assert.match(line.reason ?? '', /id is not well-formed Unicode/);
    const illFormed = await waitFor('the lone-surrogate job reported', () => callbacks.requests.find((r) => r.headers['x-foreman-job-id'] === '%ED%A0%80'));
    assert.equal(illFormed.headers['x-foreman-job-outcome'], 'invalid', 'reported invalid');
    assert.equal(illFormed.headers['x-foreman-job-status'], 'completed', 'as a final update');
    const report = JSON.parse(illFormed.body.toString()) as { id: string; reason: string; message: string };
    assert.equal(report.id, '\ud800', 'the body gives the id back exactly');
    assert.match(report.message, /id is not well-formed Unicode/, 'and says why');
    const done = await callbacks.waitForCompletion(exotic);
    assert.equal(decodeURIComponent(String(done.headers['x-foreman-job-id'])), exotic);
    assert.deepEqual(JSON.parse(done.body.toString()), { result: 5 });
    await stillRunsJobs('after-sur');
    const wellFormed = callbacks.requests.filter((r) => r !== illFormed);
    assert.ok(!wellFormed.some((r) => decodeURIComponent(String(r.headers['x-foreman-job-id'])).includes('\ufffd')), 'no id was changed on the way');
    for (const id of ['sur-env', 'sur-cmd', 'sur-image']) assert.ok(!created.has(id), id);
  });

  test('env values, URL credentials and bad poll replies never reach the log or a report', async () => {
    const withPassword = (path: string, password: string): string => refusing.url(path).replace('http://', `http://user:${password}@`);
    control.reply(
      [
        job('sec-1', callbacks.url(), { values: [1] }, { env: { '': 'empty-name-secret-1', OK: 'plain-secret-7' } }),
        job('sec-2', callbacks.url(), { values: [1] }, { env: { BAD: 'nul\u0000secret-2' } }),
        job('sec-3', withPassword('cb', 'pw-secret-4'), { values: [1] }, { logsUrl: withPassword('logs', 'logs-secret-5') }),
      ],
      { status: 200, body: '[{"id":"sec-4","env":{"TOKEN":"poll-secret-3"}} x' },
      { status: 200, body: '{"id":"sec-5","env":{"TOKEN":"poll-secret-3"' },
    );
    for (const id of ['sec-1', 'sec-2']) {
      const { outcome, message } = await outcomeOf(id);
      assert.equal(outcome, 'start-failed');
      assert.match(message, /\[redacted\]/);
    }
    await waitFor(
      'sec-3 refused by its callback',
      () => lines().some((l) => l.jobId === 'sec-3' && l.msg === 'callback rejected the update; not retrying'),
      30_000,
    );
    await waitFor('sec-3 refused by its logs server', () => lines().some((l) => l.jobId === 'sec-3' && l.msg?.startsWith('the logs server refused')), 30_000);
    await waitFor('the bad poll replies logged', () => lines().filter((l) => /invalid JSON \(/.test(l.reason ?? '')).length > 0);
    await stillRunsJobs('after-sec');
    const log = readLog(agent().logFile);
    for (const secret of SECRETS) assert.ok(!log.includes(secret), `the log holds ${secret}`);
    assert.ok(log.includes('user:***@127.0.0.1'), 'URLs are logged without their password');
    assert.ok(log.includes('agent:***@127.0.0.1'), 'the control server URL is logged without its password');
    const reported = Buffer.concat(callbacks.requests.map((r) => r.body)).toString() + Buffer.concat(refusing.requests.map((r) => r.body)).toString();
    for (const secret of SECRETS) assert.ok(!reported.includes(secret), `a report holds ${secret}`);
    alive();
  });
});
