import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REDACTED, Redactor } from './redactor.ts';

test('every occurrence of every value is replaced by [redacted]', () => {
  const redactor = new Redactor(['hunter2', 'tok-123']);
  assert.equal(REDACTED, '[redacted]');
  assert.equal(redactor.redact('a hunter2 b tok-123 c hunter2hunter2'), 'a [redacted] b [redacted] c [redacted][redacted]');
  assert.equal(redactor.redact('nothing secret here'), 'nothing secret here');
});

test('a value that contains another is hidden whole (longest first), whatever the order given', () => {
  for (const values of [
    ['abc', 'xxabcxx', 'abcdef'],
    ['xxabcxx', 'abcdef', 'abc'],
  ]) {
    const redactor = new Redactor(values);
    assert.equal(redactor.redact('1 xxabcxx 2 abc 3 abcdef 4'), '1 [redacted] 2 [redacted] 3 [redacted] 4', JSON.stringify(values));
  }
});

test('regular-expression characters in a value are taken literally', () => {
  const redactor = new Redactor(['a.b*c(d)', '$1\\', '[x]+?']);
  assert.equal(redactor.redact('a.b*c(d) axbbbc(d) abc(d)'), '[redacted] axbbbc(d) abc(d)');
  assert.equal(redactor.redact('cost $1\\ and $1 and [x]+? and xx'), 'cost [redacted] and $1 and [redacted] and xx');
});

test('empty values are ignored; a redactor with none is empty and changes nothing', () => {
  const none = new Redactor(['', '']);
  assert.equal(none.empty, true);
  assert.equal(none.redact('abc', { continues: true, continued: true }), 'abc');
  assert.equal(new Redactor([]).empty, true);
  const some = new Redactor(['', 'secret']);
  assert.equal(some.empty, false);
  assert.equal(some.redact('a secret'), 'a [redacted]');
});

test('continues: a trailing fragment of at least 4 characters that begins a value is hidden', () => {
  const redactor = new Redactor(['supersecret']);
  assert.equal(redactor.redact('token=supe', { continues: true }), 'token=[redacted]');
  assert.equal(redactor.redact('token=supersecre', { continues: true }), 'token=[redacted]');
  assert.equal(redactor.redact('token=sup', { continues: true }), 'token=sup', 'three characters are left alone');
  assert.equal(redactor.redact('token=supe', { continues: false }), 'token=supe', 'only when the text goes on');
  assert.equal(redactor.redact('token=supe'), 'token=supe');
  assert.equal(redactor.redact('supe middle', { continues: true }), 'supe middle', 'only at the very end');
});

test('continues: for a value of 4 characters or fewer, the whole value but one character is hidden', () => {
  const redactor = new Redactor(['abc']);
  assert.equal(redactor.redact('x=ab', { continues: true }), 'x=[redacted]');
  assert.equal(redactor.redact('x=a', { continues: true }), 'x=a');
  const four = new Redactor(['wxyz']);
  assert.equal(four.redact('v=wxy', { continues: true }), 'v=[redacted]');
  assert.equal(four.redact('v=wx', { continues: true }), 'v=wx');
});

test('continued: a leading fragment that ends a value is hidden', () => {
  const redactor = new Redactor(['supersecret']);
  assert.equal(redactor.redact('cret and more', { continued: true }), '[redacted] and more');
  assert.equal(redactor.redact('upersecret!', { continued: true }), '[redacted]!');
  assert.equal(redactor.redact('ret and more', { continued: true }), 'ret and more', 'three characters are left alone');
  assert.equal(redactor.redact('cret and more'), 'cret and more', 'only when the text carries on');
  assert.equal(redactor.redact('and cret', { continued: true }), 'and cret', 'only at the very start');
  const short = new Redactor(['abc']);
  assert.equal(short.redact('bc tail', { continued: true }), '[redacted] tail');
  assert.equal(short.redact('c tail', { continued: true }), 'c tail');
});

test('continued and continues together hide both ends, and whole values in between', () => {
  const redactor = new Redactor(['supersecret', 'other-value']);
  assert.equal(redactor.redact('cret mid other-value end supe', { continues: true, continued: true }), '[redacted] mid [redacted] end [redacted]');
});

test('fragments of every value are looked for: of a long one from 4 characters, of a short one from all but one', () => {
  const redactor = new Redactor(['abcdefgh', 'fgh']);
  assert.equal(redactor.redact('x abcdefg', { continues: true }), 'x [redacted]');
  assert.equal(redactor.redact('x fg', { continues: true }), 'x [redacted]');
});
