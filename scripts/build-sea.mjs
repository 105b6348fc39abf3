// Builds the single executable `dist/sea/foreman` (`npm run build:sea`; `--out DIR` puts it
// elsewhere): Node itself with the agent injected as a single-executable application. It needs no
// node_modules: everything is bundled, and better-sqlite3's native addon is carried as a SEA asset
// that src/cli/sea.ts unpacks on first use. The Node it is made of is the pinned one (runtime/package.json, see
// scripts/runtime.mjs), whatever Node runs this script; the result runs on Linux x64 with the same or a newer glibc.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { bundleOptions } from './bundle-options.mjs';
import { runtimeNode, sqliteAddonFor } from './runtime.mjs';

// The agent's V8 flags, from src/cli/main.ts (TypeScript, hence tsx).
const { register } = await import('tsx/esm/api');
register();
const { V8_FLAGS } = await import('../src/cli/main.ts');

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string', default: join(root, 'dist/sea') } } });
const out = resolve(values.out);
mkdirSync(out, { recursive: true });
const started = Date.now();

// The pinned Node, and a better-sqlite3 addon built for it (node_modules' own when npm ran on that Node).
const runtime = await runtimeNode();
const addon = await sqliteAddonFor(runtime);
const require = createRequire(import.meta.url);

// One CommonJS file: SEA runs its main script as CommonJS, and ESM only from Node 22 on.
const script = join(out, 'foreman.cjs');
await build({
  ...bundleOptions,
  entryPoints: [join(root, 'src/cli/sea.ts')],
  outfile: script,
  format: 'cjs',
  external: ['*.node'],
  define: { 'import.meta.url': '__foremanImportMetaUrl' },
  // The require SEA gives its main script loads built-in modules only; better-sqlite3 loads the
  // unpacked addon file with require, so give it Node's full one. ESM code may use import.meta.url.
  banner: {
    js: "var require = require('node:module').createRequire(process.execPath), __foremanImportMetaUrl = require('node:url').pathToFileURL(process.execPath).href;",
  },
});

const blob = join(out, 'foreman.blob');
const seaConfig = join(out, 'sea-config.json');
writeFileSync(
  seaConfig,
  JSON.stringify(
    {
      main: script,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets: { 'better_sqlite3.node': addon },
      // Node's command line of the executable (Node 24's SEA): from Node 24 on, main() setting them at run time is too late.
      execArgv: V8_FLAGS,
    },
    null,
    2,
  ),
);
// The blob is made by the Node it is injected into, with the flags it will run with: V8 rejects a code cache made
// under other flags (with a warning at every start).
execFileSync(runtime.node, [...V8_FLAGS, '--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'pipe'] });

const executable = join(out, 'foreman');
copyFileSync(runtime.node, executable);
const { inject } = require('postject');
await inject(executable, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2', overwrite: true });

const mb = (statSync(executable).size / 1e6).toFixed(1);
process.stdout.write(
  `built ${executable} (${mb} MB, Node ${runtime.version}, better_sqlite3.node inside) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
);
