import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { createControlServer } from '../examples/control-server/server.ts';
import type { ControlServer } from '../examples/control-server/server.ts';
import { testJobImage } from './support/image.ts';
import { cleanup, startAgent, testEnv } from './support/harness.ts';

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
    server = await createControlServer({ dbPath: join(dir, 'cs.db'), tokens: [TOKEN] });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    // launch() gives the browser a fresh temporary profile and removes it on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage();
    page.setDefaultTimeout(15_000);
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function put(id: string, headers: Record<string, string>, body?: string): Promise<void> {
    const response = await fetch(`${base}/job/${id}`, { method: 'PUT', headers, ...(body === undefined ? {} : { body }) });
    assert.equal(response.status, 200, await response.text());
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
      headers: { authorization: `Bearer ${TOKEN}`, 'x-foreman-capacity': '2', 'x-foreman-labels': 'queue=dashboard,gpu=none', 'x-foreman-agent-id': 'browser-test-agent' },
    });
    const jobs = (await polled.json()) as Array<{ id: string; callbackUrl: string }>;
    assert.deepEqual(
      jobs.map((job) => job.id),
      [id],
    );
    assert.equal(jobs[0]!.callbackUrl, `${base}/job/${id}`);
    await row('assigned').waitFor();
    const agentRow = page.locator('#agents tr[data-agent-id="browser-test-agent"]');
    await agentRow.waitFor();
    assert.equal(await agentRow.locator('td.capacity').textContent(), '2');
    assert.match((await agentRow.textContent()) ?? '', /queue=dashboard.*gpu=none/);

    await put(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.3', 'x-foreman-delivery-id': 'd1', 'x-foreman-delivery-seq': '1' });
    await bar('running', '30%').waitFor();
    await put(id, { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.7', 'x-foreman-delivery-id': 'd2', 'x-foreman-delivery-seq': '2' });
    await bar('running', '70%').waitFor();
    assert.equal(await row('running').locator('.pct').textContent(), '70%');

    await put(
      id,
      { 'x-foreman-job-status': 'completed', 'x-foreman-job-progress': '1', 'x-foreman-delivery-id': 'd3', 'x-foreman-delivery-seq': '3', 'content-type': 'application/json' },
      JSON.stringify({ answer: 42, note: 'done' }),
    );
    await bar('completed', '100%').waitFor();
    await row('completed').locator('td.outcome', { hasText: 'succeeded' }).waitFor();
    await row('completed').locator('td.preview', { hasText: '{"answer":42,"note":"done"}' }).waitFor();

    assert.deepEqual(navigations, [`${base}/`], 'the page reloaded or navigated');
  });

  it('follows a job run by a real agent in a real container, live, to its result', async () => {
    await testJobImage();
    const env = testEnv(`${base}/job`, { FOREMAN_CORE_TOKEN: TOKEN, FOREMAN_CORE_LABELS_QUEUE: 'real-agent' });
    const agent = await startAgent(env);
    try {
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
        body: JSON.stringify({ image: 'foreman-test-job:latest', body: { action: 'progress', steps: 4, delayMs: 400, values: [19, 23] }, labels: { queue: 'real-agent' } }),
      });
      const { id } = (await created.json()) as { id: string };
      const row = (status: string) => page.locator(`#jobs tr[data-job-id="${id}"][data-status="${status}"]`);
      await row('completed').locator('td.outcome', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
      await row('completed').locator('td.preview', { hasText: '{"result":42}' }).waitFor();
      const seen = (await page.evaluate<string[]>('window.seen'))
        .filter((entry) => entry.startsWith(`${id}|`))
        .map((entry) => entry.slice(id.length + 1));
      assert.equal(seen[0], 'queued|0%', JSON.stringify(seen));
      // The bar moved through the container's own updates before the job completed.
      const running = seen.filter((entry) => entry.startsWith('running|')).map((entry) => Number.parseFloat(entry.split('|')[1] ?? ''));
      assert.ok(running.filter((pct) => pct > 0 && pct < 100).length >= 2, JSON.stringify(seen));
      assert.deepEqual(running, [...running].sort((a, b) => a - b), 'progress only moves forward');
      assert.equal(seen.at(-1), 'completed|100%', JSON.stringify(seen));
      await page.locator(`#agents tr[data-agent-id="${agent.agent.agentId}"]`).waitFor();
    } finally {
      await agent.close();
      await cleanup(env, agent.agent.agentId);
    }
  });
});
