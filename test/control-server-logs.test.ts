/** The reference control server's live job logs: POST <logsUrl> batches, GET /jobs/<id>/logs and its event stream. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createControlServer } from '../src/server/app.ts';
import type { ControlServer, ControlServerOptions } from '../src/server/app.ts';
import { ADMIN_TOKEN, operatorFetch, testDatabase } from './support/control-server.ts';
import { waitFor } from './support/wait.ts';
import type { JobView } from '../src/server/rows.ts';

/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();

const TOKEN = 'logs-token';
const TS = '2026-11-28T07:42:30.437418862Z';

interface Line {
  i: number;
  ts: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

interface Page {
  lines: Line[];
  next: number;
  total: number | null;
  complete: boolean;
}

interface Handed {
  id: string;
  callbackUrl: string;
  logsUrl: string;
}

const line = (i: number, text = `line ${i}`, stream: Line['stream'] = i % 3 === 2 ? 'stderr' : 'stdout'): Line => ({ i, ts: TS, stream, text });
const lines = (from: number, to: number, text = (i: number) => `line ${i}`): Line[] =>
  Array.from({ length: to - from }, (_, k) => line(from + k, text(from + k)));
const ndjson = (batch: Line[]): string => batch.map((l) => `${JSON.stringify(l)}\n`).join('');

async function start(dbPath: string, extra: Partial<ControlServerOptions> = {}): Promise<{ server: ControlServer; base: string }> {
  const server = await createControlServer({ database: await testDatabase(dbPath), tokens: [TOKEN], adminTokens: [ADMIN_TOKEN], ...extra });
  await server.app.listen({ host: '127.0.0.1', port: 0 });
  return { server, base: `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}` };
}

/** Reads server-sent events from a response, one at a time. */
function eventReader(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  return {
    /** The next event (named `only`, when given; comments skipped); undefined once the server ended the stream. */
    async next(only?: string): Promise<{ event: string; id: string | undefined; data: unknown } | undefined> {
      for (;;) {
        const end = buffered.indexOf('\n\n');
        if (end >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const fields = new Map(
            block
              .split('\n')
              .filter((l) => !l.startsWith(':'))
              .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)] as const),
          );
          if (!fields.has('event') || (only !== undefined && fields.get('event') !== only)) continue;
          return { event: fields.get('event')!, id: fields.get('id'), data: JSON.parse(fields.get('data') ?? 'null') as unknown };
        }
        const { value, done } = await reader.read();
        if (done) return undefined;
        buffered += value;
      }
    },
  };
}

describe('reference control server: live job logs', () => {
  let dir: string;
  let server: ControlServer;
  let base: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-cs-logs-test-'));
    ({ server, base } = await start(join(dir, 'cs.db')));
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Submits a job and has `agentId` take it; returns what GET /job handed out. */
  async function handOut(queue: string, agentId = `agent-${queue}`, id?: string): Promise<Handed> {
    const created = await fetch(`${base}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, image: 'img', labels: { queue } }),
    });
    assert.equal(created.status, 201);
    const polled = await fetch(`${base}/job`, {
      headers: { authorization: `Bearer ${TOKEN}`, 'x-foreman-labels': `queue=${queue}`, 'x-foreman-agent-id': agentId },
    });
    const handed = (await polled.json()) as Handed[];
    assert.equal(handed.length, 1);
    return handed[0]!;
  }

  async function send(url: string, batch: Line[] | string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const body = typeof batch === 'string' ? batch : ndjson(batch);
    const offset: Record<string, string> = typeof batch === 'string' || batch.length === 0 ? {} : { 'x-foreman-log-offset': String(batch[0]!.i) };
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...offset, ...headers }, body });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function logOf(id: string, query = ''): Promise<Page> {
    const response = await fetch(`${base}/jobs/${encodeURIComponent(id)}/logs${query}`);
    assert.equal(response.status, 200);
    return (await response.json()) as Page;
  }

  async function jobOf(id: string): Promise<JobView> {
    return (await (await fetch(`${base}/jobs/${encodeURIComponent(id)}`)).json()) as JobView;
  }

  it('hands out a logsUrl next to the callbackUrl, on the same base', async () => {
    const job = await handOut('logs-url', 'agent-logs-url', 'odd/id ü');
    const secret = new URL(job.callbackUrl).searchParams.get('secret') ?? '';
    assert.equal(job.callbackUrl, `${base}/job/odd%2Fid%20%C3%BC?secret=${secret}`);
    assert.equal(job.logsUrl, `${base}/job/odd%2Fid%20%C3%BC/logs?secret=${secret}`);
    // The percent-encoded id reaches the right job.
    assert.equal((await send(job.logsUrl, [line(0)])).status, 200);
    assert.deepEqual((await logOf(job.id)).lines, [line(0)]);
  });

  it('stores a batch, and a batch sent again or overlapping keeps the first copy of each line', async () => {
    const job = await handOut('store');
    const first = await send(job.logsUrl, lines(0, 3), { 'x-foreman-agent-id': 'agent-store' });
    assert.deepEqual([first.status, first.body], [200, { ok: true, stored: 3 }]);
    // The same batch again (its answer was lost), then one overlapping it, both with other text.
    const again = await send(
      job.logsUrl,
      lines(0, 3, (i) => `changed ${i}`),
      { 'x-foreman-agent-id': 'agent-store' },
    );
    assert.deepEqual([again.status, again.body], [200, { ok: true, stored: 0 }]);
    const overlapping = await send(
      job.logsUrl,
      lines(2, 5, (i) => `second copy ${i}`),
      { 'x-foreman-agent-id': 'agent-store' },
    );
    assert.deepEqual([overlapping.status, overlapping.body], [200, { ok: true, stored: 2 }]);
    assert.deepEqual(await logOf(job.id), {
      lines: [line(0), line(1), line(2), line(3, 'second copy 3'), line(4, 'second copy 4')],
      next: 5,
      total: null,
      complete: false,
    });
    const view = await jobOf(job.id);
    assert.deepEqual([view.logLines, view.logComplete], [5, false]);
  });

  it('refuses a malformed batch with a JSON 400 and stores none of it', async () => {
    const job = await handOut('malformed');
    const good = ndjson(lines(0, 2));
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      [`${good}{"i":2,"ts":"${TS}","stream":"stdout","text":"x"`, {}, /body line 3 is not valid JSON/],
      [`${good}[1,2]\n`, {}, /body line 3 is not a JSON object/],
      [`${good}{"i":2,"ts":"${TS}","stream":"stdout"}\n`, {}, /body line 3: "text" must be a string/],
      [`${good}{"i":2,"ts":"${TS}","stream":"stdlog","text":"x"}\n`, {}, /body line 3: "stream" must be "stdout" or "stderr"/],
      [`${good}{"i":2,"stream":"stdout","text":"x"}\n`, {}, /body line 3: "ts" must be a timestamp string/],
      [`${good}{"i":-2,"ts":"${TS}","stream":"stdout","text":"x"}\n`, {}, /body line 3: "i" must be a non-negative integer/],
      [`${good}${JSON.stringify(line(5))}\n`, {}, /body line 3: "i" is 5, expected 2/],
      [good, { 'x-foreman-log-offset': '1' }, /body line 1: "i" is 0, expected 1 \(x-foreman-log-offset\)/],
      [good, { 'x-foreman-log-offset': 'zero' }, /x-foreman-log-offset must be a non-negative integer/],
      [good, { 'x-foreman-log-end': '-1' }, /x-foreman-log-end must be a non-negative integer/],
    ];
    for (const [body, headers, expected] of cases) {
      const reply = await send(job.logsUrl, body, headers);
      assert.equal(reply.status, 400, body);
      assert.match(String(reply.body.error), expected);
    }
    const invalidUtf8 = await fetch(job.logsUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: Buffer.from([0x7b, 0xff, 0x7d, 0x0a]),
    });
    assert.deepEqual([invalidUtf8.status, await invalidUtf8.json()], [400, { error: 'the body is not valid UTF-8' }]);
    const wrongType = await fetch(job.logsUrl, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: good });
    assert.deepEqual([wrongType.status, await wrongType.json()], [415, { error: 'unsupported content-type text/plain: send application/x-ndjson' }]);
    assert.deepEqual(await logOf(job.id), { lines: [], next: 0, total: null, complete: false });
    assert.equal((await jobOf(job.id)).logLines, 0);
  });

  it('answers 404 with a JSON error for an unknown job', async () => {
    const unknown = 'no-such-job';
    const posted = await send(`${base}/job/${unknown}/logs`, [line(0)]);
    assert.deepEqual([posted.status, posted.body], [404, { error: `unknown job ${unknown}` }]);
    for (const path of ['logs', 'logs/events']) {
      const response = await fetch(`${base}/jobs/${unknown}/${path}`);
      assert.equal(response.status, 404, path);
      assert.deepEqual(await response.json(), { error: `unknown job ${unknown}` });
    }
  });

  it('records the log end: total and complete once every line is stored; a repeated end is fine, a contradicting one is not', async () => {
    const job = await handOut('end');
    await send(job.logsUrl, lines(0, 2));
    // The end arrives while line 2 is still missing (a client that skipped it): known total, not complete.
    const end = await send(job.logsUrl, '', { 'x-foreman-log-offset': '3', 'x-foreman-log-end': '3' });
    assert.deepEqual([end.status, end.body], [200, { ok: true, stored: 0 }]);
    assert.deepEqual(await logOf(job.id, '?from=2'), { lines: [], next: 2, total: 3, complete: false });
    await send(job.logsUrl, [line(2)]);
    assert.deepEqual(await logOf(job.id, '?from=2'), { lines: [line(2)], next: 3, total: 3, complete: true });
    assert.deepEqual([(await jobOf(job.id)).logLines, (await jobOf(job.id)).logComplete], [3, true]);

    // At-least-once: the end and the last batch sent again are acknowledged and change nothing.
    assert.equal((await send(job.logsUrl, '', { 'x-foreman-log-offset': '3', 'x-foreman-log-end': '3' })).status, 200);
    assert.equal((await send(job.logsUrl, [line(2, 'again')])).status, 200);
    assert.deepEqual((await logOf(job.id)).lines, lines(0, 3));

    const otherEnd = await send(job.logsUrl, '', { 'x-foreman-log-end': '4' });
    assert.deepEqual([otherEnd.status, otherEnd.body], [409, { error: 'the log already ended at 3 lines' }]);
    const pastEnd = await send(job.logsUrl, [line(3)]);
    assert.deepEqual([pastEnd.status, pastEnd.body], [409, { error: "line 3 is past the log's end (3 lines)" }]);
    assert.equal((await logOf(job.id)).lines.length, 3);

    // An end with the last lines in the same request, with no content type at all when there is no body.
    const other = await handOut('end');
    assert.equal((await send(other.logsUrl, lines(0, 2), { 'x-foreman-log-end': '2' })).status, 200);
    assert.deepEqual(await logOf(other.id), { lines: lines(0, 2), next: 2, total: 2, complete: true });
    const third = await handOut('end');
    const bare = await fetch(third.logsUrl, { method: 'POST', headers: { 'x-foreman-log-offset': '0', 'x-foreman-log-end': '0' } });
    assert.equal(bare.status, 200);
    assert.deepEqual(await logOf(third.id), { lines: [], next: 0, total: 0, complete: true });
  });

  it('pages through a log with from and limit', async () => {
    const job = await handOut('paging');
    // About 300 KiB: one of the agent's bigger batches.
    const all = lines(0, 1500, (i) => `${i} `.padEnd(200, 'x'));
    assert.deepEqual((await send(job.logsUrl, all)).body, { ok: true, stored: 1500 });
    const first = await logOf(job.id);
    assert.equal(first.lines.length, 1000, 'the default limit');
    assert.deepEqual([first.lines[0], first.next], [all[0], 1000]);
    assert.deepEqual(await logOf(job.id, `?from=${first.next}`), { lines: all.slice(1000), next: 1500, total: null, complete: false });
    assert.deepEqual(await logOf(job.id, '?from=10&limit=3'), { lines: all.slice(10, 13), next: 13, total: null, complete: false });
    assert.deepEqual(await logOf(job.id, '?from=2000'), { lines: [], next: 2000, total: null, complete: false });
    for (const query of ['?limit=0', '?limit=10001', '?from=-1', '?from=x']) {
      const response = await fetch(`${base}/jobs/${job.id}/logs${query}`);
      assert.equal(response.status, 400, query);
      assert.match(((await response.json()) as { error: string }).error, /^invalid request: querystring\./);
    }
    assert.equal((await logOf(job.id, '?limit=10000')).lines.length, 1500);
  });

  it('streams a log as events: what is stored, then new lines as they are stored, then the end', async () => {
    const job = await handOut('stream');
    await send(job.logsUrl, lines(0, 2));
    const controller = new AbortController();
    try {
      const response = await fetch(`${base}/jobs/${encodeURIComponent(job.id)}/logs/events?from=1`, { signal: controller.signal });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      const events = eventReader(response);
      assert.deepEqual(await events.next(), { event: 'lines', id: '2', data: [line(1)] });
      await send(job.logsUrl, lines(2, 5));
      assert.deepEqual(await events.next(), { event: 'lines', id: '5', data: lines(2, 5) });
      // A resent batch stores nothing new, so nothing is sent.
      await send(job.logsUrl, lines(3, 6));
      assert.deepEqual(await events.next(), { event: 'lines', id: '6', data: [line(5)] });
      await send(job.logsUrl, '', { 'x-foreman-log-offset': '6', 'x-foreman-log-end': '6' });
      assert.deepEqual(await events.next(), { event: 'end', id: undefined, data: { total: 6, complete: true } });
      assert.equal(await events.next(), undefined, 'the stream ends after the end event');
    } finally {
      controller.abort();
    }

    // A finished log is sent whole, a chunk per event; a reconnecting client resumes at Last-Event-ID.
    const big = await handOut('stream');
    await send(big.logsUrl, lines(0, 2500), { 'x-foreman-log-end': '2500' });
    const whole = eventReader(await fetch(`${base}/jobs/${big.id}/logs/events`));
    const received: Line[] = [];
    for (let event = await whole.next(); event?.event === 'lines'; event = await whole.next()) received.push(...(event.data as Line[]));
    assert.deepEqual(received, lines(0, 2500));
    const resumed = eventReader(await fetch(`${base}/jobs/${big.id}/logs/events?from=0`, { headers: { 'last-event-id': '2499' } }));
    assert.deepEqual(await resumed.next(), { event: 'lines', id: '2500', data: [line(2499)] });
    assert.equal((await resumed.next())?.event, 'end');
  });

  it('shows the line count on the job in GET /jobs and its job events', async () => {
    const job = await handOut('count');
    const controller = new AbortController();
    try {
      const events = eventReader(await fetch(`${base}/events`, { signal: controller.signal }));
      assert.equal((await events.next())?.event, 'snapshot');
      await send(job.logsUrl, lines(0, 4));
      const changed = (await events.next('job'))?.data as JobView;
      assert.deepEqual([changed.id, changed.logLines, changed.logComplete], [job.id, 4, false]);
      await send(job.logsUrl, '', { 'x-foreman-log-end': '4' });
      assert.equal(((await events.next('job'))?.data as JobView).logComplete, true);
      const listed = ((await (await fetch(`${base}/jobs`)).json()) as JobView[]).find((view) => view.id === job.id);
      assert.deepEqual([listed?.logLines, listed?.logComplete], [4, true]);
    } finally {
      controller.abort();
    }
  });
});

describe('reference control server: a job log when the job moves between agents', () => {
  it('ignores other copies, and starts the log again when another agent is handed the job', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-logs-requeue-'));
    const { server, base } = await start(join(dir, 'cs.db'), { agentTimeoutMs: 300 });
    const controller = new AbortController();
    try {
      const poll = async (agentId: string): Promise<Handed[]> =>
        (await (
          await fetch(`${base}/job`, { headers: { authorization: `Bearer ${TOKEN}`, 'x-foreman-labels': 'queue=moving', 'x-foreman-agent-id': agentId } })
        ).json()) as Handed[];
      const post = async (url: string, agentId: string, batch: Line[]) =>
        fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', 'x-foreman-agent-id': agentId, 'x-foreman-log-offset': String(batch[0]!.i) },
          body: ndjson(batch),
        });
      const created = await fetch(`${base}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"image":"img","labels":{"queue":"moving"}}',
      });
      const { id } = (await created.json()) as { id: string };
      const [handed] = await poll('agent-a');
      assert.equal(handed?.id, id);
      assert.equal(
        (
          await post(
            handed.logsUrl,
            'agent-a',
            lines(0, 3, (i) => `a ${i}`),
          )
        ).status,
        200,
      );
      const events = eventReader(await fetch(`${base}/jobs/${id}/logs/events`, { signal: controller.signal }));
      assert.equal(((await events.next())?.data as Line[]).length, 3);

      // Another agent's copy of the job is acknowledged and not stored.
      const stray = await post(
        handed.logsUrl,
        'agent-b',
        lines(3, 5, (i) => `b ${i}`),
      );
      assert.deepEqual([stray.status, await stray.json()], [200, { ok: true, stored: 0, ignored: 'other-agent' }]);

      // agent-a stops polling: the job is requeued, and agent-b is handed it. Its copy numbers its lines from 0.
      await waitFor('the job requeued', async () => ((await (await fetch(`${base}/jobs/${id}`)).json()) as JobView).status === 'queued', 10_000);
      assert.deepEqual(
        (await poll('agent-b')).map((job) => job.id),
        [id],
      );
      assert.deepEqual(await events.next(), { event: 'reset', id: '0', data: {} });
      assert.equal(((await (await fetch(`${base}/jobs/${id}`)).json()) as JobView).logLines, 0);
      assert.equal(
        (
          await post(
            handed.logsUrl,
            'agent-b',
            lines(0, 2, (i) => `b ${i}`),
          )
        ).status,
        200,
      );
      assert.deepEqual(await events.next(), { event: 'lines', id: '2', data: lines(0, 2, (i) => `b ${i}`) });
      // The old copy's late lines are ignored now.
      assert.equal(
        (
          (await (
            await post(
              handed.logsUrl,
              'agent-a',
              lines(3, 4, (i) => `a ${i}`),
            )
          ).json()) as { ignored?: string }
        ).ignored,
        'other-agent',
      );
      const page = (await (await fetch(`${base}/jobs/${id}/logs`)).json()) as Page;
      assert.deepEqual(
        page.lines,
        lines(0, 2, (i) => `b ${i}`),
      );
    } finally {
      controller.abort();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps a job log across a restart on the same database', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'foreman-cs-logs-restart-'));
    const dbPath = join(dir, 'cs.db');
    try {
      let running = await start(dbPath);
      await fetch(`${running.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":"kept","image":"img"}' });
      const { logsUrl } = (await running.server.jobUrls('kept', running.base))!;
      await fetch(logsUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'x-foreman-log-end': '2' },
        body: ndjson(lines(0, 2)),
      });
      await running.server.close();
      running = await start(dbPath);
      try {
        assert.deepEqual(await (await fetch(`${running.base}/jobs/kept/logs`)).json(), { lines: lines(0, 2), next: 2, total: 2, complete: true });
      } finally {
        await running.server.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
