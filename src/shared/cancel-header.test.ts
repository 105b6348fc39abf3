import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCancelHeader } from './cancel-header.ts';

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
