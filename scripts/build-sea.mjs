// Builds the single executable `dist/sea/foreman` (`npm run build:sea`; `--out DIR` puts it
// elsewhere): Node itself with the agent injected as a single-executable application. It needs no
// node_modules: everything is bundled, and better-sqlite3's native addon is carried as a SEA asset
// that src/cli/sea.ts unpacks on first use. Only for the platform and Node version it is built on.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { bundleOptions } from './bundle-options.mjs';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string', default: join(root, 'dist/sea') } } });
const out = resolve(values.out);
mkdirSync(out, { recursive: true });
const started = Date.now();

// The addon `npm ci` built for this Node (the executable is this same node binary, so they match).
const require = createRequire(import.meta.url);
const addon = join(dirname(require.resolve('better-sqlite3/package.json')), 'build/Release/better_sqlite3.node');
statSync(addon);

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
  JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, assets: { 'better_sqlite3.node': addon } }, null, 2),
);
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });

const executable = join(out, 'foreman');
copyFileSync(process.execPath, executable);
const { inject } = require('postject');
await inject(executable, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2', overwrite: true });

const mb = (statSync(executable).size / 1e6).toFixed(1);
process.stdout.write(`built ${executable} (${mb} MB, better_sqlite3.node inside) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
