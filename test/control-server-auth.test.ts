/**
 * Who may do what on the reference control server, and what it keeps: agent, admin and read-only tokens; the
 * dashboard's cookie and cross-site requests; each job's secret in its callback and logs URLs; body limits and the
 * queue cap; paging and filters of GET /jobs; retention. Also run on PostgreSQL (test/control-server-postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatLabelsHeader } from '../packages/control-server-kit/index.ts';
import { ManualClock } from '../src/testing/clock-kit.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, READ_TOKEN, startControlServer } from './support/control-server.ts';
import type { RunningServer } from './support/control-server.ts';
import type { JobView } from '../src/server/rows.ts';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const reader = { authorization: `Bearer ${READ_TOKEN}` };

describe('reference control server: who may do what', () => {
  let dir: string;
  let cs: RunningServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-auth-'));
    cs = await startControlServer({ database: join(dir, 'cs.db'), maxQueuedJobs: 40, maxJobBytes: 4096 });
  });
  after(async () => {
    await cs?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const submit = async (job: Record<string, unknown>, headers: Record<string, string> = admin): Promise<Response> =>
    fetch(`${cs.base}/jobs`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(job) });
  const submitted = async (job: Record<string, unknown>): Promise<string> => {
    const response = await submit(job);
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { id: string }).id;
  };
  const poll = async (queue: string, agent: string, capacity = 1) =>
    (await (
      await fetch(`${cs.base}/job`, {
        headers: {
          authorization: `Bearer ${AGENT_TOKEN}`,
          'x-foreman-labels': formatLabelsHeader({ queue }),
          'x-foreman-agent-id': agent,
          'x-foreman-capacity': String(capacity),
        },
      })
    ).json()) as Array<{ id: string; callbackUrl: string; logsUrl: string }>;
  const view = async (id: string): Promise<JobView> =>
    (await (await fetch(`${cs.base}/jobs/${encodeURIComponent(id)}`, { headers: reader })).json()) as JobView;

  it('operator endpoints answer 401 with a JSON error without an admin or read-only token, and an agent token is none', async () => {
    const id = await submitted({ image: 'img', labels: { queue: 'auth-401' } });
    const endpoints: Array<[string, string]> = [
      ['POST', '/jobs'],
      ['POST', `/jobs/${id}/cancel`],
      ['GET', '/jobs'],
      ['GET', `/jobs/${id}`],
      ['GET', `/jobs/${id}/logs`],
      ['GET', `/jobs/${id}/logs/events`],
      ['GET', '/agents'],
      ['GET', '/events'],
    ];
    const strangers: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${AGENT_TOKEN}` },
      { authorization: 'Bearer nobody' },
      { cookie: 'foreman_session=nobody' },
    ];
    for (const headers of strangers) {
      for (const [method, path] of endpoints) {
        const response = await fetch(`${cs.base}${path}`, {
          method,
          headers: { ...headers, ...(method === 'POST' && path === '/jobs' ? { 'content-type': 'application/json' } : {}) },
          ...(method === 'POST' && path === '/jobs' ? { body: '{"image":"evil"}' } : {}),
        });
        assert.equal(response.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
        assert.match(response.headers.get('content-type') ?? '', /application\/json/, `${method} ${path} answers JSON`);
        assert.match(((await response.json()) as { error: string }).error, /token/, `${method} ${path} says a token is needed`);
      }
    }
    assert.deepEqual(await view(id).then((job) => job.status), 'queued', 'nothing was canceled');
    // And the poll takes agent tokens only.
    const byAdmin = await fetch(`${cs.base}/job`, { headers: admin });
    assert.equal(byAdmin.status, 401, 'an admin token is not an agent token');
  });

  it('a read-only token sees jobs, agents, logs and events, and may not submit or cancel (403)', async () => {
    const id = await submitted({ image: 'img', labels: { queue: 'auth-read' } });
    for (const path of ['/jobs', `/jobs/${id}`, `/jobs/${id}/logs`, '/agents']) {
      assert.equal((await fetch(`${cs.base}${path}`, { headers: reader })).status, 200, `GET ${path}`);
    }
    const events = new AbortController();
    const stream = await fetch(`${cs.base}/events`, { headers: reader, signal: events.signal });
    assert.equal(stream.status, 200, 'GET /events');
    events.abort();
    const refused = await submit({ image: 'img' }, reader);
    assert.equal(refused.status, 403, 'POST /jobs');
    assert.match(((await refused.json()) as { error: string }).error, /read, not submit or cancel/);
    const cancel = await fetch(`${cs.base}/jobs/${id}/cancel`, { method: 'POST', headers: reader });
    assert.equal(cancel.status, 403, 'POST /jobs/<id>/cancel');
    assert.equal((await view(id)).status, 'queued', 'still queued');
  });

  it('the sign-in trades a token for an HttpOnly SameSite=Strict cookie; a change by cookie needs the dashboard’s header and origin', async () => {
    const signIn = await fetch(`${cs.base}/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: ADMIN_TOKEN }),
    });
    assert.equal(signIn.status, 200);
    assert.deepEqual(await signIn.json(), { role: 'admin' });
    const setCookie = signIn.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^foreman_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/, setCookie);
    const cookie = setCookie.split(';')[0]!;
    assert.equal((await fetch(`${cs.base}/jobs`, { headers: { cookie } })).status, 200, 'reads with the cookie');
    const dashboard = await fetch(`${cs.base}/`, { headers: { cookie }, redirect: 'manual' });
    assert.equal(dashboard.status, 200, 'the dashboard with the cookie');
    const signedOut = await fetch(`${cs.base}/`, { redirect: 'manual' });
    assert.deepEqual([signedOut.status, signedOut.headers.get('location')], [303, 'signin'], 'without it, the sign-in page');

    const body = JSON.stringify({ image: 'img', labels: { queue: 'auth-cookie' } });
    const json = { 'content-type': 'application/json' };
    const bare = await fetch(`${cs.base}/jobs`, { method: 'POST', headers: { cookie, ...json }, body });
    assert.equal(bare.status, 403, 'a cookie alone (a cross-site form could send it) may not submit');
    const crossSite = await fetch(`${cs.base}/jobs`, {
      method: 'POST',
      headers: { cookie, ...json, 'x-requested-with': 'foreman-dashboard', origin: 'http://evil.example' },
      body,
    });
    assert.equal(crossSite.status, 403, 'nor from another origin');
    const own = await fetch(`${cs.base}/jobs`, {
      method: 'POST',
      headers: { cookie, ...json, 'x-requested-with': 'foreman-dashboard', origin: cs.base },
      body,
    });
    assert.equal(own.status, 201, "the dashboard's own request");
    const wrong = await fetch(`${cs.base}/session`, { method: 'POST', headers: json, body: JSON.stringify({ token: AGENT_TOKEN }) });
    assert.equal(wrong.status, 401, 'an agent token does not sign in');
    const out = await fetch(`${cs.base}/session`, { method: 'DELETE', headers: { cookie } });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie') ?? '', /^foreman_session=; .*Max-Age=0/, 'signing out clears the cookie');
  });

  it("a report or log batch without the job's secret, or with another job's, gets 401 and changes nothing", async () => {
    await submitted({ image: 'img', labels: { queue: 'auth-secret' } });
    await submitted({ image: 'img', labels: { queue: 'auth-secret' } });
    const [mine, other] = await poll('auth-secret', 'secret-agent', 2);
    assert.ok(mine !== undefined && other !== undefined, 'two jobs handed out');
    const plain = `${cs.base}/job/${encodeURIComponent(mine.id)}`;
    const otherSecret = new URL(other.callbackUrl).searchParams.get('secret')!;
    const running = { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5', 'x-foreman-agent-id': 'secret-agent' };
    const completed = { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'secret-agent', 'content-type': 'application/json' };
    for (const url of [plain, `${plain}?secret=`, `${plain}?secret=wrong`, `${plain}?secret=${otherSecret}`, `${plain}?token=${otherSecret}`]) {
      const forged = await fetch(url, { method: 'PUT', headers: completed, body: '{"forged":true}' });
      assert.equal(forged.status, 401, url);
      assert.match(((await forged.json()) as { error: string }).error, /job secret/);
      const logs = await fetch(url.replace(/(\?|$)/, '/logs$1'), {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'x-foreman-log-offset': '0' },
        body: '{"i":0,"ts":"2026-01-01T00:00:00Z","stream":"stdout","text":"forged"}\n',
      });
      assert.equal(logs.status, 401, `${url} (logs)`);
    }
    assert.deepEqual([(await view(mine.id)).status, (await view(mine.id)).logLines], ['assigned', 0], 'nothing changed');
    assert.equal((await fetch(mine.callbackUrl, { method: 'PUT', headers: running })).status, 200, 'the real URL works');
    assert.equal((await fetch(mine.callbackUrl, { method: 'PUT', headers: completed, body: '{"ok":1}' })).status, 200);
    const late = await fetch(`${plain}?secret=wrong`, { method: 'PUT', headers: completed, body: '{"late":1}' });
    assert.equal(late.status, 401, 'a late forged report too');
    const done = (await (await fetch(`${cs.base}/jobs/${mine.id}`, { headers: reader })).json()) as JobView & { result: unknown };
    assert.deepEqual([done.status, done.outcome, done.result], ['completed', 'succeeded', { ok: 1 }]);
    const unknown = await fetch(`${cs.base}/job/no-such-job?secret=${otherSecret}`, { method: 'PUT', headers: completed });
    assert.equal(unknown.status, 404, 'an unknown job is 404');
  });

  it('refuses a job body over the limit (413), and submits past the queue cap (429), each with a JSON error', async () => {
    const big = await submit({ image: 'img', body: 'x'.repeat(5000) });
    assert.equal(big.status, 413);
    assert.match(((await big.json()) as { error: string }).error, /larger than this endpoint takes \(4096 bytes\)/);
    const queued = (await (await fetch(`${cs.base}/jobs?status=queued&limit=500`, { headers: reader })).json()) as unknown[];
    for (let n = queued.length; n < 40; n++) await submitted({ image: 'img', labels: { queue: 'auth-never' } });
    const full = await submit({ image: 'img' });
    assert.equal(full.status, 429);
    assert.equal(full.headers.get('retry-after'), '10');
    assert.match(((await full.json()) as { error: string }).error, /^the queue is full: 40 jobs are queued/);
    // Cancel the filler so the other tests have room.
    for (const job of (await (await fetch(`${cs.base}/jobs?status=queued&limit=500`, { headers: reader })).json()) as Array<{ id: string }>) {
      await fetch(`${cs.base}/jobs/${encodeURIComponent(job.id)}/cancel`, { method: 'POST', headers: admin });
    }
    const callbackLimit = await fetch(`${cs.base}/job/x?secret=y`, {
      method: 'PUT',
      headers: { 'x-foreman-job-status': 'running' },
      body: Buffer.alloc(16 * 1024 * 1024 + 1),
    });
    assert.equal(callbackLimit.status, 413, 'a callback body over 16 MiB');
    assert.match(((await callbackLimit.json()) as { error: string }).error, /larger than this endpoint takes/);
  });

  it('pages through GET /jobs with a cursor in the Link header, and filters by status, label and agent', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 12; n++) ids.push(await submitted({ image: 'img', labels: { queue: 'paging', parity: n % 2 === 0 ? 'even' : 'odd' } }));
    const taken = await poll('paging', 'paging-agent', 3);
    const seen: string[] = [];
    let url: string | undefined = `${cs.base}/jobs?limit=5&label=queue=paging`;
    let pages = 0;
    while (url !== undefined) {
      const response = await fetch(url, { headers: reader });
      assert.equal(response.status, 200, url);
      seen.push(...((await response.json()) as JobView[]).map((job) => job.id));
      const next = /^<([^>]+)>; rel="next"$/.exec(response.headers.get('link') ?? '')?.[1];
      url = next === undefined ? undefined : `${cs.base}${next}`;
      pages++;
    }
    assert.equal(pages, 3, 'three pages of at most 5');
    assert.deepEqual(seen, [...ids].reverse(), 'every job once, newest first');
    const even = (await (await fetch(`${cs.base}/jobs?label=queue=paging&label=parity=even`, { headers: reader })).json()) as JobView[];
    assert.equal(even.length, 6, 'two labels');
    const assigned = (await (await fetch(`${cs.base}/jobs?status=assigned,running&label=queue=paging`, { headers: reader })).json()) as JobView[];
    assert.deepEqual(assigned.map((job) => job.id).sort(), taken.map((job) => job.id).sort(), 'by status');
    const byAgent = (await (await fetch(`${cs.base}/jobs?agent=paging-agent`, { headers: reader })).json()) as JobView[];
    assert.deepEqual(byAgent.map((job) => job.id).sort(), taken.map((job) => job.id).sort(), 'by agent');
    const bad = await fetch(`${cs.base}/jobs?status=done`, { headers: reader });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /status "done" is not one of/);
  });
});

describe('reference control server: retention', () => {
  it('deletes ended jobs and their logs after the retention age, in batches, and keeps everything else', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-retention-'));
    const clock = new ManualClock(Date.now());
    const cs = await startControlServer({ database: join(dir, 'cs.db'), retentionMs: 60_000, retentionIntervalMs: 3_600_000, clock });
    try {
      const post = async (queue: string) =>
        (
          (await (
            await fetch(`${cs.base}/jobs`, {
              method: 'POST',
              headers: { ...admin, 'content-type': 'application/json' },
              body: JSON.stringify({ image: 'img', labels: { queue } }),
            })
          ).json()) as { id: string }
        ).id;
      const old = await post('retention');
      const queued = await post('retention-never');
      const polled = (await (
        await fetch(`${cs.base}/job`, { headers: { authorization: `Bearer ${AGENT_TOKEN}`, 'x-foreman-labels': 'queue=retention', 'x-foreman-agent-id': 'r' } })
      ).json()) as Array<{ callbackUrl: string; logsUrl: string }>;
      const handed = polled[0]!;
      const lines = Array.from({ length: 12_000 }, (_, i) => `${JSON.stringify({ i, ts: '2026-01-01T00:00:00Z', stream: 'stdout', text: `l${i}` })}\n`).join(
        '',
      );
      const stored = await fetch(handed.logsUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'x-foreman-log-offset': '0' },
        body: lines,
      });
      assert.equal(stored.status, 200);
      const done = await fetch(handed.callbackUrl, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'r' } });
      assert.equal(done.status, 200);
      // The job ended "now" by the server's clock; a minute later it is still kept.
      assert.equal(await cs.server.prune(), 0, 'nothing is old enough yet');
      await clock.advance(120_000);
      const fresh = await post('retention-fresh');
      assert.equal(await cs.server.prune(), 1, 'the ended job is deleted');
      assert.equal((await fetch(`${cs.base}/jobs/${old}`, { headers: admin })).status, 404, 'gone');
      assert.equal((await fetch(`${cs.base}/jobs/${old}/logs`, { headers: admin })).status, 404, 'its log too');
      for (const id of [queued, fresh]) assert.equal((await fetch(`${cs.base}/jobs/${id}`, { headers: admin })).status, 200, `${id} is kept`);
      const late = await fetch(handed.callbackUrl, { method: 'PUT', headers: { 'x-foreman-job-status': 'completed', 'x-foreman-agent-id': 'r' } });
      assert.equal(late.status, 404, 'a late report on a deleted job is 404');
    } finally {
      await cs.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
