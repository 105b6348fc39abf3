/**
 * The validators the agent runs are ajv's standalone code, generated from the schemas by
 * scripts/validators.ts (`npm run build:validators`) and committed. This fails when a schema changed
 * and they were not generated again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateValidators } from '../scripts/validators.ts';
import { repoRoot } from './support/paths.ts';

test('the committed validators are what the schemas generate today', () => {
  const generated = generateValidators();
  assert.equal(generated.length, 2);
  for (const { path, code } of generated) {
    assert.ok(readFileSync(join(repoRoot, path), 'utf8') === code, `${path} is out of date: run npm run build:validators`);
  }
});

test('the agent loads no ajv compiler: only its runtime helpers', () => {
  for (const { code } of generateValidators()) {
    const imports = [...code.matchAll(/^import .* from ["']([^"']+)["'];$/gm)].map((m) => m[1] ?? '');
    assert.ok(imports.length > 0, 'a generated validator imports its runtime helpers');
    for (const spec of imports) assert.match(spec, /^(ajv\/dist\/runtime\/|ajv-formats\/dist\/formats\.js$|\.\.?\/)/, spec);
  }
});
