import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, describeHttpError, isRetryableStatus } from './backoff.ts';

test('backoff doubles per attempt and stays within [cap/2, cap]', () => {
  const policy = { baseMs: 100, maxMs: 5000 };
  const cases: Array<[attempt: number, cap: number]> = [
    [1, 100],
    [2, 200],
    [3, 400],
    [6, 3200],
    [7, 5000],
    [50, 5000],
  ];
  for (const [attempt, cap] of cases) {
    assert.equal(
      backoffDelay(policy, attempt, () => 0),
      cap / 2,
      `low end, attempt ${attempt}`,
    );
    assert.equal(
      backoffDelay(policy, attempt, () => 1),
      cap,
      `high end, attempt ${attempt}`,
    );
  }
});

test('jitter spreads delays', () => {
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) seen.add(backoffDelay({ baseMs: 1000, maxMs: 1000 }, 1));
  assert.ok(seen.size > 10, 'the delays are jittered');
});

test('retry classification: 408, 429 and 5xx retry; other 4xx are final', () => {
  for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [400, 401, 403, 404, 409, 413, 422]) assert.equal(isRetryableStatus(s), false, String(s));
});

test('error descriptions: code and message, every address of an aggregate, never a stack', () => {
  const refused = (address: string) => Object.assign(new Error(`connect ECONNREFUSED ${address}`), { code: 'ECONNREFUSED' });
  assert.equal(describeHttpError(refused('127.0.0.1:9')), 'connect ECONNREFUSED 127.0.0.1:9');
  assert.equal(
    describeHttpError(new AggregateError([refused('::1:9'), refused('127.0.0.1:9')], '')),
    'connect ECONNREFUSED ::1:9; connect ECONNREFUSED 127.0.0.1:9',
  );
  assert.equal(describeHttpError(Object.assign(new Error(''), { code: 'ECONNRESET' })), 'ECONNRESET');
  assert.equal(describeHttpError(Object.assign(new Error('socket hang up'), { code: 'UND_ERR_SOCKET' })), 'UND_ERR_SOCKET: socket hang up');
  assert.equal(describeHttpError('plain'), 'plain');
});
