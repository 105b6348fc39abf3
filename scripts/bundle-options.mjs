// esbuild options both bundles share: dist/foreman.mjs (scripts/build.mjs) and the single
// executable (scripts/build-sea.mjs).
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const unbundled = join(root, 'src/executor/docker/unbundled.cjs');
const lazyHttp2 = join(root, 'scripts/lazy-http2.cjs');
const loadsHttp2AtStart = /(fastify[\\/]lib[\\/]server|undici[\\/]lib[\\/]dispatcher[\\/]client-h2)\.js$/;

/** @type {import('esbuild').Plugin} */
const http2OnFirstUse = {
  name: 'http2-on-first-use',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http2$/ }, (args) => (loadsHttp2AtStart.test(args.importer) ? { path: lazyHttp2 } : undefined));
  },
};

/** @type {import('esbuild').BuildOptions} */
export const bundleOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  // Escaped non-ASCII keeps the bundle a one-byte string in V8: half the memory of a two-byte one.
  charset: 'ascii',
  minifyWhitespace: true,
  minifySyntax: true,
  // Loaded by dockerode and pino for features foreman never uses (see unbundled.cjs).
  alias: {
    ssh2: unbundled,
    '@grpc/grpc-js': unbundled,
    '@grpc/proto-loader': unbundled,
    protobufjs: unbundled,
    'tar-fs': unbundled,
    '@balena/dockerignore': unbundled,
    'thread-stream': unbundled,
  },
  plugins: [http2OnFirstUse],
  legalComments: 'none',
  logLevel: 'warning',
};
