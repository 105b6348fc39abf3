import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateJob } from './job-spec.ts';

const valid = { id: 'j1', image: 'img', body: { values: [1] }, callbackUrl: 'http://127.0.0.1:9/cb' };

test('valid jobs, including the seed fields port and alwaysPull, and unknown fields', () => {
  for (const job of [
    valid,
    { ...valid, body: null },
    { ...valid, port: 8080, alwaysPull: true, command: ['node', 'x'], env: { A: 'b' } },
    { ...valid, cancelGracePeriod: 0, stallTimeout: 60_000 },
    { ...valid, somethingNew: 1 },
    { ...valid, id: 'x'.repeat(256) },
  ]) {
    const result = validateJob(job);
    assert.equal(result.ok, true, JSON.stringify(result));
  }
});

test('invalid jobs give a reason and keep a usable id and callback URL', () => {
  const cases: Array<[unknown, RegExp, string | undefined]> = [
    [{ ...valid, image: undefined }, /missing required field "image"/, 'j1'],
    [{ id: 'j2', image: 'i', callbackUrl: 'http://h/cb' }, /"body"/, 'j2'],
    [{ ...valid, callbackUrl: 'ftp://h/cb' }, /http\(s\)/, 'j1'],
    [{ ...valid, env: { A: 1 } }, /env/, 'j1'],
    [{ ...valid, id: '' }, /id/, undefined],
    [{ ...valid, id: 'x'.repeat(257) }, /id/, undefined],
    [{ ...valid, command: 'ls' }, /command/, 'j1'],
    [{ ...valid, cancelGracePeriod: -1 }, /cancelGracePeriod/, 'j1'],
    [{ ...valid, stallTimeout: 1.5 }, /stallTimeout/, 'j1'],
    [{ ...valid, image: 'has spaces!' }, /image is not an image reference/, 'j1'],
    ['a string', /object/, undefined],
    [null, /object/, undefined],
  ];
  for (const [raw, reason, id] of cases) {
    const result = validateJob(raw);
    assert.equal(result.ok, false, JSON.stringify(raw));
    if (!result.ok) {
      assert.match(result.reason, reason, JSON.stringify(raw));
      assert.equal(result.id, id);
    }
  }
});
