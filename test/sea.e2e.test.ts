/** The single executable (`npm run build:sea`): built here, copied alone to an empty folder, and run for a real job. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkg from '../package.json' with { type: 'json' };
import { pinnedNodeVersion } from '../scripts/runtime.mjs';
import { testJobImage } from './support/image.ts';
import { spawnAgent, spawnStack } from './support/agents.ts';
import { repoRoot } from './support/paths.ts';
import { job } from './support/reports.ts';

describe('single executable', { timeout: 300_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'foreman-sea-'));
  const executable = join(work, 'bin', 'foreman');

  before(async () => {
    const build = join(work, 'build');
    execFileSync(process.execPath, [join(repoRoot, 'scripts/build-sea.mjs'), '--out', build], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    // Alone in a folder with no node_modules anywhere above it: everything must come from inside.
    mkdirSync(join(work, 'bin'));
    copyFileSync(join(build, 'foreman'), executable);
    rmSync(build, { recursive: true });
    await testJobImage();
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test('prints its version and the pinned Node it carries, with nothing beside it', () => {
    assert.deepEqual(readdirSync(join(work, 'bin')), ['foreman'], 'the executable is alone in its folder');
    const run = spawnSync(executable, ['--version'], { cwd: join(work, 'bin'), env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' });
    // The Node of runtime/package.json, whatever Node built it (and ran this test).
    assert.equal(run.stdout, `foreman ${pkg.version} (node v${pinnedNodeVersion()})\n`, 'foreman and the embedded Node versions');
    // No "Code cache data rejected": the blob was made under the V8 flags the executable runs with (its execArgv).
    assert.equal(run.stderr, '', 'nothing on stderr');
    assert.equal(run.status, 0, 'exit status');
  });

  test('runs a job to its completion callback, with the SQLite addon it carries', async () => {
    // TMPDIR: the addon is unpacked inside the test's folder, where this test can see it.
    const s = await spawnStack({}, { spawn: (env) => spawnAgent(env, { TMPDIR: env.dir }, [], [], executable) });
    const { control, callbacks, env } = s;
    const agent = s.agent;
    try {
      control.reply([job('sea-1', callbacks.url(), { values: [1, 2, 3] })]);
      const done = await callbacks.waitForCompletion('sea-1', 60_000);
      assert.deepEqual(JSON.parse(done.body.toString()), { result: 6 });
      assert.equal(done.headers['x-foreman-job-outcome'], 'succeeded');
      assert.match(String(done.headers['user-agent']), new RegExp(`^foreman/${pkg.version.replaceAll('.', '\\.')} `));

      const unpacked = readdirSync(env.dir).filter((name) => name.startsWith('foreman-'));
      assert.equal(unpacked.length, 1, `unpack folders: ${unpacked.join(', ')}`);
      assert.match(readdirSync(join(env.dir, unpacked[0] ?? '')).join(' '), /^better_sqlite3-[0-9a-f]{16}\.node$/);
      assert.ok(existsSync(join(env.dir, 'data', 'foreman.db')), 'the agent made its database in data_dir');
      assert.deepEqual(readdirSync(join(work, 'bin')), ['foreman']);
    } finally {
      await s.close();
    }
    assert.equal(await agent.exited, 0, 'a clean stop on SIGTERM');
  });
});
