/**
 * The supported Node range is honest: every package `npm ci` installs (package-lock.json) accepts the lowest Node
 * that package.json's `engines` allows, and the Node the image and the single executable carry
 * (runtime/package.json), so `npm ci` on either prints no EBADENGINE warning. A dependency that moves its floor
 * above ours fails here, naming it: pin a version that still supports ours (package.json `overrides`), or raise
 * `engines` on purpose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { pinnedNodeVersion } from '../scripts/runtime.mjs';
import { repoRoot } from './support/paths.ts';

interface LockPackage {
  version?: string;
  engines?: { node?: string } | string[];
}

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
const floor = semver.minVersion(pkg.engines.node);

/** The packages whose `engines.node` does not accept this Node version, as "name@version (range)". */
function refusing(node: string): string[] {
  const found: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || Array.isArray(entry.engines) || entry.engines?.node === undefined) continue;
    if (!semver.satisfies(node, entry.engines.node, { includePrerelease: true })) {
      found.push(`${path.replace(/^.*node_modules\//, '')}@${entry.version ?? '?'} (engines.node ${entry.engines.node})`);
    }
  }
  return found;
}

test('engines.node has a lowest version, and the machine floor of the developers guide is 20.19', () => {
  assert.ok(floor, `package.json engines.node ${pkg.engines.node} has no lowest version`);
  assert.equal(floor.version, '20.19.0', 'the lowest supported Node');
});

test('every locked package accepts the lowest Node that engines allows (no EBADENGINE on npm ci)', () => {
  assert.deepEqual(refusing(floor?.version ?? '0.0.0'), [], `packages that refuse Node ${floor?.version ?? '?'}`);
});

test('every locked package, and engines, accept the Node that the image and the single executable carry', () => {
  const shipped = pinnedNodeVersion();
  assert.ok(semver.satisfies(shipped, pkg.engines.node), `runtime/package.json pins Node ${shipped}, outside engines.node ${pkg.engines.node}`);
  assert.deepEqual(refusing(shipped), [], `packages that refuse Node ${shipped}`);
});

test('the shipped Node is a supported LTS line (an even major, 24 or later)', () => {
  const major = semver.major(pinnedNodeVersion());
  assert.ok(major >= 24 && major % 2 === 0, `runtime/package.json pins Node ${pinnedNodeVersion()}: not an LTS line still supported`);
});
