import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IMAGE_REFERENCE, httpUrlProblem, isWellFormedText, showText } from './job-input.ts';

const image = new RegExp(IMAGE_REFERENCE, 'u');

test("image references that follow Docker's grammar pass (letter case is the engine's to judge)", () => {
  for (const ref of [
    'img',
    'foreman-test-job:latest',
    'library/ubuntu:22.04',
    'a__b/c.d/e---f',
    'localhost:5000/app',
    '127.0.0.1:1/foreman/no-such-image:latest',
    '[::1]:5000/app:v1',
    `app@sha256:${'0'.repeat(64)}`,
    `registry.example/app:1@sha256:${'f'.repeat(64)}`,
    'UPPER/Image:1',
    `name:${'t'.repeat(128)}`,
  ]) {
    assert.ok(image.test(ref), ref);
  }
});

test('image references the engine would redirect or refuse fail', () => {
  for (const ref of [
    'a//b',
    'a/',
    '/a',
    'a/./b',
    'a/../b',
    '..',
    'a:',
    'a@',
    'a:b:c',
    '-a',
    'a-',
    'a..b',
    'a@sha256:xyz',
    `name:${'t'.repeat(129)}`,
    'a b',
    'a?b',
    'a#b',
    'a%2Fb',
  ]) {
    assert.ok(!image.test(ref), ref);
  }
});

test('httpUrlProblem accepts deliverable http(s) URLs only', () => {
  for (const url of ['http://h/cb', 'HTTPS://h:443/x', 'http://u:p@h:1/x?y#z', 'http://[::1]:65535/']) assert.equal(httpUrlProblem(url), undefined, url);
  const cases: Array<[string, RegExp]> = [
    ['http://', /not a valid URL/],
    ['https://', /not a valid URL/],
    ['http://127.0.0.1:99999/x', /not a valid URL/],
    ['http://h:0/x', /port 0/],
    ['ftp://h/x', /http\(s\)/],
    ['http:/h/x', /http\(s\)/],
    ['http://h\ud800/', /well-formed/],
  ];
  for (const [url, reason] of cases) assert.match(httpUrlProblem(url) ?? '', reason, url);
});

test('lone surrogates are found and shown escaped; pairs are fine', () => {
  assert.equal(isWellFormedText('a\ud83d\ude00b'), true);
  assert.equal(isWellFormedText('\ud800'), false);
  assert.equal(isWellFormedText('x\udc00'), false);
  assert.equal(showText('a\ud800b\udfff'), 'a\\ud800b\\udfff');
  assert.equal(showText('x'.repeat(301)), `${'x'.repeat(300)}…`);
});
