import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { createControlServer } from '../src/server/app.ts';
import type { ControlServer } from '../src/server/app.ts';
import { ADMIN_TOKEN, READ_TOKEN, operatorFetch } from './support/control-server.ts';

/** Operator requests carry the admin token; agents' polls their own. */
const fetch = operatorFetch();
import { testJobImage } from './support/image.ts';
import { type InProcessAgent, startAgent, testEnv } from './support/agents.ts';
import { cleanup } from './support/containers.ts';
import { printedLines } from './support/logs.ts';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dashboard-token';

describe('control server dashboard', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let dir: string;
  let server: ControlServer;
  let base: string;
  let browser: Browser;
  let page: Page;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-dashboard-test-'));
    server = await createControlServer({ adminTokens: [ADMIN_TOKEN], readOnlyTokens: [READ_TOKEN], database: join(dir, 'cs.db'), tokens: [TOKEN] });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    // launch() gives the browser a fresh temporary profile and removes it on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(15_000);
    await signIn(page, base, ADMIN_TOKEN);
  });

  /** Signs a browser page in through the sign-in page; it lands on the dashboard. */
  async function signIn(on: Page, serverBase: string, token: string): Promise<void> {
    await on.goto(`${serverBase}/`);
    await on.waitForURL(`${serverBase}/signin`);
    await on.locator('#token').fill(token);
    await on.locator('button[type="submit"]').click();
    await on.waitForURL(`${serverBase}/`);
    await on.locator('#connection[data-state="live"]').waitFor();
  }

  after(async () => {
    await browser?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function put(id: string, headers: Record<string, string>, body?: string): Promise<void> {
    const { callbackUrl } = (await server.jobUrls(id, base))!;
    const response = await fetch(callbackUrl, { method: 'PUT', headers, ...(body === undefined ? {} : { body }) });
    assert.equal(response.status, 200, await response.text());
  }

  async function submit(serverBase: string, job: Record<string, unknown>): Promise<string> {
    const created = await fetch(`${serverBase}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(job) });
    assert.equal(created.status, 201);
    return ((await created.json()) as { id: string }).id;
  }

  async function pollAs(serverBase: string, agentId: string, queue: string, capacity: number): Promise<Response> {
    return fetch(`${serverBase}/job`, {
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'x-foreman-capacity': String(capacity),
        'x-foreman-labels': `queue=${queue}`,
        'x-foreman-agent-id': agentId,
      },
    });
  }

  it('shows a job move from queued to completed, and the agent, without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (frame) => navigations.push(frame.url()));
    await page.goto(`${base}/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    await page.locator('#jobs tr.empty').waitFor();

    const created = await fetch(`${base}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'foreman-test-job:latest', body: { action: 'progress' }, labels: { queue: 'dashboard' } }),
    });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };
    const row = (status: string) => page.locator(`#jobs tr[data-job-id="${id}"][data-status="${status}"]`);
    const bar = (status: string, width: string) => row(status).locator(`.fill[style*="width: ${width}"]`);

    await row('queued').waitFor();
    assert.equal(await row('queued').locator('td').nth(1).textContent(), 'foreman-test-job:latest');

    // Play the agent: poll, then report progress through the callback URL we were given.
    const polled = await fetch(`${base}/job`, {
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'x-foreman-capacity': '2',
        'x-foreman-labels': 'queue=dashboard,gpu=none',
        'x-foreman-agent-id': 'browser-test-agent',
        'x-foreman-attributes': 'cpus=4,memory=8589934592,engine=docker,engine_version=20.10.24,disk_free=1073741824',
        'x-foreman-images': 'foreman-test-job%3Alatest@sha256:aa,busybox@sha256:bb',
      },
    });
    const jobs = (await polled.json()) as Array<{ id: string; callbackUrl: string }>;
    assert.deepEqual(
      jobs.map((job) => job.id),
      [id],
    );
    assert.equal(jobs[0]!.callbackUrl, (await server.jobUrls(id, base))?.callbackUrl);
    await row('assigned').waitFor();
    const agentRow = page.locator('#agents tr[data-agent-id="browser-test-agent"]');
    await agentRow.waitFor();
    assert.equal(await agentRow.locator('td.capacity').textContent(), '2');
    assert.match((await agentRow.textContent()) ?? '', /queue=dashboard.*gpu=none/);
    assert.equal(
      await agentRow.locator('td.facts').textContent(),
      '4 CPU · 8.0 GiB · docker 20.10.24 · 1.0 GiB free · 2 images',
      "the agent's host facts and image count",
    );
    assert.match((await row('assigned').locator('.trace').textContent()) ?? '', /^[0-9a-f]{32}$/, 'the trace id under the job id');

    await put(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.3', 'x-foreman-delivery-id': 'd1', 'x-foreman-delivery-seq': '1' });
    await bar('running', '30%').waitFor();
    await put(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.7', 'x-foreman-delivery-id': 'd2', 'x-foreman-delivery-seq': '2' });
    await bar('running', '70%').waitFor();
    assert.equal(await row('running').locator('.pct').textContent(), '70%');

    await put(
      id,
      {
        'x-foreman-job-status': 'completed',
        'x-foreman-job-progress': '1',
        'x-foreman-delivery-id': 'd3',
        'x-foreman-delivery-seq': '3',
        'content-type': 'application/json',
        'x-foreman-usage': JSON.stringify({ cpuSeconds: 1.25, memoryPeakBytes: 52_428_800, memoryLimitBytes: 268_435_456, pidsPeak: 4, wallMs: 3_200 }),
      },
      JSON.stringify({ answer: 42, note: 'done' }),
    );
    await bar('completed', '100%').waitFor();
    await row('completed').locator('td.outcome', { hasText: 'succeeded' }).waitFor();
    await row('completed').locator('td.preview', { hasText: '{"answer":42,"note":"done"}' }).waitFor();
    assert.equal(await row('completed').locator('td.usage').textContent(), '1.25 CPU s · 50 MiB / 256 MiB · 3.2 s', "the job's usage once it ended");

    assert.deepEqual(navigations, [`${base}/`], 'the page reloaded or navigated');
  });

  it('cancels jobs from their rows: a queued one ends at once, a held one shows the request, then the outcome', async () => {
    await page.goto(`${base}/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    const queued = await submit(base, { image: 'img', labels: { queue: 'dashboard-never-polled' } });
    const held = await submit(base, { image: 'img', labels: { queue: 'dashboard-cancel' } });
    assert.deepEqual(
      ((await (await pollAs(base, 'cancel-agent', 'dashboard-cancel', 1)).json()) as Array<{ id: string }>).map((job) => job.id),
      [held],
    );
    const row = (id: string) => page.locator(`#jobs tr[data-job-id="${id}"]`);

    await row(queued).locator('button.cancel').click();
    await row(queued).and(page.locator('[data-status="canceled"]')).locator('td.outcome', { hasText: 'canceled' }).waitFor();
    assert.equal(await row(queued).locator('button.cancel').count(), 0, 'a final job has no Cancel button');

    await page.locator(`#jobs tr[data-job-id="${held}"][data-status="assigned"] button.cancel`).click();
    const requested = page.locator(`#jobs tr[data-job-id="${held}"][data-status="assigned"][data-cancel-requested="true"]`);
    await requested.locator('.note.cancel-requested', { hasText: 'cancel requested' }).waitFor();
    assert.equal(await requested.locator('button.cancel').isDisabled(), true);
    assert.equal((await pollAs(base, 'cancel-agent', 'dashboard-cancel', 0)).headers.get('x-foreman-cancel'), held);

    // The agent's final report ends the row with the outcome it reported.
    const report = { outcome: 'canceled', reason: 'cancel', message: 'stopped' };
    await put(
      held,
      { 'x-foreman-job-status': 'completed', 'x-foreman-job-outcome': 'canceled', 'x-foreman-agent-id': 'cancel-agent', 'content-type': 'application/json' },
      JSON.stringify(report),
    );
    const ended = page.locator(`#jobs tr[data-job-id="${held}"][data-status="completed"]`);
    await ended.locator('td.outcome', { hasText: 'canceled' }).waitFor();
    assert.equal(await ended.locator('.note.cancel-requested').count(), 0);
    assert.equal(await ended.locator('button.cancel').count(), 0);
  });

  it('shows an agent as lost when it stops polling, and live again when it is back', async () => {
    // A server of its own, so the short agent timeout touches no other test's agents.
    const quick = await createControlServer({
      adminTokens: [ADMIN_TOKEN],
      readOnlyTokens: [READ_TOKEN],
      database: join(dir, 'lost.db'),
      tokens: [TOKEN],
      agentTimeoutMs: 300,
    });
    try {
      await quick.app.listen({ host: '127.0.0.1', port: 0 });
      const quickBase = `http://127.0.0.1:${(quick.app.server.address() as AddressInfo).port}`;
      // Another port, another origin: the sign-in cookie holds per host, so the page is signed in there too.
      await page.goto(`${quickBase}/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const held = await submit(quickBase, { image: 'img', labels: { queue: 'fading' } });
      assert.equal((await pollAs(quickBase, 'fading-agent', 'fading', 1)).status, 200);
      const agent = (lost: boolean) => page.locator(`#agents tr[data-agent-id="fading-agent"][data-lost="${lost}"]`);
      await agent(false).locator('td.state', { hasText: 'live' }).waitFor();
      await agent(true).locator('td.state', { hasText: 'lost' }).waitFor();
      await page.locator(`#jobs tr[data-job-id="${held}"][data-status="queued"] .note.requeues`, { hasText: 'requeued ×1' }).waitFor();
      assert.equal((await pollAs(quickBase, 'fading-agent', 'fading', 0)).status, 200);
      await agent(false).waitFor();
    } finally {
      await quick.close();
    }
  });

  it('follows a job run by a real agent in a real container, live, to its result', async () => {
    await testJobImage();
    const env = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: TOKEN, FOREMAN_CORE_LABELS_QUEUE: 'real-agent' });
    let started: InProcessAgent | undefined;
    try {
      const agent = (started = await startAgent(env));
      await page.goto(`${base}/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      // Record every state each row shows, so a state held for only a moment is still seen.
      // A string, so it runs in the page as written (no DOM types or transpiler helpers here).
      await page.evaluate(`(() => {
        const seen = (window.seen = []);
        const record = () => {
          for (const row of document.querySelectorAll('#jobs tr[data-job-id]')) {
            const entry = row.dataset.jobId + '|' + row.dataset.status + '|' + (row.querySelector('.fill')?.style.width ?? '');
            if (!seen.includes(entry)) seen.push(entry);
          }
        };
        new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
      })()`);
      const created = await fetch(`${base}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          image: 'foreman-test-job:latest',
          body: { action: 'progress', steps: 4, delayMs: 400, values: [19, 23] },
          labels: { queue: 'real-agent' },
        }),
      });
      const { id } = (await created.json()) as { id: string };
      const row = (status: string) => page.locator(`#jobs tr[data-job-id="${id}"][data-status="${status}"]`);
      await row('completed').locator('td.outcome', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
      await row('completed').locator('td.preview', { hasText: '{"result":42}' }).waitFor();
      const seen = (await page.evaluate<string[]>('window.seen')).filter((entry) => entry.startsWith(`${id}|`)).map((entry) => entry.slice(id.length + 1));
      assert.equal(seen[0], 'queued|0%', JSON.stringify(seen));
      // The bar moved through the container's own updates before the job completed.
      const running = seen.filter((entry) => entry.startsWith('running|')).map((entry) => Number.parseFloat(entry.split('|')[1] ?? ''));
      assert.ok(running.filter((pct) => pct > 0 && pct < 100).length >= 2, JSON.stringify(seen));
      assert.deepEqual(
        running,
        [...running].sort((a, b) => a - b),
        'progress only moves forward',
      );
      assert.equal(seen.at(-1), 'completed|100%', JSON.stringify(seen));
      await page.locator(`#agents tr[data-agent-id="${agent.agent.agentId}"]`).waitFor();
      // The real agent's own reports: its host's facts on a poll, the job's usage on its final report.
      await page.locator(`#agents tr[data-agent-id="${agent.agent.agentId}"] td.facts`, { hasText: /\d+ CPU · .* · docker / }).waitFor({ timeout: 30_000 });
      assert.match((await row('completed').locator('td.usage').textContent()) ?? '', /CPU s · .* · \d+\.\d s$/, "the job's usage");
    } finally {
      await started?.close();
      await cleanup(env, started?.agent.agentId);
    }
  });

  /** The lines the log panel shows, in page order. */
  async function panelLines(): Promise<Array<{ i: number; stream: string; text: string }>> {
    return page.evaluate(`[...document.querySelectorAll('#log .line')].map((node) => ({
      i: Number(node.dataset.i), stream: node.classList.contains('stderr') ? 'stderr' : 'stdout', text: node.textContent }))`);
  }

  async function scrolledToBottom(): Promise<boolean> {
    return page.evaluate(`(() => { const box = document.getElementById('log'); return box.scrollHeight - box.scrollTop - box.clientHeight < 8; })()`);
  }

  it('shows a running job log live in its panel, from a real agent and container, until the log is complete', async (t) => {
    await testJobImage();
    const env = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: TOKEN, FOREMAN_CORE_LABELS_QUEUE: 'log-panel' });
    let started: InProcessAgent | undefined;
    try {
      started = await startAgent(env);
      await page.goto(`${base}/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const shape = { lines: 200, perTick: 20, tickMs: 300 };
      const id = await submit(base, { image: 'foreman-test-job:latest', labels: { queue: 'log-panel' }, body: { action: 'log', ...shape } });
      // Record how many lines the panel holds at each change, with the job's status at that moment.
      await page.evaluate(`(() => {
        const seen = (window.logSeen = []);
        const record = () => {
          const row = document.querySelector('#jobs tr[data-job-id=' + JSON.stringify(${JSON.stringify(id)}) + ']');
          const entry = document.querySelectorAll('#log .line').length + '|' + (row ? row.dataset.status : '');
          if (seen.at(-1) !== entry) seen.push(entry);
        };
        new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
      })()`);
      await page.locator(`#jobs tr[data-job-id="${id}"] button.log`).click();
      await page.locator(`#log-panel[data-job-id="${id}"]`).waitFor();
      await page.locator('#log-state[data-state="complete"]', { hasText: 'log complete (202 lines)' }).waitFor({ timeout: 30_000 });
      await page.locator(`#jobs tr[data-job-id="${id}"][data-status="completed"] td.outcome`, { hasText: 'succeeded' }).waitFor();

      const seen = (await page.evaluate<string[]>('window.logSeen')).map((entry) => entry.split('|') as [string, string]);
      // Lines arrived in more than one go while the job was still running: the panel was live, not filled at the end.
      t.diagnostic(`panel line count|job status at each change: ${seen.map((entry) => entry.join('|')).join(' ')}`);
      const partial = seen.filter(([count, status]) => Number(count) > 0 && Number(count) < 202 && status !== 'completed');
      assert.ok(new Set(partial.map(([count]) => count)).size >= 2, `the panel did not grow in steps while the job ran: ${JSON.stringify(seen)}`);
      const counts = seen.map(([count]) => Number(count));
      assert.deepEqual(
        counts,
        [...counts].sort((a, b) => a - b),
        'lines are only added',
      );

      // Every line once, in line-number order; each stream in the order the job printed it.
      const shown = await panelLines();
      assert.deepEqual(
        shown.map((l) => l.i),
        Array.from({ length: 202 }, (_, i) => i),
      );
      const printed = printedLines(shape);
      const of = (stream: string) => shown.filter((l) => l.stream === stream).map((l) => l.text);
      assert.deepEqual(of('stdout'), [`job ${id} action log`, ...printed.stdout, 'PUT completed -> 200']);
      assert.deepEqual(of('stderr'), printed.stderr);
      assert.ok(await scrolledToBottom(), 'the panel follows the tail');
      assert.equal(await page.locator(`#jobs tr[data-job-id="${id}"] button.log`).textContent(), 'Log (202)');
    } finally {
      await started?.close();
      await cleanup(env, started?.agent.agentId);
    }
  });

  it('log panel: text stays text, stderr stands apart, and the tail is followed only while scrolled to the bottom', async () => {
    const id = await submit(base, { image: 'img', labels: { queue: 'log-panel-fake' } });
    const [handed] = (await (await pollAs(base, 'log-panel-agent', 'log-panel-fake', 1)).json()) as Array<{ id: string; logsUrl: string }>;
    assert.equal(handed?.id, id);
    const hostile = '<img src=x onerror="window.pwned = 1"> <b>not bold</b> &amp;';
    const send = async (from: number, to: number, extra: Record<string, string> = {}) => {
      const body = Array.from({ length: to - from }, (_, k) => {
        const i = from + k;
        return `${JSON.stringify({ i, ts: '2026-11-28T07:42:30.437418862Z', stream: i % 3 === 2 ? 'stderr' : 'stdout', text: i === 1 ? hostile : `line ${i}` })}\n`;
      }).join('');
      const response = await fetch(handed.logsUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'x-foreman-log-offset': String(from), ...extra },
        body,
      });
      assert.equal(response.status, 200, await response.text());
    };
    await page.goto(`${base}/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    await page.locator(`#jobs tr[data-job-id="${id}"] button.log`).click();
    await page.locator('#log-state', { hasText: 'no lines yet' }).waitFor();

    await send(0, 100);
    await page.locator('#log .line[data-i="99"]').waitFor();
    assert.ok(await scrolledToBottom(), 'follows the tail from the start');
    const shown = await panelLines();
    assert.equal(shown[1]?.text, hostile);
    assert.equal(await page.locator('#log img, #log b').count(), 0, 'a log line was inserted as HTML');
    assert.equal(await page.evaluate('window.pwned'), undefined);
    assert.deepEqual(
      shown.filter((l) => l.stream === 'stderr').map((l) => l.i),
      shown.filter((l) => l.i % 3 === 2).map((l) => l.i),
    );
    const colors = await page.evaluate<string[]>(`['0', '2'].map((i) => getComputedStyle(document.querySelector('#log .line[data-i="' + i + '"]')).color)`);
    assert.notEqual(colors[0], colors[1], 'stderr lines look different');

    // Scrolled up to read: new lines are added below without moving the view.
    await page.evaluate(`document.getElementById('log').scrollTop = 0`);
    await send(100, 200);
    await page.locator('#log .line[data-i="199"]').waitFor();
    assert.equal(await page.evaluate(`document.getElementById('log').scrollTop`), 0);
    // Back at the bottom: following again.
    await page.evaluate(`(() => { const box = document.getElementById('log'); box.scrollTop = box.scrollHeight; })()`);
    await send(200, 300, { 'x-foreman-log-end': '300' });
    await page.locator('#log-state', { hasText: 'log complete (300 lines)' }).waitFor();
    assert.ok(await scrolledToBottom(), 'scrolled back to the bottom, the panel follows the tail again');
    assert.equal(await page.locator('#log .line').count(), 300);

    await page.locator('#log-close').click();
    await page.locator('#log-panel').waitFor({ state: 'hidden' });
  });

  it('a signed-out browser sees only the sign-in page; a wrong token is refused; a read-only token sees jobs without Cancel', async () => {
    const id = await submit(base, { image: 'img', labels: { queue: 'dashboard-signed-out' } });
    const context = await browser.newContext();
    try {
      const stranger = await context.newPage();
      stranger.setDefaultTimeout(15_000);
      const response = await stranger.goto(`${base}/`);
      assert.equal(stranger.url(), `${base}/signin`, 'sent to the sign-in page');
      assert.equal(response?.status(), 200);
      assert.equal(await stranger.locator('#jobs, #agents').count(), 0, 'no dashboard on the sign-in page');
      assert.doesNotMatch(await stranger.content(), new RegExp(id), 'no job shows');
      const fromPage = await stranger.evaluate(`Promise.all(['jobs', 'events', 'agents'].map((path) => fetch(path).then((r) => r.status)))`);
      assert.deepEqual(fromPage, [401, 401, 401], 'the API answers a signed-out page 401');

      await stranger.locator('#token').fill('not-a-token');
      await stranger.locator('button[type="submit"]').click();
      await stranger.locator('#error', { hasText: 'not an admin or read-only token' }).waitFor();
      assert.equal(stranger.url(), `${base}/signin`);
      // An agent's token is no operator's.
      await stranger.locator('#token').fill(TOKEN);
      await stranger.locator('button[type="submit"]').click();
      await stranger.locator('#error', { hasText: 'not an admin or read-only token' }).waitFor();

      await stranger.locator('#token').fill(READ_TOKEN);
      await stranger.locator('button[type="submit"]').click();
      await stranger.waitForURL(`${base}/`);
      await stranger.locator('#connection[data-state="live"]').waitFor();
      await stranger.locator(`#jobs tr[data-job-id="${id}"][data-status="queued"]`).waitFor();
      assert.equal(await stranger.locator('#role').textContent(), 'read-only');
      assert.equal(await stranger.locator(`#jobs tr[data-job-id="${id}"] button.cancel`).count(), 0, 'no Cancel for a read-only session');
      const cookie = (await context.cookies()).find((c) => c.name === 'foreman_session');
      assert.equal(cookie?.httpOnly, true, 'the session cookie is HttpOnly');
      assert.equal(cookie?.sameSite, 'Strict', 'and SameSite=Strict');
      assert.equal(await stranger.evaluate('document.cookie'), '', 'page scripts cannot read it');
      const cancel = await stranger.evaluate(
        `fetch('jobs/${id}/cancel', { method: 'POST', headers: { 'x-requested-with': 'foreman-dashboard' } }).then((r) => r.status)`,
      );
      assert.equal(cancel, 403, 'a read-only session may not cancel');

      await stranger.locator('#sign-out').click();
      await stranger.waitForURL(`${base}/signin`);
      assert.equal(await stranger.evaluate(`fetch('jobs').then((r) => r.status)`), 401, 'signed out');
    } finally {
      await context.close();
    }
  });

  it('a page of another origin cannot cancel or submit with the signed-in cookie', async () => {
    const id = await submit(base, { image: 'img', labels: { queue: 'dashboard-csrf' } });
    // An attacker's page on another port of the same host: same site, so the browser sends the SameSite=Strict cookie
    // along; the server refuses what the dashboard's own page did not send.
    const attacker = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><form id="f" method="POST" action="${base}/jobs/${id}/cancel"></form>
        <form id="g" method="POST" action="${base}/jobs" enctype="text/plain"><input name='{"image":"evil","x":"' value='"}'></form>`);
    });
    attacker.listen(0, '127.0.0.1');
    await once(attacker, 'listening');
    // The signed-in browser (its context holds the cookie) opens the attacker's page.
    const evil = await page.context().newPage();
    try {
      const origin = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
      await evil.goto(`${origin}/`);
      const viaFetch = await evil.evaluate(
        `fetch(${JSON.stringify(`${base}/jobs/${id}/cancel`)}, { method: 'POST', credentials: 'include', mode: 'no-cors' }).then(() => 'sent', (e) => String(e))`,
      );
      assert.equal(viaFetch, 'sent');
      const [formReply] = await Promise.all([evil.waitForResponse(`${base}/jobs/${id}/cancel`), evil.evaluate(`document.getElementById('f').submit()`)]);
      assert.equal(formReply.status(), 403, 'a cross-site form is refused');
      // The form's navigation ends before the next one starts (else the browser calls the next one interrupted).
      await evil.waitForURL(`${base}/jobs/${id}/cancel`);
      await evil.goto(`${origin}/`);
      const [submitReply] = await Promise.all([evil.waitForResponse(`${base}/jobs`), evil.evaluate(`document.getElementById('g').submit()`)]);
      assert.ok(submitReply.status() >= 400, `a cross-site submit is refused (${submitReply.status()})`);
      const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as { status: string; cancelRequested: boolean };
      assert.deepEqual([view.status, view.cancelRequested], ['queued', false], 'the job was not canceled');
      const evilJobs = ((await (await fetch(`${base}/jobs?limit=500`)).json()) as Array<{ image: string }>).filter((job) => job.image === 'evil');
      assert.deepEqual(evilJobs, [], 'no job was submitted');
    } finally {
      await evil.close();
      attacker.close();
    }
  });
});
