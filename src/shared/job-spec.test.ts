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
    [{ ...valid, image: 'a//b' }, /image is not an image reference/, 'j1'],
    [{ ...valid, image: 'a/' }, /image is not an image reference/, 'j1'],
    [{ ...valid, callbackUrl: 'http://' }, /callbackUrl is not a valid URL/, 'j1'],
    [{ ...valid, callbackUrl: 'http://127.0.0.1:99999/x' }, /callbackUrl is not a valid URL/, 'j1'],
    [{ ...valid, callbackUrl: 'http://h:0/x' }, /callbackUrl has port 0/, 'j1'],
    [{ ...valid, id: '\ud800' }, /id is not well-formed Unicode/, undefined],
    [{ ...valid, env: { A: 'ok\udfff' } }, /env holds a name or value that is not well-formed Unicode/, 'j1'],
    [{ ...valid, command: ['x', '\ud800y'] }, /command holds a string that is not well-formed Unicode/, 'j1'],
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

test('an invalid URL field: the callback URL is kept for the report only when it is deliverable', () => {
  const badLogs = validateJob({ ...valid, logsUrl: 'https://' });
  assert.ok(!badLogs.ok, 'a bad logsUrl is refused');
  if (!badLogs.ok) {
    assert.match(badLogs.reason, /^logsUrl is not a valid URL/);
    assert.equal(badLogs.callbackUrl, valid.callbackUrl);
  }
  for (const callbackUrl of ['https://', 'http://127.0.0.1:99999/x', 'http://h:0/', 'http://\ud800/']) {
    const result = validateJob({ ...valid, callbackUrl });
    assert.ok(!result.ok, callbackUrl);
    if (!result.ok) assert.equal(result.callbackUrl, undefined, callbackUrl);
  }
});

test('an id that cannot be echoed is shown escaped, never reported', () => {
  const result = validateJob({ ...valid, id: 'a\ud800b' });
  assert.ok(!result.ok, 'the job is refused');
  if (!result.ok) {
    assert.equal(result.id, undefined);
    assert.equal(result.shownId, 'a\\ud800b');
  }
});

test('well-formed text of any kind is accepted as it is', () => {
  for (const job of [
    { ...valid, id: 'emoji-\ud83d\ude00', env: { 'K\u00e9': 'v\u0000\u2028' }, command: ['\uffff'] },
    { ...valid, image: 'registry.example:5000/team/app:v1.2-rc_1@sha256:' + 'a'.repeat(64) },
    { ...valid, callbackUrl: 'https://user:pw@[::1]:65535/cb?x=1', logsUrl: 'HTTP://h:1/logs' },
    { ...valid, body: { text: '\ud800' } },
  ]) {
    const result = validateJob(job);
    assert.equal(result.ok, true, JSON.stringify(result));
  }
});
