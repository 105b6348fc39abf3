/**
 * The job kits without an engine: the JavaScript kit (packages/job) against a local job API, the Python kit's own
 * unit tests (packages/job-python, run with the host's python3), and both kits' names for the wire against the
 * protocol module. test/job-kits.e2e.test.ts runs both inside real job containers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { JobApiError, JobEndedError, createJobClient, type RetryInfo } from '../packages/job/index.js';
import * as kit from '../packages/job/index.js';
import { HEADER, JOB_ENDPOINT_ENV } from '../src/protocol/wire.ts';
import { freePort } from './support/ports.ts';
import { repoRoot } from './support/paths.ts';

const execFileAsync = promisify(execFile);
const pythonDir = join(repoRoot, 'packages/job-python');
const noPython = spawnSync('python3', ['--version']).status === 0 ? false : 'python3 is not installed';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A job API answering from a queue of replies (default: a job for GET, accepted for PUT), recording each request. */
async function fakeJobApi(port = 0): Promise<{ server: Server; url: string; seen: Seen[]; replies: Array<[number, unknown]> }> {
  const seen: Seen[] = [];
  const replies: Array<[number, unknown]> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      const [status, body] = replies.shift() ?? [200, req.method === 'GET' ? { id: 'job-1', body: { n: 1 } } : { status: 'accepted', progress: 0 }];
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/job/job-1?token=s3cret`, seen, replies };
}

test("the JavaScript kit's names are the protocol's", () => {
  assert.equal(kit.STATUS_HEADER, HEADER.jobStatus, 'status header');
  assert.equal(kit.PROGRESS_HEADER, HEADER.jobProgress, 'progress header');
  assert.equal(kit.GET_ENDPOINT_ENV, JOB_ENDPOINT_ENV.get, 'GET variable');
  assert.equal(kit.PUT_ENDPOINT_ENV, JOB_ENDPOINT_ENV.put, 'PUT variable');
  assert.equal(kit.DEFAULT_RETRY_FOR_MS, 120_000, 'two minutes');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'packages/job/package.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(pkg.type, 'module', 'ESM');
  assert.equal(pkg.dependencies, undefined, 'no dependencies');
  assert.deepEqual(pkg.files, ['index.js', 'index.d.ts', 'README.md'], 'what it publishes');
});

test('the JavaScript kit: get, progress, complete, and what each sends', async () => {
  const api = await fakeJobApi();
  try {
    const client = createJobClient({ getEndpoint: api.url, putEndpoint: api.url });
    assert.deepEqual(await client.getJob(), { id: 'job-1', body: { n: 1 } }, 'the job');
    await client.progress(0.25, { step: 1 });
    await client.progress(0.5, 'text');
    await client.progress(0.75);
    await client.complete({ result: 2 });
    const [get, json, text, bare, done] = api.seen;
    assert.equal(get?.method, 'GET', 'a GET first');
    assert.deepEqual(
      [json?.headers['x-foreman-job-status'], json?.headers['x-foreman-job-progress'], json?.headers['content-type'], json?.body],
      ['running', '0.25', 'application/json', '{"step":1}'],
      'a JSON update',
    );
    assert.deepEqual([text?.headers['content-type'], text?.body], ['text/plain; charset=utf-8', 'text'], 'a text update');
    assert.deepEqual([bare?.headers['content-type'], bare?.body], [undefined, ''], 'an update without a body');
    assert.deepEqual([done?.headers['x-foreman-job-status'], done?.body], ['completed', '{"result":2}'], 'the result');
    await assert.rejects(client.progress(Number.NaN), TypeError, 'NaN is no progress');
  } finally {
    api.server.close();
  }
});

test('the JavaScript kit retries 503 and connection errors, stops on 409 and other errors, and gives up in time', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/job/job-1?token=s3cret`;
  const retries: RetryInfo[] = [];
  const client = createJobClient({ getEndpoint: url, putEndpoint: url, retryForMs: 20_000, onRetry: (info) => retries.push(info) });
  // Nothing listens for a second: the calls wait for the API to come back.
  const pending = client.progress(0.1);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const api = await fakeJobApi(port);
  try {
    await pending;
    assert.ok(
      retries.some((r) => r.reason === 'ECONNREFUSED'),
      `retried connection refused: ${JSON.stringify(retries)}`,
    );
    retries.length = 0;
    api.replies.push([503, { error: 'retry' }], [200, { status: 'accepted', progress: 0.2 }], [409, { error: 'job already ended' }], [400, { error: 'bad' }]);
    await client.progress(0.2);
    assert.deepEqual(
      retries.map((r) => r.reason),
      ['503'],
      'a 503 retried once',
    );
    const ended = await client.complete({}).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(ended instanceof JobEndedError && ended.status === 409, `409 ends: ${String(ended)}`);
    assert.doesNotMatch(String(ended), /s3cret/, 'the secret stays out of messages');
    await assert.rejects(client.progress(0.3), (err: unknown) => err instanceof JobApiError && err.status === 400, '400 is final');
  } finally {
    api.server.close();
  }
  const gone = createJobClient({ getEndpoint: `http://127.0.0.1:${await freePort()}/job/x?token=t`, retryForMs: 500 });
  await assert.rejects(gone.getJob(), (err: unknown) => err instanceof JobApiError && err.status === 0, 'gives up after retryForMs');
  await assert.rejects(createJobClient({ getEndpoint: '' }).getJob(), JobApiError, 'no endpoint');
});

test('the JavaScript kit fails a job: the details as a last running update', async () => {
  const api = await fakeJobApi();
  try {
    await createJobClient({ putEndpoint: api.url }).fail({ error: 'disk full' }, { exit: false });
    assert.deepEqual(
      [api.seen[0]?.headers['x-foreman-job-status'], api.seen[0]?.headers['x-foreman-job-progress'], api.seen[0]?.body],
      ['running', undefined, '{"error":"disk full"}'],
      'the failure update',
    );
  } finally {
    api.server.close();
  }
});

test("the Python kit's unit tests pass (python3 -m unittest)", { skip: noPython }, async () => {
  const { stderr } = await execFileAsync('python3', ['-m', 'unittest', '-v', 'test_foreman_job'], {
    cwd: pythonDir,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 120_000,
  });
  assert.match(stderr, /^OK$/m, stderr);
});

test('the Python kit: Python 3.9 grammar, the protocol names, and a pyproject.toml for a standard-library-only module', { skip: noPython }, async () => {
  const script = [
    'import ast, json, sys',
    "ast.parse(open('foreman_job.py').read(), feature_version=(3, 9))",
    'import foreman_job as k',
    'print(json.dumps([k.STATUS_HEADER, k.PROGRESS_HEADER, k.GET_ENDPOINT_ENV, k.PUT_ENDPOINT_ENV, k.DEFAULT_RETRY_FOR]))',
  ].join('\n');
  const { stdout } = await execFileAsync('python3', ['-c', script], { cwd: pythonDir, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
  assert.deepEqual(JSON.parse(stdout), [HEADER.jobStatus, HEADER.jobProgress, JOB_ENDPOINT_ENV.get, JOB_ENDPOINT_ENV.put, 120], 'the names and the window');
  const source = readFileSync(join(pythonDir, 'foreman_job.py'), 'utf8');
  const imports = [...source.matchAll(/^(?:import|from) ([\w.]+)/gm)].map((m) => m[1]?.split('.')[0]);
  const stdlib = ['__future__', 'http', 'json', 'os', 'random', 'socket', 'sys', 'time', 'typing', 'urllib'];
  assert.deepEqual(
    imports.filter((m) => !stdlib.includes(m ?? '')),
    [],
    'imports only the standard library',
  );
  const project = (
    parseToml(readFileSync(join(pythonDir, 'pyproject.toml'), 'utf8')) as { project: Record<string, unknown>; tool: { setuptools: Record<string, unknown> } }
  ).project;
  assert.equal(project['requires-python'], '>=3.9', 'Python 3.9 or later');
  assert.deepEqual(project.dependencies, [], 'no dependencies');
  const pyproject = parseToml(readFileSync(join(pythonDir, 'pyproject.toml'), 'utf8')) as { tool: { setuptools: { 'py-modules': string[] } } };
  assert.deepEqual(pyproject.tool.setuptools['py-modules'], ['foreman_job'], 'one module');
});

test('docs/writing-jobs.md shows both example jobs as they are in examples/', () => {
  const page = readFileSync(join(repoRoot, 'docs/writing-jobs.md'), 'utf8');
  const blocks = [...page.matchAll(/^```(?:js|python)\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  for (const [file, from] of [
    ['examples/node-job/job.mjs', "import { createJobClient } from 'foreman-job';"],
    ['examples/python-job/job.py', 'import json'],
  ] as const) {
    const source = readFileSync(join(repoRoot, file), 'utf8');
    const shown = source.slice(source.indexOf(from));
    assert.ok(blocks.includes(shown), `docs/writing-jobs.md has ${file} from "${from}" to its end`);
  }
});
