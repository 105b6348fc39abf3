#!/usr/bin/env node
// Runs the bundle from `npm run build` (made by `npm ci` and `npm test`, and shipped in the npm
// package, which has neither src/ nor tsx); in a checkout without a build, falls back to the
// TypeScript sources through tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = new URL('../dist/foreman.mjs', import.meta.url);
let main;
if (existsSync(bundle)) {
  ({ main } = await import(bundle.href));
} else if (!existsSync(new URL('../src/cli/main.ts', import.meta.url))) {
  process.stderr.write(`foreman: ${fileURLToPath(bundle)} is missing: this copy was packed without running the build\n`);
  process.exit(1);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2), process.env);
