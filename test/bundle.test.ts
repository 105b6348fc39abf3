/**
 * The bundle (`npm run build`) loads only what an idle agent uses: undici's request and Agent without
 * its fetch, WebSocket, mocks and caches, and no node:http2 (neither the job API nor the clients speak
 * HTTP/2), whose loading costs about 2 MB of RSS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:http2';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { repoRoot } from './support/harness.ts';

const require = createRequire(import.meta.url);

test('the node:http2 stand-in carries the constants fastify and undici read, as node:http2 has them', () => {
  const standIn = require(join(repoRoot, 'scripts/lazy-http2.cjs')) as { constants: Record<string, unknown>; connect: unknown };
  assert.ok(Object.keys(standIn.constants).length >= 10);
  for (const [name, value] of Object.entries(standIn.constants)) assert.equal(value, (constants as Record<string, unknown>)[name], name);
  assert.equal(typeof standIn.connect, 'function');
});

test('loading the bundle loads neither node:http2 nor the index of undici', async () => {
  const bundle = pathToFileURL(join(repoRoot, 'dist/foreman.mjs')).href;
  const script = `await import(${JSON.stringify(bundle)}); console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('http2'))));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '' } });
  assert.deepEqual(JSON.parse(stdout), []);
  // undici's index (which loads fetch, WebSocket and the rest at start) is not in the bundle.
  const chunks = readdirSync(join(repoRoot, 'dist/chunks')).map((f) => readFileSync(join(repoRoot, 'dist/chunks', f), 'utf8'));
  assert.ok(chunks.some((text) => text.includes('node_modules/undici/lib/dispatcher/agent.js')), 'undici is bundled by module');
  assert.ok(chunks.every((text) => !text.includes('node_modules/undici/index.js')), "undici's index is not bundled");
  assert.ok(chunks.some((text) => text.includes('HTTP2_HEADER_AUTHORITY')), 'the stand-in is in the bundle');
});
