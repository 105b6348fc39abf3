/**
 * docs/configuration.md's key reference is generated from the config schema (scripts/config-docs.ts,
 * `npm run build:docs`). This fails when a key was added, removed or changed without generating the page again,
 * and when a key has no description to generate it from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_PAGE, configReference, renderConfigPage } from '../scripts/config-docs.ts';
import { LEAF_KEYS, TABLES } from '../src/config/schema.ts';
import { envVariableFor } from '../src/config/load.ts';
import { repoRoot } from './support/paths.ts';

test('docs/configuration.md holds what the schema generates today', () => {
  const page = readFileSync(join(repoRoot, CONFIG_PAGE), 'utf8');
  assert.ok(renderConfigPage(page) === page, `${CONFIG_PAGE} disagrees with src/config/schema.ts: run npm run build:docs`);
});

test('every key of the schema is in the reference, with its environment variable', () => {
  const reference = configReference();
  for (const key of [...LEAF_KEYS.filter((k) => k !== 'docker.registries'), ...TABLES]) {
    const shown = (TABLES as readonly string[]).includes(key) ? `\`[${key}]\`` : `\`${key}\``;
    assert.ok(reference.includes(`| ${shown} |`), `${key} has no row in the generated reference`);
    assert.ok(reference.includes(envVariableFor(key)), `${key}'s variable ${envVariableFor(key)} is not named`);
  }
  assert.ok(reference.includes('`[[docker.registries]]`'), 'docker.registries has a row');
});

test('no key goes undescribed, and the required keys say so', () => {
  const reference = configReference();
  for (const line of reference.split('\n').filter((l) => l.startsWith('| `'))) {
    const cells = line.split(' | ');
    assert.equal(cells.length, 5, `a row of five cells: ${line}`);
    assert.ok((cells[4]?.length ?? 0) > 12, `a meaning that says something: ${line}`);
  }
  assert.match(reference, /\| `core\.url` \| string \| required \|/, 'core.url is required');
  assert.match(reference, /\| `core\.port` \| integer \| `3000` \| `FOREMAN_CORE_PORT` \|/, "core.port's type, default and variable");
});
