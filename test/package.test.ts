/**
 * The npm package: `npm pack` ships the bundle and no sources or tests, and a copy installed from the
 * tarball into an empty folder runs, `--version` and `check`, without tsx or any bundled dependency.
 * The install compiles better-sqlite3 from source (about two minutes here).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pkg from '../package.json' with { type: 'json' };
import { repoRoot } from './support/paths.ts';

const run = promisify(execFile);

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
}

/**
 * The caller's env without NODE_OPTIONS (no `--import tsx` may leak into the installed copy) and
 * without the npm_* settings an outer `npm test` passes down (its prefix is this repository).
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (key !== 'NODE_OPTIONS' && !/^npm_/i.test(key)) env[key] = value;
  // npm, npx and the installed command run on the Node running this test, and better-sqlite3 compiles against that
  // Node's own headers when it has them beside it (as the runtime/ package's Node 24 does): nothing is downloaded.
  env.PATH = `${dirname(process.execPath)}${delimiter}${env.PATH ?? ''}`;
  const nodedir = resolve(dirname(realpathSync(process.execPath)), '..');
  if (existsSync(join(nodedir, 'include', 'node', 'node_version.h'))) env.npm_config_nodedir = nodedir;
  return { ...env, ...extra };
}

describe('npm package', { timeout: 900_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'foreman-pack-'));
  const install = join(work, 'install');
  let packed: Packed;

  before(async () => {
    // `npm pack` runs the prepare script, which builds dist/ first.
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: repoRoot, env: cleanEnv(), maxBuffer: 16 << 20 });
    packed = (JSON.parse(stdout.slice(stdout.indexOf('['))) as Packed[])[0] as Packed;
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test('holds the command, the bundle, the docs and the examples it names, and nothing else', () => {
    const paths = packed.files.map((f) => f.path);
    for (const needed of [
      'package.json',
      'bin/foreman.js',
      'dist/foreman.mjs',
      'README.md',
      'LICENSE',
      'foreman.example.toml',
      'examples/systemd/foreman.service',
    ]) {
      assert.ok(paths.includes(needed), `${needed} missing from ${paths.join(', ')}`);
    }
    const unwanted = paths.filter((p) => /^(test|bench|\.ci|src|scripts|docs|node_modules|dist\/sea)\//.test(p) || /\.test\.ts$/.test(p));
    assert.deepEqual(unwanted, []);
    assert.deepEqual(
      paths.filter((p) => p.startsWith('examples/')),
      ['examples/systemd/foreman.service'],
    );
    // Every chunk the bundle imports is in it (a stale one left in dist/ would be shipped too).
    const bundleText = readFileSync(join(repoRoot, 'dist/foreman.mjs'), 'utf8');
    for (const chunk of bundleText.match(/chunks\/[\w-]+\.mjs/g) ?? []) assert.ok(paths.includes(`dist/${chunk}`), `dist/${chunk} missing`);
    assert.equal(packed.filename, `foreman-agent-${pkg.version}.tgz`, 'the tarball is named after the package');
  });

  test('installs from the tarball and runs without tsx or any bundled dependency', async (t) => {
    mkdirSync(install);
    writeFileSync(join(install, 'package.json'), JSON.stringify({ name: 'foreman-install-test', private: true, allowScripts: { 'better-sqlite3': true } }));
    const started = Date.now();
    // --prefer-offline: better-sqlite3 and its few dependencies come from npm's cache when there.
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, packed.filename)], {
      cwd: install,
      env: cleanEnv(),
      maxBuffer: 16 << 20,
    });
    t.diagnostic(`npm install took ${((Date.now() - started) / 1000).toFixed(0)} s`);

    const modules = readdirSync(join(install, 'node_modules'));
    assert.ok(modules.includes('foreman-agent') && modules.includes('better-sqlite3'), `installed: ${modules.join(', ')}`);
    for (const bundled of ['tsx', 'esbuild', 'fastify', 'dockerode', 'pino', 'undici', 'ajv', 'smol-toml', 'typebox', 'prom-client']) {
      assert.ok(!modules.includes(bundled), `${bundled} was installed: it belongs in the bundle`);
    }
    assert.ok(!existsSync(join(install, 'node_modules/foreman-agent/src')), 'the installed package holds src/');

    // A HOME of its own: no foreman config or npm settings of this machine are read.
    const home = join(work, 'home');
    mkdirSync(home);
    const env = cleanEnv({ HOME: home });
    // The package is foreman-agent; its command is foreman.
    const version = await run('npx', ['--no-install', 'foreman', '--version'], { cwd: install, env });
    assert.equal(version.stdout, `foreman ${pkg.version} (node ${process.version})\n`, 'foreman and Node versions');

    let seen: IncomingHttpHeaders | undefined;
    const server = createServer((req, res) => {
      seen = req.headers;
      res.writeHead(204).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jobs`;
      const config = join(work, 'foreman.toml');
      writeFileSync(
        config,
        `[core]\nurl = "${url}"\ntoken = "package-test-token"\nnetwork_name = "foreman-package-test-absent"\ndata_dir = "${join(work, 'data')}"\n`,
      );
      // The other checks (engine, network) may fail on a given machine; exit 1 is fine then.
      const check = await run('npx', ['--no-install', 'foreman', 'check', '--config', config], { cwd: install, env }).catch(
        (err: { stdout?: string; stderr?: string; code?: number }) => {
          assert.equal(err.code, 1, `${err.stdout ?? ''}${err.stderr ?? ''}`);
          return { stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
        },
      );
      assert.match(check.stdout, /ok +control server http:\/\/127\.0\.0\.1:\d+\/jobs answered HTTP 204/, check.stdout + check.stderr);
      assert.equal(seen?.authorization, 'Bearer package-test-token');
      assert.match(String(seen?.['user-agent']), new RegExp(`^foreman/${pkg.version.replaceAll('.', '\\.')} `));
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
