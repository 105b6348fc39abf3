import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatLabelsHeader } from '../packages/control-server-kit/index.ts';
import { createControlServer } from '../src/server/app.ts';
import type { ControlServer, ControlServerOptions } from '../src/server/app.ts';
import { ADMIN_TOKEN, operatorFetch, testDatabase } from './support/control-server.ts';
import type { JobView } from '../src/server/rows.ts';

const TOKEN = 'test-token';
/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();

interface Running {
  server: ControlServer;
  base: string;
}

async function start(dbPath: string, extra: Partial<ControlServerOptions> = {}): Promise<Running> {
  const server = await createControlServer({ database: await testDatabase(dbPath), tokens: [TOKEN, 'second-token'], adminTokens: [ADMIN_TOKEN], ...extra });
  await server.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = server.app.server.address() as AddressInfo;
  return { server, base: `http://127.0.0.1:${port}` };
}

async function json(response: Response): Promise<unknown> {
  return JSON.parse(await response.text()) as unknown;
}

interface HandedJob {
  id: string;
  image: string;
  body: unknown;
  callbackUrl: string;
  logsUrl: string;
  command?: string[];
  env?: Record<string, string>;
  alwaysPull?: boolean;
  traceparent?: string;
  tracestate?: string;
}

describe('reference control server', () => {
  let dir: string;
  let running: Running;
  let base: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-test-'));
    running = await start(join(dir, 'cs.db'));
    base = running.base;
  });
  after(async () => {
    await running.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function submit(job: Record<string, unknown>): Promise<string> {
    const response = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(job) });
    assert.equal(response.status, 201, await response.clone().text());
    const { id } = (await json(response)) as { id: string };
    assert.match(id, /^[0-9a-f-]{36}$/);
    return id;
  }

  async function poll(headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${base}/job`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });
    return { status: response.status, body: await json(response) };
  }

  // Each test uses its own label value so queued jobs from other tests never match.
  async function pollJobs(queue: string, capacity: number, agentId = `agent-${queue}`): Promise<HandedJob[]> {
    const result = await poll({ 'x-foreman-labels': formatLabelsHeader({ queue }), 'x-foreman-capacity': String(capacity), 'x-foreman-agent-id': agentId });
    assert.equal(result.status, 200, JSON.stringify(result.body));
    return result.body as HandedJob[];
  }

  async function callback(id: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: unknown }> {
    const url = (await running.server.jobUrls(id, base))?.callbackUrl ?? `${base}/job/${id}`;
    const response = await fetch(url, { method: 'PUT', headers, ...(body === undefined ? {} : { body }) });
    return { status: response.status, body: await json(response) };
  }

  async function getJob(id: string): Promise<JobView> {
    const response = await fetch(`${base}/jobs/${id}`);
    assert.equal(response.status, 200);
    return (await json(response)) as JobView;
  }

  it('rejects GET /job without a valid bearer token with a JSON 401', async () => {
    for (const authorization of [undefined, 'Bearer wrong', 'Basic dGVzdA==', `Bearer ${TOKEN}x`]) {
      const response = await fetch(`${base}/job`, { headers: authorization === undefined ? {} : { authorization } });
      assert.equal(response.status, 401);
      assert.match(response.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(await json(response), { error: 'missing or invalid bearer token' });
    }
    const second = await fetch(`${base}/job`, { headers: { authorization: 'Bearer second-token', 'x-foreman-capacity': '0' } });
    assert.equal(second.status, 200);
  });

  it('hands out only jobs whose required labels the agent carries with equal values', async () => {
    const gpu = await submit({ image: 'img', labels: { queue: 'labels', 'gpu=kind': 'a,b' } });
    const plain = await submit({ image: 'img', labels: { queue: 'labels' } });

    const wrongValue = await poll({ 'x-foreman-labels': formatLabelsHeader({ queue: 'labels', 'gpu=kind': 'a' }), 'x-foreman-capacity': '5' });
    assert.deepEqual(
      (wrongValue.body as HandedJob[]).map((job) => job.id),
      [plain],
    );

    const noLabels = await poll({ 'x-foreman-capacity': '5' });
    assert.ok(!(noLabels.body as HandedJob[]).some((job) => job.id === gpu), 'a job with required labels went to an agent without labels');

    // Encoded "=" and "," decode back; extra agent labels don't matter.
    const matching = await poll({ 'x-foreman-labels': `${formatLabelsHeader({ 'gpu=kind': 'a,b', extra: 'x' })},queue=labels`, 'x-foreman-capacity': '5' });
    assert.deepEqual(
      (matching.body as HandedJob[]).map((job) => job.id),
      [gpu],
    );
  });

  it('returns the job fields, with a callbackUrl and a logsUrl pointing back at this server', async () => {
    const id = await submit({
      image: 'img:1',
      command: ['node', 'x.js'],
      env: { A: '1' },
      body: { n: [1, 2] },
      labels: { queue: 'fields' },
      alwaysPull: false,
    });
    const minimal = await submit({ image: 'img:2', labels: { queue: 'fields' } });
    const handed = await pollJobs('fields', 2);
    for (const job of handed) assert.match(job.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the server began a trace for each job');
    const jobs = handed.map(({ traceparent: _, ...job }) => job);
    const secretOf = (url: string | undefined) => new URL(url ?? 'http://x/').searchParams.get('secret') ?? '';
    const [first, second] = [secretOf(jobs[0]?.callbackUrl), secretOf(jobs[1]?.callbackUrl)];
    assert.deepEqual(jobs, [
      {
        id,
        image: 'img:1',
        command: ['node', 'x.js'],
        env: { A: '1' },
        body: { n: [1, 2] },
        alwaysPull: false,
        callbackUrl: `${base}/job/${id}?secret=${first}`,
        logsUrl: `${base}/job/${id}/logs?secret=${first}`,
      },
      {
        id: minimal,
        image: 'img:2',
        body: null,
        callbackUrl: `${base}/job/${minimal}?secret=${second}`,
        logsUrl: `${base}/job/${minimal}/logs?secret=${second}`,
      },
    ]);
    // 256 random bits each, base64url: unguessable, and one job's secret is not another's.
    assert.match(first, /^[A-Za-z0-9_-]{43}$/, 'a secret of 256 bits');
    assert.notEqual(first, second, 'each job has its own secret');
    assert.equal((await getJob(id)).status, 'assigned');
    assert.equal((await getJob(id)).agentId, 'agent-fields');
  });

  it('takes how the agent runs a job (timeout, stallTimeout, cancelGracePeriod, resources) and hands it out as given', async () => {
    const run = { timeout: 3_600_000, stallTimeout: 60_000, cancelGracePeriod: 0, resources: { cpus: 0.5, memory: 268_435_456, pids: 64 } };
    const id = await submit({ image: 'img:3', labels: { queue: 'run-options' }, ...run });
    const only = await submit({ image: 'img:4', labels: { queue: 'run-options' }, timeout: 1 });
    const jobs = await pollJobs('run-options', 2);
    assert.deepEqual(
      jobs.map((job) => ({ ...job, callbackUrl: undefined, logsUrl: undefined, traceparent: undefined })),
      [
        { id, image: 'img:3', body: null, ...run, callbackUrl: undefined, logsUrl: undefined, traceparent: undefined },
        { id: only, image: 'img:4', body: null, timeout: 1, callbackUrl: undefined, logsUrl: undefined, traceparent: undefined },
      ],
      'each field as it was submitted, none added',
    );
    for (const [body, expected] of [
      ['{"image":"x","timeout":0}', /body\.timeout must be >= 1/],
      ['{"image":"x","timeout":1.5}', /body\.timeout must be integer/],
      ['{"image":"x","stallTimeout":-1}', /body\.stallTimeout must be >= 0/],
      ['{"image":"x","cancelGracePeriod":2147483648}', /body\.cancelGracePeriod must be <= 2147483647/],
      ['{"image":"x","resources":{"gpus":1}}', /body\.resources has unknown field\(s\): gpus/],
      ['{"image":"x","resources":{"memory":1024}}', /body\.resources\.memory must be >= 6291456/],
    ] as const) {
      const response = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(response.status, 400, body);
      assert.match(((await json(response)) as { error: string }).error, expected, body);
    }
  });

  it('honours capacity: at most that many, oldest first; missing means 1; 0 means none', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await submit({ image: 'img', body: i, labels: { queue: 'capacity' } }));
    assert.deepEqual(await pollJobs('capacity', 0), []);
    assert.deepEqual(
      (await pollJobs('capacity', 2)).map((job) => job.id),
      ids.slice(0, 2),
    );
    const defaulted = await poll({ 'x-foreman-labels': 'queue=capacity' });
    assert.deepEqual(
      (defaulted.body as HandedJob[]).map((job) => job.id),
      ids.slice(2, 3),
    );
    assert.deepEqual(
      (await pollJobs('capacity', 10)).map((job) => job.id),
      ids.slice(3),
    );
    assert.deepEqual(await pollJobs('capacity', 10), []);
  });

  it('rejects malformed labels and capacity with a 400', async () => {
    for (const labels of ['queue', 'a=b=c', '=value', 'k=%E0%A4%A']) {
      const result = await poll({ 'x-foreman-labels': labels });
      assert.equal(result.status, 400, labels);
      assert.match((result.body as { error: string }).error, /x-foreman-labels/);
    }
    for (const capacity of ['-1', 'two', '1.5', '']) {
      const result = await poll({ 'x-foreman-capacity': capacity });
      assert.equal(result.status, 400, capacity);
      assert.match((result.body as { error: string }).error, /x-foreman-capacity/);
    }
  });

  it('never hands one job to two agents polling concurrently', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 30; i++) ids.add(await submit({ image: 'img', labels: { queue: 'race' } }));
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((agent) => pollJobs('race', 10, `race-${agent}`)));
    const handed = results.flat().map((job) => job.id);
    assert.equal(new Set(handed).size, handed.length, 'a job was handed out twice');
    assert.deepEqual(new Set(handed), ids);
    for (const [index, jobs] of results.entries()) {
      for (const job of jobs) assert.equal((await getJob(job.id)).agentId, `race-${'abcd'[index]}`);
    }
  });

  it('records agents seen with their labels, capacity and last poll', async () => {
    await poll({
      'x-foreman-agent-id': 'seen-agent',
      'x-foreman-labels': 'zone=eu%2C1',
      'x-foreman-capacity': '7',
      'user-agent': 'foreman/0.1.0 (linux, x64)',
    });
    await poll({ 'x-foreman-capacity': '0', 'user-agent': 'anonymous-client' });
    const agents = (await json(await fetch(`${base}/agents`))) as Array<{
      id: string;
      labels: unknown;
      capacity: number;
      userAgent: string;
      lastPollAt: string;
    }>;
    const seen = agents.find((agent) => agent.id === 'seen-agent');
    assert.ok(seen, `seen-agent is not listed: ${JSON.stringify(agents)}`);
    assert.deepEqual(seen.labels, { zone: 'eu,1' });
    assert.equal(seen.capacity, 7);
    assert.equal(seen.userAgent, 'foreman/0.1.0 (linux, x64)');
    assert.ok(Date.now() - Date.parse(seen.lastPollAt) < 60_000, `lastPollAt ${seen.lastPollAt} is not within the last minute`);
    const anonymous = agents.find((agent) => agent.userAgent === 'anonymous-client');
    assert.ok(anonymous, `the agent without an id is not listed: ${JSON.stringify(agents)}`);
    assert.match(anonymous.id, /^anonymous-[0-9a-f]{12}$/);
    assert.ok(!anonymous.id.includes(TOKEN), `the anonymous agent's id ${anonymous.id} holds the token`);
  });

  it('validates POST /jobs with clear 400s', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['{}', 'application/json', /body must have required properties image/],
      ['{"image":""}', 'application/json', /body\.image must not have fewer than 1 characters/],
      ['{"image":5}', 'application/json', /body\.image must be string/],
      ['{"image":"x","command":"ls"}', 'application/json', /body\.command must be array/],
      ['{"image":"x","env":{"A":1}}', 'application/json', /body\.env\.A must be string/],
      ['{"image":"x","labels":{"q":true}}', 'application/json', /body\.labels\.q must be string/],
      ['{"image":"x","alwaysPull":"yes"}', 'application/json', /body\.alwaysPull must be boolean/],
      ['{"image":"x","imgae":"y"}', 'application/json', /unknown field\(s\): imgae/],
      ['[1]', 'application/json', /body must be object/],
      ['{oops', 'application/json', /not valid JSON/],
      ['image=x', 'application/x-www-form-urlencoded', /unsupported content-type/],
    ];
    for (const [body, contentType, expected] of cases) {
      const response = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': contentType }, body });
      assert.ok(response.status === 400 || response.status === 415, `${body}: ${response.status}`);
      const error = ((await json(response)) as { error: string }).error;
      assert.match(error, expected, body);
      assert.doesNotMatch(error, /\n\s+at /, 'stack trace leaked');
    }
  });

  it('records callbacks: status, progress, JSON or text result, default outcome', async () => {
    const id = await submit({ image: 'img', labels: { queue: 'callback' } });
    await pollJobs('callback', 1);
    let reply = await callback(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.25', 'content-type': 'text/plain' }, 'quarter');
    assert.equal(reply.status, 200);
    let job = await getJob(id);
    assert.deepEqual([job.status, job.progress, job.outcome, job.result], ['running', 0.25, null, 'quarter']);

    // A body that claims JSON but isn't is kept as text rather than bounced.
    await callback(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5', 'content-type': 'application/json' }, '{half');
    assert.equal((await getJob(id)).result, '{half');

    reply = await callback(id, { 'x-foreman-job-status': 'completed', 'content-type': 'application/json; charset=utf-8' }, '{"answer":42}');
    assert.equal(reply.status, 200);
    job = await getJob(id);
    assert.deepEqual([job.status, job.outcome, job.result], ['completed', 'succeeded', { answer: 42 }]);

    // Completed is terminal.
    reply = await callback(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.9' }, 'late');
    assert.equal(reply.status, 200);
    assert.deepEqual(await getJob(id), job);

    const failed = await submit({ image: 'img', labels: { queue: 'callback' } });
    await pollJobs('callback', 1);
    const report = { outcome: 'failed', reason: 'exited', message: 'exit code 3', exitCode: 3 };
    await callback(
      failed,
      { 'x-foreman-job-status': 'completed', 'x-foreman-job-outcome': 'failed', 'content-type': 'application/json' },
      JSON.stringify(report),
    );
    const failedJob = await getJob(failed);
    assert.deepEqual([failedJob.status, failedJob.outcome, failedJob.result], ['completed', 'failed', report]);
  });

  it('rejects bad callback headers with a 400', async () => {
    const id = await submit({ image: 'img', labels: { queue: 'bad-callback' } });
    const badHeaders: Array<Record<string, string>> = [
      {},
      { 'x-foreman-job-status': 'done' },
      { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': 'lots' },
      { 'x-foreman-job-status': 'running', 'x-foreman-delivery-seq': 'first' },
    ];
    for (const headers of badHeaders) {
      const reply = await callback(id, headers);
      assert.equal(reply.status, 400, JSON.stringify(headers));
      assert.equal(typeof (reply.body as { error: string }).error, 'string');
    }
    assert.equal((await getJob(id)).status, 'queued');
  });

  it('is idempotent on x-foreman-delivery-id', async () => {
    const id = await submit({ image: 'img', labels: { queue: 'dedupe' } });
    await pollJobs('dedupe', 1);
    const headers = {
      'x-foreman-job-status': 'running',
      'x-foreman-job-progress': '0.4',
      'x-foreman-delivery-id': 'delivery-1',
      'x-foreman-delivery-seq': '1',
    };
    assert.equal((await callback(id, headers, 'first')).status, 200);
    const before = await getJob(id);
    const repeat = await callback(id, { ...headers, 'x-foreman-job-progress': '0.8' }, 'changed');
    assert.equal(repeat.status, 200);
    assert.deepEqual(await getJob(id), before);
    const repeatedCompletion = await callback(id, {
      'x-foreman-job-status': 'completed',
      'x-foreman-delivery-id': 'delivery-1',
      'x-foreman-delivery-seq': '2',
    });
    assert.equal(repeatedCompletion.status, 200);
    assert.equal((await getJob(id)).status, 'running');
  });

  it('ignores deliveries older than the last applied x-foreman-delivery-seq', async () => {
    const id = await submit({ image: 'img', labels: { queue: 'seq' } });
    await pollJobs('seq', 1);
    const update = (seq: number, progress: string) =>
      callback(id, {
        'x-foreman-job-status': 'running',
        'x-foreman-job-progress': progress,
        'x-foreman-delivery-id': `seq-${seq}`,
        'x-foreman-delivery-seq': String(seq),
      });
    assert.equal((await update(1, '0.1')).status, 200);
    assert.equal((await update(3, '0.3')).status, 200);
    const stale = await update(2, '0.2');
    assert.equal(stale.status, 200);
    assert.equal((await getJob(id)).progress, 0.3);
    assert.equal((await update(4, '0.4')).status, 200);
    assert.equal((await getJob(id)).progress, 0.4);
  });

  it('answers 404 with a JSON error for unknown jobs and routes', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const put = await callback(unknown, { 'x-foreman-job-status': 'running' });
    assert.equal(put.status, 404);
    assert.deepEqual(put.body, { error: `unknown job ${unknown}` });
    const get = await fetch(`${base}/jobs/${unknown}`);
    assert.equal(get.status, 404);
    assert.deepEqual(await json(get), { error: `unknown job ${unknown}` });
    const route = await fetch(`${base}/nowhere?x=1`);
    assert.equal(route.status, 404);
    assert.deepEqual(await json(route), { error: 'no route for GET /nowhere' });
  });

  it("takes the submitter's traceparent (a bad one is a 400), hands it out, and keeps the trace context of the agent's report", async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const id = await submit({ image: 'img', labels: { queue: 'traced' }, traceparent, tracestate: 'vendor=opaque' });
    for (const [body, expected] of [
      [{ image: 'img', traceparent: '00-nope-01' }, /body\.traceparent must be a W3C traceparent/],
      [{ image: 'img', traceparent: `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01` }, /body\.traceparent must be a W3C traceparent/],
      [{ image: 'img', traceparent: 'x'.repeat(257) }, /body\.traceparent must not have more than 256 characters/],
      [{ image: 'img', tracestate: 'x'.repeat(513) }, /body\.tracestate must not have more than 512 characters/],
    ] as const) {
      const bad = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(bad.status, 400, `refused: ${JSON.stringify(body).slice(0, 80)}`);
      assert.match(((await json(bad)) as { error: string }).error, expected);
    }
    const [handed] = await pollJobs('traced', 1);
    assert.equal(handed?.traceparent, traceparent, 'handed out as submitted');
    assert.equal(handed.tracestate, 'vendor=opaque', 'tracestate handed out as submitted');
    assert.equal((await getJob(id)).traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'the job shows its trace id');
    const report = '00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01';
    const put = await fetch(handed.callbackUrl, {
      method: 'PUT',
      headers: { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'agent-traced', traceparent: report },
      body: '{}',
    });
    assert.equal(put.status, 200, 'the report is applied');
    assert.equal((await getJob(id)).reportTraceparent, report, "the agent's report is recorded in the job's trace");
    const listed = (await json(await fetch(`${base}/jobs?label=queue%3Dtraced`))) as JobView[];
    assert.equal(listed[0]?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'GET /jobs shows the trace id');
  });

  it('lists jobs newest first', async () => {
    const first = await submit({ image: 'img', labels: { queue: 'list' } });
    const second = await submit({ image: 'img', labels: { queue: 'list' } });
    const jobs = (await json(await fetch(`${base}/jobs`))) as Array<JobView & { image: string; createdAt: string; updatedAt: string }>;
    assert.deepEqual(
      jobs.slice(0, 2).map((job) => job.id),
      [second, first],
    );
    const fields =
      'agentId cancelRequested cancelRequestedAt createdAt endedAt id image labels logComplete logLines outcome progress reportTraceparent requeues result status traceId updatedAt usage';
    assert.deepEqual(Object.keys(jobs[0]!).sort(), fields.split(' '));
  });

  it('streams job and agent changes as server-sent events', async () => {
    const controller = new AbortController();
    const response = await fetch(`${base}/events`, { signal: controller.signal });
    assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    const nextEvent = async (name: string): Promise<unknown> => {
      for (;;) {
        const match = new RegExp(`event: ${name}\\ndata: (.*)\\n\\n`).exec(buffered);
        if (match) {
          buffered = buffered.slice(match.index + match[0].length);
          return JSON.parse(match[1]!) as unknown;
        }
        const { value, done } = await reader.read();
        assert.ok(!done, `stream ended before a ${name} event`);
        buffered += value;
      }
    };
    try {
      const snapshot = (await nextEvent('snapshot')) as { jobs: unknown[]; agents: unknown[] };
      assert.ok(Array.isArray(snapshot.jobs) && Array.isArray(snapshot.agents), `the snapshot lacks jobs or agents: ${JSON.stringify(snapshot)}`);
      const id = await submit({ image: 'img', labels: { queue: 'events' } });
      assert.deepEqual(((await nextEvent('job')) as JobView).id, id);
      await pollJobs('events', 1, 'events-agent');
      // Events of one job come in order; other jobs' may come between them.
      const nextOf = async (id: string): Promise<JobView> => {
        for (;;) {
          const job = (await nextEvent('job')) as JobView;
          if (job.id === id) return job;
        }
      };
      assert.equal((await nextOf(id)).status, 'assigned');
      await callback(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5' });
      assert.equal((await nextOf(id)).progress, 0.5);
    } finally {
      controller.abort();
    }
  });

  it('serves the dashboard page to a signed-in browser', async () => {
    const response = await fetch(`${base}/`, { headers: { cookie: `foreman_session=${ADMIN_TOKEN}` } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await response.text(), /<title>foreman control server<\/title>/);
  });
});

describe('reference control server persistence', () => {
  it('keeps jobs, assignments and seen deliveries across a restart on the same database', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-restart-'));
    const dbPath = join(dir, 'cs.db');
    try {
      let running = await start(dbPath);
      const post = (body: unknown) =>
        fetch(`${running.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const assignedId = ((await json(await post({ image: 'img', body: { keep: true } }))) as { id: string }).id;
      const handed = await fetch(`${running.base}/job`, { headers: { authorization: `Bearer ${TOKEN}`, 'x-foreman-agent-id': 'restart-agent' } });
      assert.equal(((await json(handed)) as HandedJob[])[0]?.id, assignedId);
      const queuedId = ((await json(await post({ image: 'img', labels: { never: 'matched' } }))) as { id: string }).id;
      const progress = {
        'x-foreman-job-status': 'running',
        'x-foreman-job-progress': '0.5',
        'x-foreman-delivery-id': 'before-restart',
        'x-foreman-delivery-seq': '5',
      };
      const { callbackUrl } = (await running.server.jobUrls(assignedId, running.base))!;
      assert.equal((await fetch(callbackUrl, { method: 'PUT', headers: progress })).status, 200);
      await running.server.close();

      running = await start(dbPath);
      const again = (await running.server.jobUrls(assignedId, running.base))!.callbackUrl;
      assert.equal(new URL(again).search, new URL(callbackUrl).search, "the job's secret survives the restart");
      const jobs = (await json(await fetch(`${running.base}/jobs`))) as JobView[];
      assert.deepEqual(
        jobs.map((job) => [job.id, job.status, job.progress, job.agentId]),
        [
          [queuedId, 'queued', null, null],
          [assignedId, 'running', 0.5, 'restart-agent'],
        ],
      );
      // The delivery id and sequence survive too.
      const replay = await fetch(again, { method: 'PUT', headers: { ...progress, 'x-foreman-job-progress': '0.9' } });
      assert.equal(replay.status, 200);
      const older = await fetch(again, {
        method: 'PUT',
        headers: { ...progress, 'x-foreman-delivery-id': 'older', 'x-foreman-delivery-seq': '4', 'x-foreman-job-progress': '0.1' },
      });
      assert.equal(older.status, 200);
      assert.equal(((await json(await fetch(`${running.base}/jobs/${assignedId}`))) as JobView).progress, 0.5);
      await running.server.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('uses publicUrl for callback and logs URLs when given', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-public-'));
    const running = await start(join(dir, 'cs.db'), { publicUrl: 'https://control.example.test/base/' });
    try {
      const created = await fetch(`${running.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"image":"img"}' });
      const { id } = (await json(created)) as { id: string };
      const handed = (await json(await fetch(`${running.base}/job`, { headers: { authorization: `Bearer ${TOKEN}` } }))) as HandedJob[];
      assert.match(handed[0]?.callbackUrl ?? '', new RegExp(`^https://control\\.example\\.test/base/job/${id}\\?secret=[\\w-]{43}$`));
      assert.match(handed[0]?.logsUrl ?? '', new RegExp(`^https://control\\.example\\.test/base/job/${id}/logs\\?secret=[\\w-]{43}$`));
    } finally {
      await running.server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a token', async () => {
    await assert.rejects(createControlServer({ database: ':memory:', tokens: [''], adminTokens: [ADMIN_TOKEN] }), /at least one agent token/);
    await assert.rejects(createControlServer({ database: ':memory:', tokens: [TOKEN], adminTokens: [] }), /at least one admin token/);
  });
});

describe('the control server command', () => {
  it('--token-file (CS_TOKEN_FILE) reads the tokens agents may use from a file, one a line; an unreadable one is exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-main-'));
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawn(
        process.execPath,
        ['--import', 'tsx', 'test/support/foreman.ts', 'server', '--port', '0', '--db', join(dir, 'cs.db'), '--admin-token', 'admin', ...args],
        {
          cwd: join(import.meta.dirname, '..'),
          env: { PATH: process.env.PATH ?? '', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
    try {
      await writeFile(join(dir, 'tokens'), 'from-file-1\nfrom-file-2\n', { mode: 0o600 });
      const child = run([], { CS_TOKEN_FILE: join(dir, 'tokens') });
      try {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
        const deadline = Date.now() + 20_000;
        while (!/dashboard: (http:\/\/\S+)\//.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
        const base = /dashboard: (http:\/\/\S+)\//.exec(out)?.[1];
        assert.ok(base, `the server started: ${out}`);
        for (const [token, status] of [
          ['from-file-1', 200],
          ['from-file-2', 200],
          ['other', 401],
        ] as const) {
          const response = await fetch(`${base}/job`, { headers: { authorization: `Bearer ${token}`, 'x-foreman-capacity': '0' } });
          assert.equal(response.status, status, `a poll with ${token}`);
        }
      } finally {
        child.kill('SIGTERM');
        await once(child, 'close');
      }
      const missing = run(['--token-file', join(dir, 'nope')]);
      let err = '';
      missing.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
      const [code] = (await once(missing, 'close')) as [number | null];
      assert.equal(code, 2, 'an unreadable token file is a usage error');
      assert.match(err, /^foreman: cannot read the token file .*nope: ENOENT/, err);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
