// Bundles the agent into dist/foreman.mjs, which bin/foreman.js runs. Runs on `npm ci` (prepare) and `npm test`.
import { build } from 'esbuild';

const unbundled = './src/executor/docker/unbundled.cjs';
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/foreman.mjs',
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
});
