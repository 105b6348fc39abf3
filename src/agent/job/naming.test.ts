import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerNameFor } from './naming.ts';
import { jobEndpoint } from '../../protocol/wire.ts';

test("container names stay within Docker's charset and differ for ids that sanitise alike", () => {
  const ids = ['simple', 'a/b', 'a?b', 'ünïcødé ✓', '../../etc', 'x'.repeat(256), '-leading'];
  const names = ids.map((id) => containerNameFor('0123456789abcdef', id));
  for (const name of names) assert.match(name, /^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$/);
  assert.equal(new Set(names).size, ids.length);
  assert.notEqual(containerNameFor('a', 'a/b'), containerNameFor('a', 'a?b'));
});

test('endpoints percent-encode the id', () => {
  assert.equal(jobEndpoint('http://h:1', 'a/b c?', 's'), 'http://h:1/job/a%2Fb%20c%3F?token=s');
});
