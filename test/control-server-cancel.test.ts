import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { formatLabelsHeader, parseCancelHeader } from '../packages/control-server-kit/index.ts';
import { createControlServer } from '../src/server/app.ts';
import type { ControlServer } from '../src/server/app.ts';
import type { AgentView, JobView } from '../src/server/store.ts';
import { ADMIN_TOKEN, onPostgres, operatorFetch, testDatabase } from './support/control-server.ts';

/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();

const TOKEN = 'cancel-test-token';
const AGENT_TIMEOUT_MS = 300;

/** One control server on its own database; agents in these tests are plain HTTP calls. */
class Server {
  private constructor(
    readonly server: ControlServer,
    readonly base: string,
  ) {}

  static async start(dbPath: string, agentTimeoutMs = AGENT_TIMEOUT_MS): Promise<Server> {
    const server = await createControlServer({ database: await testDatabase(dbPath), tokens: [TOKEN], adminTokens: [ADMIN_TOKEN], agentTimeoutMs });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    return new Server(server, `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`);
  }

  async submit(job: Record<string, unknown>): Promise<string> {
    const response = await fetch(`${this.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(job) });
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { id: string }).id;
  }

  /** Polls as `agent`; returns the ids handed out and the raw x-foreman-cancel header. */
  async poll(agent: string, queue: string, capacity: number): Promise<{ ids: string[]; cancel: string | null }> {
    const response = await fetch(`${this.base}/job`, {
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'x-foreman-agent-id': agent,
        'x-foreman-labels': formatLabelsHeader({ queue }),
        'x-foreman-capacity': String(capacity),
      },
    });
    assert.equal(response.status, 200, await response.clone().text());
    const jobs = (await response.json()) as Array<{ id: string; callbackUrl: string }>;
    return { ids: jobs.map((job) => job.id), cancel: response.headers.get('x-foreman-cancel') };
  }

  /** A forwarded update, as the agent sends it. */
  async report(id: string, agent: string | undefined, headers: Record<string, string>, body?: unknown) {
    const url = (await this.server.jobUrls(id, this.base))?.callbackUrl ?? `${this.base}/job/${encodeURIComponent(id)}`;
    const response = await fetch(url, {
      method: 'PUT',
      headers: {
        ...(agent === undefined ? {} : { 'x-foreman-agent-id': agent }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return {
      status: response.status,
      body: (await response.json()) as { applied?: boolean; reason?: string },
      cancel: response.headers.get('x-foreman-cancel'),
    };
  }

  async cancel(id: string): Promise<{ status: number; body: JobView & { error?: string } }> {
    const response = await fetch(`${this.base}/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    return { status: response.status, body: (await response.json()) as JobView & { error?: string } };
  }

  async job(id: string): Promise<JobView> {
    const response = await fetch(`${this.base}/jobs/${encodeURIComponent(id)}`);
    assert.equal(response.status, 200);
    return (await response.json()) as JobView;
  }

  async agent(id: string): Promise<AgentView | undefined> {
    return ((await (await fetch(`${this.base}/agents`)).json()) as AgentView[]).find((agent) => agent.id === id);
  }
}

/** Retries `check` until it returns a value, failing with `what` after the deadline. */
async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await delay(20);
  }
}

const CANCELED_REPORT = { outcome: 'canceled', reason: 'cancel', message: 'canceled by the control server', exitCode: 143 };
// Delivery ids are unique across jobs, as the agent's UUIDs are.
const finalHeaders = (seq: number) => ({
  'x-foreman-job-status': 'completed',
  'x-foreman-job-outcome': 'canceled',
  'x-foreman-delivery-id': randomUUID(),
  'x-foreman-delivery-seq': String(seq),
});
const running = (seq: number, progress: string) => ({
  'x-foreman-job-status': 'running',
  'x-foreman-job-progress': progress,
  'x-foreman-delivery-id': randomUUID(),
  'x-foreman-delivery-seq': String(seq),
});

describe('control server: cancel and lost agents', () => {
  let dir: string;
  let cs: Server;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-cancel-'));
    // Long enough that no agent here is lost while a test runs; the lost-agent tests start their own.
    cs = await Server.start(join(dir, 'shared.db'), 60_000);
  });
  after(async () => {
    await cs.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('cancels a queued job at once: status canceled, never handed out, and 404/409 for unknown and ended jobs', async () => {
    const id = await cs.submit({ image: 'img', labels: { queue: 'queued-cancel' } });
    const canceled = await cs.cancel(id);
    assert.equal(canceled.status, 202);
    assert.deepEqual([canceled.body.status, canceled.body.outcome, canceled.body.cancelRequested], ['canceled', 'canceled', true]);
    assert.deepEqual(await cs.poll('queued-agent', 'queued-cancel', 5), { ids: [], cancel: null });
    assert.equal((await cs.job(id)).status, 'canceled');

    const again = await cs.cancel(id);
    assert.equal(again.status, 409);
    assert.match(again.body.error ?? '', /has already ended \(canceled, canceled\)/);
    const unknown = await cs.cancel('no-such-job');
    assert.deepEqual([unknown.status, unknown.body], [404, { error: 'unknown job no-such-job' }]);
    // The body is ignored, even an empty one claiming to be JSON (as `curl -H 'content-type: application/json'` sends).
    const empty = await fetch(`${cs.base}/jobs/${id}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    assert.equal(empty.status, 409);

    // A report for a job the server ended is acknowledged and changes nothing.
    const before = await cs.job(id);
    const late = await cs.report(id, undefined, running(1, '0.5'));
    assert.deepEqual([late.status, late.body.applied], [200, false]);
    assert.deepEqual(await cs.job(id), before);
  });

  it('puts a held job in x-foreman-cancel on its agent polls and its callback replies until the final update', async () => {
    const id = 'a,b/ü';
    const other = 'second job';
    assert.equal(await cs.submit({ id, image: 'img', labels: { queue: 'held' } }), id);
    await cs.submit({ id: other, image: 'img', labels: { queue: 'held' } });
    assert.deepEqual((await cs.poll('holder', 'held', 2)).ids, [id, other]);
    assert.equal((await cs.poll('holder', 'held', 0)).cancel, null);

    const requested = await cs.cancel(id);
    assert.equal(requested.status, 202);
    assert.deepEqual([requested.body.status, requested.body.cancelRequested, requested.body.outcome], ['assigned', true, null]);
    // A second request changes nothing: the cancel has been pending since the first.
    assert.equal((await cs.cancel(id)).body.cancelRequestedAt, requested.body.cancelRequestedAt);

    // A full agent still polls (capacity 0): that poll carries the cancel, percent-encoded.
    assert.equal((await cs.poll('holder', 'held', 0)).cancel, 'a%2Cb%2F%C3%BC');
    assert.equal((await cs.poll('someone-else', 'held', 0)).cancel, null);
    await cs.cancel(other);
    const both = await cs.poll('holder', 'held', 0);
    assert.deepEqual(parseCancelHeader(both.cancel), [id, other], 'oldest request first');
    assert.equal(both.cancel, `${encodeURIComponent(id)},${encodeURIComponent(other)}`);

    // Updates the container sends during the grace period apply, and their replies repeat the cancel.
    const grace = await cs.report(id, 'holder', running(1, '0.4'));
    assert.deepEqual([grace.status, grace.body.applied, grace.cancel], [200, true, 'a%2Cb%2F%C3%BC']);
    assert.deepEqual([(await cs.job(id)).status, (await cs.job(id)).progress], ['running', 0.4]);

    const finalUpdate = finalHeaders(2);
    const final = await cs.report(id, 'holder', finalUpdate, CANCELED_REPORT);
    assert.deepEqual([final.status, final.body.applied, final.cancel], [200, true, null]);
    const ended = await cs.job(id);
    assert.deepEqual([ended.status, ended.outcome, ended.result, ended.cancelRequested], ['completed', 'canceled', CANCELED_REPORT, true]);
    assert.deepEqual(parseCancelHeader((await cs.poll('holder', 'held', 0)).cancel), [other]);
    const retried = await cs.report(id, 'holder', finalUpdate, CANCELED_REPORT);
    assert.deepEqual([retried.body.reason, retried.cancel], ['duplicate', null]);
    assert.equal((await cs.cancel(id)).status, 409);

    // The agent may report its own outcome: the job ends with it.
    await cs.report(other, 'holder', { ...finalHeaders(1), 'x-foreman-job-outcome': 'succeeded' });
    assert.deepEqual([(await cs.job(other)).status, (await cs.job(other)).outcome], ['completed', 'succeeded']);
    assert.equal((await cs.poll('holder', 'held', 0)).cancel, null);
  });

  it('keeps one x-foreman-cancel under 8 KiB and sends the rest once earlier jobs end', async () => {
    const ids = Array.from({ length: 10 }, (_, n) => `${n}-${'ü'.repeat(200)}`);
    for (const id of ids) await cs.submit({ id, image: 'img', labels: { queue: 'many' } });
    assert.equal((await cs.poll('many-agent', 'many', 10)).ids.length, 10);
    for (const id of ids) assert.equal((await cs.cancel(id)).status, 202);
    const first = await cs.poll('many-agent', 'many', 0);
    assert.ok(first.cancel !== null && first.cancel.length <= 8192, `${first.cancel?.length}`);
    const sent = parseCancelHeader(first.cancel);
    assert.ok(sent.length > 0 && sent.length < ids.length, `${sent.length} ids in one header`);
    assert.deepEqual(sent, ids.slice(0, sent.length));
    for (const id of sent) await cs.report(id, 'many-agent', finalHeaders(1), CANCELED_REPORT);
    assert.deepEqual(parseCancelHeader((await cs.poll('many-agent', 'many', 0)).cancel), ids.slice(sent.length));
  });

  it('accepts a job id from POST /jobs, refusing duplicates and ids an agent cannot take', async () => {
    await cs.submit({ id: 'chosen-id', image: 'img', labels: { queue: 'ids' } });
    const post = (body: string) => fetch(`${cs.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const duplicate = await post('{"id":"chosen-id","image":"img"}');
    assert.deepEqual([duplicate.status, await duplicate.json()], [409, { error: 'job chosen-id already exists' }]);
    for (const [body, expected] of [
      ['{"id":"","image":"img"}', /body\.id must not have fewer than 1 characters/],
      [`{"id":"${'x'.repeat(257)}","image":"img"}`, /body\.id must not have more than 256 characters/],
      ['{"id":"\\ud800","image":"img"}', /body\.id must be well-formed Unicode/],
    ] as const) {
      const response = await post(body);
      assert.equal(response.status, 400, body);
      assert.match(((await response.json()) as { error: string }).error, expected);
    }
  });
});

describe('control server: lost agents', () => {
  let dir: string;
  let cs: Server;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-lost-'));
    cs = await Server.start(join(dir, 'cs.db'));
  });
  after(async () => {
    await cs.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Polls as `agent` (a heartbeat) until it is handed `count` jobs, or fails after the deadline. */
  const pollUntilHanded = (agent: string, queue: string, count: number) =>
    until(`${agent} to be handed ${count} job(s)`, async () => {
      const { ids } = await cs.poll(agent, queue, count);
      return ids.length > 0 ? ids : undefined;
    });

  it('requeues the unfinished jobs of an agent that stops polling, in order, and ignores its late reports', async () => {
    const first = await cs.submit({ image: 'img', labels: { queue: 'lost' } });
    const second = await cs.submit({ image: 'img', labels: { queue: 'lost' } });
    assert.deepEqual((await cs.poll('gone', 'lost', 2)).ids, [first, second]);
    await cs.report(first, 'gone', running(7, '0.5'));

    // "gone" now falls silent; "taker" keeps polling and gets both, oldest first.
    assert.deepEqual(await pollUntilHanded('taker', 'lost', 2), [first, second]);
    const requeued = await cs.job(first);
    assert.deepEqual([requeued.status, requeued.agentId, requeued.progress, requeued.requeues], ['assigned', 'taker', null, 1]);
    assert.deepEqual([(await cs.agent('gone'))?.lost, (await cs.agent('taker'))?.lost], [true, false]);

    // The old agent's late updates are acknowledged, change nothing, and tell its copy to stop.
    const late = await cs.report(first, 'gone', running(8, '0.9'));
    assert.deepEqual([late.status, late.body.reason, late.cancel], [200, 'other-agent', encodeURIComponent(first)]);
    const lateFinal = await cs.report(first, 'gone', { ...finalHeaders(9), 'x-foreman-job-outcome': 'succeeded' }, { answer: 1 });
    assert.deepEqual([lateFinal.status, lateFinal.body.applied, lateFinal.cancel], [200, false, null]);
    assert.deepEqual(await cs.job(first), requeued);

    // The new agent's sequence starts again at 1.
    assert.equal((await cs.report(first, 'taker', running(1, '0.2'))).body.applied, true);
    assert.deepEqual([(await cs.job(first)).status, (await cs.job(first)).progress], ['running', 0.2]);

    // Back again, the old agent is live.
    await cs.poll('gone', 'lost', 0);
    assert.equal((await cs.agent('gone'))?.lost, false);
  });

  it('never hands a job back to an agent whose copy of it ended', async () => {
    const id = await cs.submit({ image: 'img', labels: { queue: 'ended-copy' } });
    assert.deepEqual((await cs.poll('first', 'ended-copy', 1)).ids, [id]);
    assert.deepEqual(await pollUntilHanded('second', 'ended-copy', 1), [id]);
    await cs.report(id, 'first', finalHeaders(3), CANCELED_REPORT);
    // Now "second" falls silent while "first" keeps polling: the job goes back, but not to "first".
    await until('the job to be requeued again', async () =>
      (await cs.poll('first', 'ended-copy', 1)).ids.length === 0 && (await cs.job(id)).requeues === 2 ? true : undefined,
    );
    assert.equal((await cs.job(id)).status, 'queued');
    assert.deepEqual((await cs.poll('third', 'ended-copy', 1)).ids, [id]);
  });

  it('gives a requeued job back to its old agent when that agent reports on it first', async () => {
    const id = await cs.submit({ image: 'img', labels: { queue: 'claim' } });
    assert.deepEqual((await cs.poll('pausing', 'claim', 1)).ids, [id]);
    await until('the job to be requeued', async () => ((await cs.job(id)).status === 'queued' ? true : undefined));
    // The agent is back (e.g. restarted, having re-adopted the container, which still runs) and reports again.
    await cs.poll('pausing', 'claim', 0);
    const resumed = await cs.report(id, 'pausing', running(4, '0.6'));
    assert.deepEqual([resumed.body.applied, resumed.cancel], [true, null]);
    const job = await cs.job(id);
    assert.deepEqual([job.status, job.agentId, job.progress], ['running', 'pausing', 0.6]);
  });

  it('cancels, rather than requeues, a cancel-requested job whose agent is lost', async () => {
    const id = await cs.submit({ image: 'img', labels: { queue: 'lost-cancel' } });
    assert.deepEqual((await cs.poll('vanishing', 'lost-cancel', 1)).ids, [id]);
    assert.equal((await cs.cancel(id)).status, 202);
    const job = await until('the job to be canceled', async () => {
      const current = await cs.job(id);
      return current.status === 'canceled' ? current : undefined;
    });
    assert.deepEqual([job.outcome, (job.result as { reason: string }).reason, job.requeues], ['canceled', 'agent-lost', 0]);
    assert.deepEqual((await cs.poll('other', 'lost-cancel', 1)).ids, []);
    // Should the old agent's copy still run, its next update is told to stop.
    assert.equal((await cs.report(id, 'vanishing', running(2, '0.3'))).cancel, encodeURIComponent(id));
  });
});

describe('control server: restarts', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-restart-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('keeps a cancel request across a restart', async () => {
    const dbPath = join(dir, 'cancel.db');
    let cs = await Server.start(dbPath, 60_000);
    try {
      const id = await cs.submit({ id: 'survivor/1', image: 'img', labels: { queue: 'restart' } });
      assert.deepEqual((await cs.poll('steady', 'restart', 1)).ids, [id]);
      assert.equal((await cs.cancel(id)).status, 202);
      await cs.server.close();
      cs = await Server.start(dbPath, 60_000);
      const job = await cs.job(id);
      assert.deepEqual([job.status, job.cancelRequested], ['assigned', true]);
      assert.equal((await cs.poll('steady', 'restart', 0)).cancel, 'survivor%2F1');
    } finally {
      await cs.server.close();
    }
  });

  it('opens a database written before cancels and lost agents existed', { skip: onPostgres ? 'a SQLite file of the first release' : false }, async () => {
    const dbPath = join(dir, 'old.db');
    const old = new Database(dbPath);
    old.exec(`CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, image TEXT NOT NULL, command TEXT, env TEXT,
        body TEXT NOT NULL, labels TEXT NOT NULL, always_pull INTEGER, status TEXT NOT NULL, progress REAL, outcome TEXT, result TEXT,
        agent_id TEXT, last_seq INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE agents (id TEXT PRIMARY KEY, labels TEXT NOT NULL, capacity INTEGER NOT NULL, user_agent TEXT,
        last_poll_at INTEGER NOT NULL, first_seen_at INTEGER NOT NULL);
      INSERT INTO jobs (id, image, body, labels, status, agent_id, created_at, updated_at) VALUES ('old-job', 'img', 'null', '{}', 'assigned', 'old-agent', 1, 1);
      INSERT INTO agents VALUES ('old-agent', '{}', 1, NULL, ${Date.now()}, 1);`);
    old.close();
    const cs = await Server.start(dbPath, 60_000);
    try {
      const job = await cs.job('old-job');
      assert.deepEqual([job.status, job.cancelRequested, job.requeues], ['assigned', false, 0]);
      assert.equal((await cs.agent('old-agent'))?.lost, false);
      assert.equal((await cs.cancel('old-job')).status, 202);
      assert.equal((await cs.poll('old-agent', 'any', 0)).cancel, 'old-job');
    } finally {
      await cs.server.close();
    }
  });

  it('gives agents a full agent timeout to poll a restarted server before it requeues their jobs', async () => {
    const dbPath = join(dir, 'floor.db');
    let cs = await Server.start(dbPath);
    try {
      const id = await cs.submit({ image: 'img', labels: { queue: 'floor' } });
      assert.deepEqual((await cs.poll('patient', 'floor', 1)).ids, [id]);
      const lastPoll = Date.now();
      await cs.server.close();
      // The server is down for longer than the agent timeout, so the agent could not have polled.
      await until('the agent timeout to pass', () => (Date.now() - lastPoll > 2 * AGENT_TIMEOUT_MS ? true : undefined));
      const restartedAt = Date.now();
      cs = await Server.start(dbPath);
      const early = await cs.job(id);
      // Timers never fire early, so this holds on a slow machine too (the check is skipped if we got here late).
      if (Date.now() - restartedAt < AGENT_TIMEOUT_MS) assert.equal(early.status, 'assigned', 'judged by the time the server was down');
      await until('the job to be requeued', async () => ((await cs.job(id)).status === 'queued' ? true : undefined));
    } finally {
      await cs.server.close();
    }
  });
});
