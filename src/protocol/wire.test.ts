import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER,
  HEADER_NAMES,
  HEADER_PREFIX,
  encodeJobId,
  encodeLabels,
  encodeLogLine,
  formatCancelHeader,
  identityHeaders,
  logBatchHeaders,
  parseCancelHeader,
  parseLabels,
  parseLogBatch,
  pollHeaders,
} from './wire.ts';

test('every header name is lower-case, starts with x-foreman- and is listed once', () => {
  for (const name of HEADER_NAMES) assert.match(name, /^x-foreman-[a-z-]+$/, `${name} is a lower-case protocol header`);
  assert.ok(
    HEADER_NAMES.every((n) => n.startsWith(HEADER_PREFIX)),
    'every name has the prefix',
  );
  assert.equal(new Set(HEADER_NAMES).size, HEADER_NAMES.length, 'no name twice');
  assert.equal(HEADER.cancel, 'x-foreman-cancel', 'the cancel header keeps its spelling');
});

test('a job id for x-foreman-job-id: encodeURIComponent when well-formed, a lone surrogate as its WTF-8 bytes', () => {
  for (const id of ['job-1', 'a/b c', 'ünï-😀-\u0000-"\\', '%ED%A0%80'])
    assert.equal(encodeJobId(id), encodeURIComponent(id), `${id} as encodeURIComponent has it`);
  assert.equal(encodeJobId('\ud800'), '%ED%A0%80', 'a lone high surrogate');
  assert.equal(encodeJobId('a\udfffb c'), 'a%ED%BF%BFb%20c', 'a lone low surrogate among other characters');
  assert.equal(encodeJobId('\ud83d\ude00\ud800'), '%F0%9F%98%80%ED%A0%80', 'a pair stays a pair; the lone one after it is its own');
  assert.equal(encodeJobId('\udc00\ud800'), '%ED%B0%80%ED%A0%80', 'a low then a high surrogate are two lone ones, not a pair');
});

test('a cancel header is a comma-separated list of percent-encoded ids', () => {
  assert.deepEqual(parseCancelHeader(undefined), []);
  assert.deepEqual(parseCancelHeader(''), []);
  assert.deepEqual(parseCancelHeader('a'), ['a']);
  assert.deepEqual(parseCancelHeader(` ${encodeURIComponent('a,b/ü')} , c,,c `), ['a,b/ü', 'c']);
  assert.deepEqual(parseCancelHeader(['x', 'y,z']), ['x', 'y', 'z']);
});

test('entries that do not decode or are too long are skipped, not fatal', () => {
  assert.deepEqual(parseCancelHeader('%E0%A4%A,ok,%ZZ'), ['ok']);
  assert.deepEqual(parseCancelHeader(`${'x'.repeat(257)},fine`), ['fine']);
  assert.equal(parseCancelHeader(Array.from({ length: 2000 }, (_, i) => `j${i}`).join(',')).length, 1000);
});

test('a cancel header written for a server round-trips and stays under its length', () => {
  const ids = ['a,b', 'ü/x', 'plain'];
  assert.deepEqual(parseCancelHeader(formatCancelHeader(ids)), ids, 'the ids come back');
  assert.equal(formatCancelHeader([]), undefined, 'nothing to send');
  const many = Array.from({ length: 3000 }, (_, i) => `job-${i}`);
  const value = formatCancelHeader(many) ?? '';
  assert.ok(value.length <= 8 * 1024, `the value is ${value.length} characters`);
  assert.deepEqual(parseCancelHeader(value), many.slice(0, parseCancelHeader(value).length), 'the oldest ids first');
});

test('labels: encoded pairs parse back; a bad pair is an error, not a throw', () => {
  const labels = { queue: 'build', 'a=b': 'c,d', gpu: '' };
  const parsed = parseLabels(encodeLabels(labels));
  assert.ok('labels' in parsed, 'parses');
  assert.deepEqual({ ...parsed.labels }, labels, 'the same labels');
  assert.deepEqual(parseLabels('x=1,,'), { labels: Object.assign(Object.create(null) as object, { x: '1' }) }, 'a trailing comma is fine');
  for (const bad of ['novalue', 'a=b=c', '=v', '%ZZ=1']) assert.ok('error' in parseLabels(bad), `${bad} is refused`);
});

test('a poll carries the token, capacity, labels and agent id', () => {
  const headers = pollHeaders({ token: 't', userAgent: 'foreman/1', labels: { q: 'a b' }, capacity: 2, agentId: 'id-1' });
  assert.deepEqual(
    headers,
    {
      authorization: 'Bearer t',
      'user-agent': 'foreman/1',
      'x-foreman-labels': 'q=a%20b',
      'x-foreman-capacity': '2',
      'x-foreman-agent-id': 'id-1',
      accept: 'application/json',
    },
    'the poll headers',
  );
  assert.deepEqual(identityHeaders('a/b', 'ag'), { 'x-foreman-job-id': 'a%2Fb', 'x-foreman-agent-id': 'ag' }, 'identity headers');
});

test('a log batch: NDJSON lines that parse back, and the headers of a batch and of the end', () => {
  const body =
    encodeLogLine(4, { ts: '2026-01-01T00:00:00.000000000Z', stream: 'stdout', text: 'a "q"' }) + encodeLogLine(5, { ts: 't', stream: 'stderr', text: '' });
  assert.deepEqual(
    parseLogBatch(body),
    {
      lines: [
        { i: 4, ts: '2026-01-01T00:00:00.000000000Z', stream: 'stdout', text: 'a "q"' },
        { i: 5, ts: 't', stream: 'stderr', text: '' },
      ],
    },
    'the lines',
  );
  assert.deepEqual(parseLogBatch('{"i":0,"ts":"t","stream":"stdout","text":""}\n{"i":2,"ts":"t","stream":"stdout","text":""}\n'), {
    error: 'line 2 of the batch is number 2, after 0',
  });
  assert.ok('error' in parseLogBatch('nope\n'), 'not JSON');
  assert.ok('error' in parseLogBatch('{"i":0,"ts":"t","stream":"stdin","text":""}'), 'not a stream');
  assert.deepEqual(
    logBatchHeaders({ jobId: 'j 1', agentId: 'a', userAgent: 'u', offset: 7, end: 7 }),
    {
      'content-type': 'application/x-ndjson',
      'user-agent': 'u',
      'x-foreman-job-id': 'j%201',
      'x-foreman-agent-id': 'a',
      'x-foreman-log-offset': '7',
      'x-foreman-log-end': '7',
    },
    'the end request',
  );
});
