/**
 * The bundle (`npm run build`) loads only what an idle agent uses: undici's request and Agent without
 * its fetch, WebSocket, mocks and caches; no node:http2 (neither the job API nor the clients speak
 * HTTP/2), whose loading costs about 2 MB of RSS; fastify only with the first job API request; none
 * of the modules dockerode and pino load for features foreman does not use. And the agent keeps
 * undici's WebAssembly parser on V8's baseline compiler (src/cli/main.ts, V8_FLAGS).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:http2';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { V8_FLAGS } from '../src/cli/main.ts';
import { repoRoot } from './support/paths.ts';

const require = createRequire(import.meta.url);

test('the node:http2 stand-in carries the constants fastify and undici read, as node:http2 has them', () => {
  const standIn = require(join(repoRoot, 'scripts/lazy-http2.cjs')) as { constants: Record<string, unknown>; connect: unknown };
  assert.ok(Object.keys(standIn.constants).length >= 10, `the stand-in carries only ${Object.keys(standIn.constants).length} constants`);
  for (const [name, value] of Object.entries(standIn.constants)) assert.equal(value, (constants as Record<string, unknown>)[name], name);
  assert.equal(typeof standIn.connect, 'function');
});

test('loading the bundle loads neither node:http2 nor the index of undici', async () => {
  const bundle = pathToFileURL(join(repoRoot, 'dist/foreman.mjs')).href;
  const http2Loaded = async (importing: string): Promise<string[]> => {
    const script = `await import(${JSON.stringify(importing)}); console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('http2'))));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '' } });
    return JSON.parse(stdout) as string[];
  };
  // Node 24's own node:http loads its http2 internals (Node 20's does not): the bundle may load what node:http
  // alone loads on this Node, and nothing more.
  const byNodeHttp = await http2Loaded('node:http');
  assert.deepEqual(
    (await http2Loaded(bundle)).filter((m) => !byNodeHttp.includes(m)),
    [],
    `http2 modules the bundle loads beyond node:http's own (${byNodeHttp.length})`,
  );
  // undici's index (which loads fetch, WebSocket and the rest at start) is not in the bundle.
  const chunks = readdirSync(join(repoRoot, 'dist/chunks')).map((f) => readFileSync(join(repoRoot, 'dist/chunks', f), 'utf8'));
  assert.ok(
    chunks.some((text) => text.includes('node_modules/undici/lib/dispatcher/agent.js')),
    'undici is bundled by module',
  );
  assert.ok(
    chunks.every((text) => !text.includes('node_modules/undici/index.js')),
    "undici's index is not bundled",
  );
  assert.ok(
    chunks.some((text) => text.includes('HTTP2_HEADER_AUTHORITY')),
    'the stand-in is in the bundle',
  );
});

/** The files `file` imports statically, itself included, transitively: what loads at start. */
function staticClosure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:^|[;}])import\s*(?:[^'"]*?from\s*)?"(\.[^"]+)"/g)) {
    if (spec) staticClosure(resolve(dirname(file), spec), seen);
  }
  return seen;
}

test('fastify is bundled in a chunk that starting the agent does not load', () => {
  const chunkDir = join(repoRoot, 'dist/chunks');
  const chunks = readdirSync(chunkDir).map((f) => join(chunkDir, f));
  const withFastify = chunks.filter((f) => readFileSync(f, 'utf8').includes('node_modules/fastify/fastify.js'));
  assert.equal(withFastify.length, 1, 'fastify is bundled once');
  const atStart = staticClosure(join(repoRoot, 'dist/foreman.mjs'));
  assert.ok(atStart.size >= 3, 'the entry imports its shared chunks');
  assert.ok(!atStart.has(withFastify[0] ?? ''), 'the chunk with fastify is loaded only by import()');
});

test('OpenTelemetry is bundled in chunks that starting the agent does not load (it loads only when tracing is configured)', () => {
  const chunkDir = join(repoRoot, 'dist/chunks');
  const chunks = readdirSync(chunkDir).map((f) => join(chunkDir, f));
  const withSdk = chunks.filter((f) => readFileSync(f, 'utf8').includes('node_modules/@opentelemetry/sdk-trace/'));
  assert.equal(withSdk.length, 1, 'the SDK is bundled once');
  assert.ok(
    chunks.some((f) => readFileSync(f, 'utf8').includes('node_modules/@opentelemetry/exporter-trace-otlp-http/')),
    'the OTLP/HTTP exporter is bundled',
  );
  const atStart = staticClosure(join(repoRoot, 'dist/foreman.mjs'));
  for (const file of atStart) assert.ok(!readFileSync(file, 'utf8').includes('node_modules/@opentelemetry/'), `${file} loads none of OpenTelemetry at start`);
});

test('modules for features foreman does not use are left out, and using one says so', () => {
  const text = readdirSync(join(repoRoot, 'dist/chunks'))
    .map((f) => readFileSync(join(repoRoot, 'dist/chunks', f), 'utf8'))
    .join('\n');
  for (const left of [
    'node_modules/ssh2/',
    'node_modules/tar-fs/',
    'node_modules/@balena/dockerignore/',
    'node_modules/thread-stream/',
    'node_modules/protobufjs/',
  ]) {
    assert.ok(!text.includes(left), `${left} is not bundled`);
  }
  const standIn = require(join(repoRoot, 'src/executor/docker/unbundled.cjs')) as { Client: new () => unknown; pack: () => unknown } & (() => unknown);
  assert.throws(() => new standIn.Client(), /not included in the foreman build: ssh:\/\/ engines/);
  assert.throws(() => standIn.pack(), /image builds/);
  assert.throws(() => standIn(), /log transports/);
});

test('the agent keeps WebAssembly on Liftoff: no TurboFan tier-up of a hot function', async (t) => {
  const bundle = pathToFileURL(join(repoRoot, 'dist/foreman.mjs')).href;
  // A module whose one function adds 1, called until V8 would tier it up; the bundle's main() sets the flags.
  const script = `
    const { main } = await import(${JSON.stringify(bundle)});
    if (process.argv[1] === 'main') await main(['--version'], {});
    const bytes = new Uint8Array([0,97,115,109,1,0,0,0,1,6,1,96,1,127,1,127,3,2,1,0,7,5,1,1,102,0,0,10,9,1,7,0,32,0,65,1,106,11]);
    const f = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f;
    let x = 0;
    for (let round = 0; round < 100 && !%IsTurboFanFunction(f); round++) {
      for (let i = 0; i < 100000; i++) x = f(x);
      await new Promise((r) => setTimeout(r, 5));
    }
    console.log(%IsTurboFanFunction(f) ? 'turbofan' : 'liftoff');`;
  const run = (arg: string, flags: readonly string[] = []): Promise<string> =>
    promisify(execFile)(process.execPath, [...flags, '--allow-natives-syntax', '--input-type=module', '-e', script, arg], {
      env: { PATH: process.env.PATH ?? '' },
    }).then((r) => r.stdout.trim().split('\n').at(-1) ?? '');
  // Without the flags, V8 tiers the function up (so the probe can tell).
  assert.equal(await run('plain'), 'turbofan', 'V8 tiers a hot WebAssembly function up by default');
  // On Node's command line, as the image's entrypoint and the single executable's execArgv pass them, they hold
  // (and a flag this V8 did not know would stop node with "bad option").
  assert.equal(await run('plain', V8_FLAGS), 'liftoff', `${V8_FLAGS.join(' ')} on the command line keeps Liftoff`);
  // Set at run time by main(), they hold on Node 20 only: from Node 24 on, V8 reads its WebAssembly flags once,
  // at start, so an npm install of foreman on Node 24 runs without them (docs/development.md, The bundle).
  const atRunTime = await run('main');
  if (Number(process.versions.node.split('.')[0]) <= 20) assert.equal(atRunTime, 'liftoff', 'main() keeps Liftoff on Node 20');
  else t.diagnostic(`main()'s setFlagsFromString on Node ${process.version}: ${atRunTime}`);
});
