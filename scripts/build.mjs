// Bundles foreman (the agent, `foreman server`, `foreman conformance`) into dist/foreman.mjs, which bin/foreman.js runs. Runs on `npm ci` (prepare) and `npm test`.
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';
import { bundleOptions } from './bundle-options.mjs';
import { ASSETS_FILE, assetsModule } from './server-assets.mjs';

// The control server's pages, as a module the bundle carries (src/server/assets.generated.ts).
if (readFileSync(ASSETS_FILE, 'utf8') !== assetsModule()) writeFileSync(ASSETS_FILE, assetsModule());

const result = await build({
  ...bundleOptions,
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist',
  entryNames: 'foreman',
  outExtension: { '.js': '.mjs' },
  // Code only some runs need (`foreman check`, metrics) goes to chunks loaded on first use.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  format: 'esm',
  // Native addon: loaded from node_modules at run time.
  external: ['better-sqlite3'],
  banner: { js: "import { createRequire as __foremanRequire } from 'node:module'; const require = __foremanRequire(import.meta.url);" },
  metafile: true,
});

// Chunk names carry a hash, so each change leaves old chunks behind; `npm pack` ships dist/chunks/
// whole, so drop every chunk this build did not write.
const written = new Set(Object.keys(result.metafile.outputs));
for (const name of readdirSync('dist/chunks')) {
  if (!written.has(`dist/chunks/${name}`)) rmSync(`dist/chunks/${name}`, { force: true });
}
