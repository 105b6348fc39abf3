/**
 * The protocol said three ways says the same thing: the module (src/protocol/wire.ts), the prose
 * (docs/protocol.md) and the OpenAPI contracts (docs/openapi/*.yaml, each valid OpenAPI 3.1 by a maintained
 * validator). And the traffic checker used by the end-to-end servers (test/support/contract.ts) catches what
 * breaks a contract.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { parse } from 'yaml';
import { HEADER_NAMES, JOB_STATUSES, LOG_STREAMS, OUTCOMES, REASONS, encodeLogLine } from '../src/protocol/wire.ts';
import { JobSpecSchema } from '../src/shared/job-schema.ts';
import { HEADERS as KIT_HEADERS, OUTCOMES as KIT_OUTCOMES } from '../packages/control-server-kit/index.ts';
import { controlServerContract, jobApiContract, type Exchange } from './support/contract.ts';
import { repoRoot } from './support/paths.ts';

const openapiDir = join(repoRoot, 'docs/openapi');
const documents = readdirSync(openapiDir).filter((f) => f.endsWith('.yaml'));
const read = (name: string): Record<string, unknown> => parse(readFileSync(join(openapiDir, name), 'utf8')) as Record<string, unknown>;
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

test('every document of docs/openapi/ is valid OpenAPI 3.1', async () => {
  assert.ok(documents.includes('control-server.yaml') && documents.includes('job-api.yaml'), `documents: ${documents.join(', ')}`);
  for (const name of documents) {
    const validator = new Validator();
    const result = await validator.validate(join(openapiDir, name));
    assert.equal(result.valid, true, `${name}: ${JSON.stringify(result.errors)}`);
    assert.match(String(validator.version), /^3\.1/, `${name} is OpenAPI 3.1`);
  }
});

test('the validator refuses a broken document (so a pass means something)', async () => {
  const broken = read('job-api.yaml');
  (broken.paths as Record<string, Record<string, Record<string, unknown>>>)['/job/{id}']!.get!.responses = 'none';
  const result = await new Validator().validate(broken);
  assert.equal(result.valid, false, 'responses must be an object');
});

test('the contracts carry the package version', () => {
  for (const name of ['control-server.yaml', 'job-api.yaml']) assert.equal((read(name).info as { version: string }).version, version, name);
});

/** Every `x-foreman-…` name in a text. */
function headerNamesIn(text: string): string[] {
  return [...new Set(text.match(/x-foreman-[a-z-]*[a-z]/g) ?? [])].sort();
}

test('the contracts name exactly the headers of the protocol module, and its words', async () => {
  const cs = readFileSync(join(openapiDir, 'control-server.yaml'), 'utf8');
  const api = readFileSync(join(openapiDir, 'job-api.yaml'), 'utf8');
  assert.deepEqual(headerNamesIn(cs + api), [...HEADER_NAMES].sort(), 'header names in docs/openapi');
  const contract = await controlServerContract();
  assert.deepEqual(contract.component('schemas/JobStatus').enum, [...JOB_STATUSES], 'statuses');
  assert.deepEqual(contract.component('schemas/Outcome').enum, [...OUTCOMES], 'outcomes');
  assert.deepEqual(contract.component('schemas/Reason').enum, [...REASONS], 'reasons');
  const line = contract.component('schemas/LogLine') as { properties: { stream: { enum: string[] } } };
  assert.deepEqual(line.properties.stream.enum, [...LOG_STREAMS], 'log streams');
  const put = (read('job-api.yaml').paths as Record<string, { put: { parameters: Array<{ name: string; schema: { enum?: string[] } }> } }>)['/job/{id}'];
  assert.deepEqual(put?.put.parameters.find((p) => p.name === 'x-foreman-job-status')?.schema.enum, [...JOB_STATUSES], 'job API statuses');
});

/** A schema without its prose: what a validator checks. */
function withoutProse(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutProse);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => k !== 'description' && k !== 'examples' && k !== 'example')
      .map(([k, v]) => [k, withoutProse(v)]),
  );
}

test('the control-server kit (a package of its own, so it cannot import src/) spells the words of the protocol module', () => {
  assert.deepEqual([...KIT_OUTCOMES].sort(), [...OUTCOMES].sort(), 'outcomes');
  for (const name of Object.values(KIT_HEADERS)) assert.ok((HEADER_NAMES as readonly string[]).includes(name), `${name} is a header of the protocol`);
});

test("the contract's Job is the schema the agent validates jobs with", () => {
  const job = (read('control-server.yaml').components as { schemas: { Job: unknown } }).schemas.Job;
  assert.deepEqual(withoutProse(job), JSON.parse(JSON.stringify(JobSpecSchema)), 'components.schemas.Job of control-server.yaml and src/shared/job-schema.ts');
});

test('docs/protocol.md names exactly the headers, outcomes and reasons of the protocol module', () => {
  const prose = readFileSync(join(repoRoot, 'docs/protocol.md'), 'utf8');
  assert.deepEqual(headerNamesIn(prose), [...HEADER_NAMES].sort(), 'header names in docs/protocol.md');
  const rows = [...prose.matchAll(/^\| `([a-z-]+)` \| [^|]+ \| (?:`([a-z-]+)`)? *\|$/gm)].map((m) => [m[1], m[2] ?? '']);
  assert.deepEqual(
    rows.map(([outcome]) => outcome),
    [...OUTCOMES],
    'the outcome table lists every outcome, in order',
  );
  assert.deepEqual([...new Set(rows.map(([, reason]) => reason).filter(Boolean))].sort(), [...REASONS].sort(), 'the outcome table gives every reason');
  for (const status of JOB_STATUSES) assert.ok(prose.includes(`x-foreman-job-status: ${status}`), `docs/protocol.md shows status ${status}`);
});

const agentId = '2d1c7f3e-9a5b-4f0e-8c1d-3b6a9e2f4d10';
const update = (headers: Record<string, string>, body = ''): Exchange => ({
  method: 'PUT',
  url: '/cb',
  headers: {
    'user-agent': 'foreman/0.1.0 (linux, x64)',
    'x-foreman-job-id': 'job%201',
    'x-foreman-agent-id': agentId,
    'x-foreman-delivery-id': 'f47ac10b-58cc-4372-a567-0e02b2c3d479',
    'x-foreman-delivery-seq': '1',
    ...headers,
  },
  body: Buffer.from(body),
});

test('the traffic checker passes what the agent sends and names what breaks the contract', async () => {
  const contract = await controlServerContract();
  const poll: Exchange = {
    method: 'GET',
    url: '/jobs?queue=a',
    headers: {
      authorization: 'Bearer t',
      'user-agent': 'foreman/0.1.0 (linux, x64)',
      'x-foreman-labels': 'queue=test',
      'x-foreman-capacity': '2',
      'x-foreman-agent-id': agentId,
    },
    body: Buffer.alloc(0),
  };
  assert.deepEqual(contract.checkRequest(poll), [], 'a poll');
  const badPoll = contract.checkRequest({
    ...poll,
    headers: { ...poll.headers, authorization: undefined, 'x-foreman-capacity': '-1', 'x-foreman-labels': 'a,b' },
  });
  assert.equal(badPoll.length, 3, badPoll.join('\n'));
  assert.match(badPoll.join('\n'), /x-foreman-capacity "-1"/, 'names the capacity');

  assert.deepEqual(contract.checkRequest(update({ 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.5' }, 'anything')), [], 'a running update');
  const report = JSON.stringify({ outcome: 'failed', reason: 'exit', message: 'exited with code 3', exitCode: 3, logs: ['x'] });
  assert.deepEqual(
    contract.checkRequest(update({ 'x-foreman-job-status': 'completed', 'x-foreman-job-outcome': 'failed', 'content-type': 'application/json' }, report)),
    [],
    'a report',
  );
  const broken = [
    update({ 'x-foreman-job-status': 'completed' }),
    update({ 'x-foreman-job-status': 'running', 'x-foreman-job-outcome': 'succeeded' }),
    update({ 'x-foreman-job-status': 'done' }),
    update({ 'x-foreman-job-status': 'running', 'x-foreman-delivery-seq': '0' }),
    update({ 'x-foreman-job-status': 'completed', 'x-foreman-job-outcome': 'exploded' }),
    update({ 'x-foreman-job-status': 'completed', 'x-foreman-job-outcome': 'failed', 'content-type': 'application/json' }, '{"outcome":"failed"}'),
  ];
  for (const request of broken)
    assert.notDeepEqual(contract.checkRequest(request), [], `refused: ${JSON.stringify(request.headers)} ${request.body.toString()}`);

  const logs = (headers: Record<string, string>, body: string): Exchange => ({
    method: 'POST',
    url: '/logs',
    headers: {
      'user-agent': 'foreman/0.1.0 (linux, x64)',
      'x-foreman-job-id': 'j',
      'x-foreman-agent-id': agentId,
      'content-type': 'application/x-ndjson',
      ...headers,
    },
    body: Buffer.from(body),
  });
  const lines =
    encodeLogLine(3, { ts: '2026-11-28T07:42:30.437418862Z', stream: 'stdout', text: 'a' }) +
    encodeLogLine(4, { ts: '2026-11-28T07:42:30.437418862Z', stream: 'stderr', text: 'b' });
  assert.deepEqual(contract.checkRequest(logs({ 'x-foreman-log-offset': '3' }, lines)), [], 'a batch');
  assert.deepEqual(contract.checkRequest(logs({ 'x-foreman-log-offset': '5', 'x-foreman-log-end': '5' }, '')), [], 'the end');
  assert.notDeepEqual(contract.checkRequest(logs({ 'x-foreman-log-offset': '2' }, lines)), [], 'an offset that is not the first line');
  assert.notDeepEqual(contract.checkRequest(logs({ 'x-foreman-log-offset': '5', 'x-foreman-log-end': '6' }, '')), [], 'an end that is not the offset');
  assert.notDeepEqual(
    contract.checkRequest(logs({ 'x-foreman-log-offset': '0' }, '{"i":0,"ts":"now","stream":"stdout","text":""}\n')),
    [],
    'a timestamp that is not RFC 3339',
  );
});

test('the job API checker: requests and replies', async () => {
  const contract = await jobApiContract();
  const put: Exchange = {
    method: 'PUT',
    url: '/job/a%2Fb?token=s3cret',
    headers: { 'x-foreman-job-status': 'running', 'x-foreman-job-progress': '0.25' },
    body: Buffer.from('{}'),
  };
  assert.deepEqual(contract.checkRequest(put), [], 'a PUT');
  const json = { 'content-type': 'application/json; charset=utf-8' };
  assert.deepEqual(contract.checkReply(put, { status: 200, headers: json, body: Buffer.from('{"status":"accepted","progress":0.25}') }), [], 'its 200');
  assert.deepEqual(contract.checkReply(put, { status: 409, headers: json, body: Buffer.from('{"error":"job already ended"}') }), [], 'a 409');
  assert.notDeepEqual(contract.checkReply(put, { status: 200, headers: json, body: Buffer.from('{"ok":true}') }), [], 'a 200 without status');
  assert.notDeepEqual(contract.checkReply(put, { status: 409, headers: json, body: Buffer.from('{"message":"no"}') }), [], 'an error without error');
  assert.notDeepEqual(contract.checkRequest({ ...put, url: '/job/a' }), [], 'no token');
  assert.notDeepEqual(contract.checkRequest({ ...put, headers: { 'x-foreman-job-progress': 'half' } }), [], 'no status, progress not a number');
  const get: Exchange = { method: 'GET', url: '/job/a?token=s', headers: {}, body: Buffer.alloc(0) };
  assert.deepEqual(contract.checkReply(get, { status: 200, headers: json, body: Buffer.from('{"id":"a","body":null}') }), [], 'a GET');
  assert.notDeepEqual(contract.checkReply(get, { status: 200, headers: json, body: Buffer.from('{"id":"a"}') }), [], 'a GET reply without body');
});
