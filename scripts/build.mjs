// Bundles the agent into dist/foreman.mjs, which bin/foreman.js runs. Runs on `npm ci` (prepare) and `npm test`.
import { readdirSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const unbundled = './src/executor/docker/unbundled.cjs';
const result = await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist',
  entryNames: 'foreman',
  outExtension: { '.js': '.mjs' },
  // Code only some runs need (`foreman check`, metrics) goes to chunks loaded on first use.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  // Escaped non-ASCII keeps the bundle a one-byte string in V8: half the memory of a two-byte one.
  charset: 'ascii',
  minifyWhitespace: true,
  minifySyntax: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Native addon: loaded from node_modules at run time.
  external: ['better-sqlite3'],
  alias: { ssh2: unbundled, '@grpc/grpc-js': unbundled, '@grpc/proto-loader': unbundled, protobufjs: unbundled },
  banner: { js: "import { createRequire as __foremanRequire } from 'node:module'; const require = __foremanRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});

// Chunk names carry a hash, so each change leaves old chunks behind; `npm pack` ships dist/chunks/
// whole, so drop every chunk this build did not write.
const written = new Set(Object.keys(result.metafile.outputs));
for (const name of readdirSync('dist/chunks')) {
  if (!written.has(`dist/chunks/${name}`)) rmSync(`dist/chunks/${name}`, { force: true });
}
