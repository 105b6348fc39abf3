#!/usr/bin/env node
// Runs the bundle from `npm run build` (made by `npm ci` and `npm test`); falls back to the
// TypeScript sources through tsx when there is none.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/foreman.mjs', import.meta.url);
let main;
if (existsSync(bundle)) {
  ({ main } = await import(bundle.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2), process.env);
