// Builds the agent's container image, `foreman:<version>` and `foreman:latest`, without a registry:
// FROM scratch with the pinned Node (runtime/package.json, scripts/runtime.mjs) and its libraries
// (scripts/scratch-image.ts), the bundle
// (dist/foreman.mjs and its chunks, rebuilt first when older than the sources), bin/foreman.js, package.json and the
// one native addon the bundle leaves external, better-sqlite3 (built for that Node), with what it requires at run time.
//
//   node --import tsx scripts/build-image.ts [--tag T]     (or: npm run build:image)
//
// An unchanged rebuild is skipped (inputs-hash label), so running it again is cheap.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { V8_FLAGS } from '../src/cli/main.ts';
import { type RuntimeNode, runtimeNode, sqliteAddonFor } from './runtime.mjs';
import { NODE_IN_IMAGE, baseInputs, buildScratchImage, hashParts, parseTagArg, placeFile } from './scratch-image.ts';

const repoRoot = resolve(import.meta.dirname, '..');
const APP = '/app';
export const AGENT_DATA_DIR = '/var/lib/foreman';
const HASH_LABEL = 'dev.foreman.agent.inputs-hash';
// Bump when the layout below changes, so old images with the same inputs get rebuilt.
const RECIPE_VERSION = '4';
/** The image label that says which Node it carries. */
export const NODE_VERSION_LABEL = 'dev.foreman.node-version';
/** Read only when present: lets the agent trust what the host trusts for an https control server. */
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
/** better-sqlite3's dependencies used only by `npm install` (it fetches prebuilt binaries); not at run time. */
const INSTALL_ONLY = new Set(['prebuild-install']);

export interface BuildAgentImageOptions {
  /** Default: `foreman:<package.json version>` and `foreman:latest`. */
  readonly tags?: readonly string[];
  /** Suppress `docker build` output (it goes to stderr otherwise). Default true. */
  readonly quiet?: boolean;
}

/** Builds the agent image (or finds it up to date) and returns its first tag. */
export async function buildAgentImage(opts: BuildAgentImageOptions = {}): Promise<{ tag: string; built: boolean }> {
  const { version } = await packageJson();
  const tags = opts.tags ?? [`foreman:${version}`, 'foreman:latest'];
  await ensureBundle();
  const runtime = await runtimeNode();
  const files = await imageFiles(runtime);
  const parts: Array<string | Buffer> = [RECIPE_VERSION, await baseInputs(runtime.node)];
  for (const [source, target] of files) parts.push(target, await readFile(source));

  // Two malloc arenas and (below) a 1 MB young generation: RSS grows far less under steady work (docs/benchmarks.md, Soak).
  const env: Record<string, string> = { FOREMAN_CORE_DATA_DIR: AGENT_DATA_DIR, MALLOC_ARENA_MAX: '2' };
  if (files.some(([, target]) => target === HOST_CA_BUNDLE)) env.NODE_EXTRA_CA_CERTS = HOST_CA_BUNDLE;
  const { built } = await buildScratchImage({
    tags,
    hashLabel: HASH_LABEL,
    inputsHash: hashParts(parts),
    node: runtime.node,
    labels: { 'org.opencontainers.image.title': 'foreman', 'org.opencontainers.image.version': version, [NODE_VERSION_LABEL]: runtime.version },
    contextPrefix: 'foreman-agent-image-',
    async populate(rootfs) {
      for (const [source, target] of files) await placeFile(source, join(rootfs, target));
      // The store holds job secrets: only root (the agent) reads it. A new named volume copies this mode.
      await mkdir(join(rootfs, AGENT_DATA_DIR), { recursive: true });
      await chmod(join(rootfs, AGENT_DATA_DIR), 0o700);
    },
    instructions: [
      `ENV ${Object.entries(env)
        .map(([name, value]) => `${name}=${value}`)
        .join(' ')}`,
      `VOLUME ${AGENT_DATA_DIR}`,
      // No init needed: the agent handles SIGTERM and SIGINT itself, also as PID 1, and starts no child processes.
      // The agent's V8 flags on the command line too: from Node 24 on, main() setting them at run time is too late.
      `ENTRYPOINT ${JSON.stringify([NODE_IN_IMAGE, '--max-semi-space-size=1', ...V8_FLAGS, `${APP}/bin/foreman.js`])}`,
      'CMD ["run"]',
      // Liveness over the agent's socket in data_dir (FOREMAN_CORE_DATA_DIR above): no metrics listener needed.
      // A start period covers a slow first start; an agent waiting for its engine is alive all the same.
      `HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ${JSON.stringify([NODE_IN_IMAGE, '--max-semi-space-size=1', `${APP}/bin/foreman.js`, 'ping'])}`,
    ],
    quiet: opts.quiet ?? true,
  });
  return { tag: tags[0] ?? '', built };
}

async function packageJson(): Promise<{ version: string }> {
  return JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
}

/** Runs `npm run build`'s script when dist/foreman.mjs is missing or older than what it is made from. */
async function ensureBundle(): Promise<void> {
  const bundle = join(repoRoot, 'dist', 'foreman.mjs');
  const built = existsSync(bundle) ? (await stat(bundle)).mtimeMs : -1;
  const inputs = [...(await listFiles(join(repoRoot, 'src'))), ...['package.json', 'package-lock.json', 'scripts/build.mjs'].map((f) => join(repoRoot, f))];
  let newest = 0;
  for (const file of inputs) if (existsSync(file)) newest = Math.max(newest, (await stat(file)).mtimeMs);
  if (built >= newest) return;
  await new Promise<void>((done, fail) => {
    const child = spawn(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done() : fail(new Error(`scripts/build.mjs exited with ${code ?? 'a signal'}`))));
  });
}

/** [host path, path in the image] for everything besides node and its libraries. */
async function imageFiles(runtime: RuntimeNode): Promise<Array<[string, string]>> {
  const files: Array<[string, string]> = ['package.json', 'bin/foreman.js'].map((f) => [join(repoRoot, f), `${APP}/${f}`]);
  for (const file of await bundleFiles()) files.push([file, `${APP}/${relative(repoRoot, file)}`]);
  for (const dir of await runtimePackages()) {
    const name = relative(join(repoRoot, 'node_modules'), dir);
    // better-sqlite3 ships its C++ sources and the whole SQLite amalgamation (about 28 MB): take the JS, and the addon
    // built for the image's Node (below).
    const wanted = name === 'better-sqlite3' ? ['package.json', 'LICENSE', 'lib'] : ['.'];
    for (const entry of wanted) {
      const path = join(dir, entry);
      for (const file of (await stat(path)).isDirectory() ? await listFiles(path) : [path]) {
        files.push([file, `${APP}/node_modules/${name}/${relative(dir, file)}`]);
      }
    }
  }
  files.push([await sqliteAddonFor(runtime), `${APP}/node_modules/better-sqlite3/build/Release/better_sqlite3.node`]);
  if (existsSync(HOST_CA_BUNDLE)) files.push([HOST_CA_BUNDLE, HOST_CA_BUNDLE]);
  return files;
}

/**
 * dist/foreman.mjs and the chunks it imports, statically or on first use, followed transitively. esbuild
 * leaves chunks of earlier builds in dist/, so copying the whole folder would carry (and hash) stale ones.
 */
async function bundleFiles(): Promise<string[]> {
  const dist = join(repoRoot, 'dist');
  const found = new Set<string>();
  const queue = [join(dist, 'foreman.mjs')];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    if (found.has(file)) continue;
    if (!existsSync(file)) throw new Error(`${relative(repoRoot, file)} is missing: run npm run build`);
    found.add(file);
    for (const match of (await readFile(file, 'utf8')).matchAll(/["'](\.\.?\/[^"'\s]+\.mjs)["']/g)) {
      const target = resolve(dirname(file), match[1] ?? '');
      if (target.startsWith(`${dist}/`)) queue.push(target);
    }
  }
  return [...found].sort();
}

/** better-sqlite3 and, transitively, the packages it requires at run time (bindings, file-uri-to-path). */
async function runtimePackages(): Promise<string[]> {
  const found: string[] = [];
  const visit = async (name: string, from: string): Promise<void> => {
    // npm hoists to the top-level node_modules; a version conflict nests it under its dependant.
    const dir = [join(from, 'node_modules', name), join(repoRoot, 'node_modules', name)].find((d) => existsSync(join(d, 'package.json')));
    if (!dir) throw new Error(`${name} is not installed (run npm ci)`);
    if (found.includes(dir)) return;
    found.push(dir);
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) if (!INSTALL_ONLY.has(dep)) await visit(dep, dir);
  };
  await visit('better-sqlite3', repoRoot);
  return found;
}

/** Files under `dir`, recursively, leaving out tests and nested node_modules (walked as packages instead). */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!['node_modules', 'test', 'tests', '.git'].includes(entry.name)) out.push(...(await listFiles(path)));
    } else if (entry.isFile()) {
      out.push(path);
    }
  }
  return out.sort();
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    const started = performance.now();
    const tag = parseTagArg(process.argv.slice(2));
    const { tag: primary, built } = await buildAgentImage({ tags: tag ? [tag] : undefined, quiet: false });
    process.stderr.write(`agent image ${built ? 'built' : 'up to date'} in ${Math.round(performance.now() - started)} ms\n`);
    process.stdout.write(`${primary}\n`);
  } catch (err) {
    process.stderr.write(`build:image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
