import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redactUrl, redactValues } from './redact.ts';

test('redactUrl hides a password, and a user name given without one', () => {
  assert.equal(redactUrl('http://user:hunter2@cs.example:8080/cb?x=1'), 'http://user:***@cs.example:8080/cb?x=1');
  assert.equal(redactUrl('https://ghp_token@cs.example/cb'), 'https://***@cs.example/cb');
  assert.equal(redactUrl('HTTP://u:p%40ss@h/'), 'http://u:***@h/');
});

test('redactUrl leaves a URL without credentials exactly as it was', () => {
  for (const url of ['http://127.0.0.1:9/cb', 'https://h/a?step=x#f', 'HTTP://H/x', 'not a url']) assert.equal(redactUrl(url), url);
});

test('redactUrl hides query values whose names say they are secrets', () => {
  assert.equal(redactUrl('https://h/a?token=abc&step=2#f'), 'https://h/a?token=***&step=2#f');
  assert.equal(redactUrl('http://h/cb?X-Amz-Signature=0f&api_key=k&user=me'), 'http://h/cb?X-Amz-Signature=***&api_key=***&user=me');
});

test('redactUrl hides the userinfo of a URL that does not parse', () => {
  assert.equal(redactUrl('http://user:hunter2@127.0.0.1:99999/x'), 'http://***@127.0.0.1:99999/x');
  assert.equal(redactUrl('http://user:pw@/x'), 'http://***@/x');
  assert.ok(!redactUrl('http://a:secret@b@c d/').includes('secret'), 'the password is hidden');
});

test('redactValues hides each value raw, JSON-escaped and Go-quoted, longest first', () => {
  assert.equal(redactValues('invalid environment variable: =supersecret1', ['supersecret1']), 'invalid environment variable: =[redacted]');
  const engine = 'environment variable value can\'t contain null(\\x00): "BAD=nul\\x00supersecret2": unknown';
  assert.equal(redactValues(engine, ['nul\u0000supersecret2']), 'environment variable value can\'t contain null(\\x00): "BAD=[redacted]": unknown');
  assert.equal(redactValues('a "q\\"uote\\n" b', ['q"uote\n']), 'a "[redacted]" b');
  assert.equal(redactValues('tab\\there and é\\u00a0x', ['tab\there', 'é\u00a0x']), '[redacted] and [redacted]');
  assert.equal(redactValues('abcdef abc', ['abc', 'abcdef']), '[redacted] [redacted]');
  assert.equal(redactValues('a.b*c a-b-c', ['a.b*c']), '[redacted] a-b-c');
});

test('redactValues ignores empty values and leaves text without them alone', () => {
  assert.equal(redactValues('nothing here', ['', 'absent']), 'nothing here');
  assert.equal(redactValues('nothing here', []), 'nothing here');
});
