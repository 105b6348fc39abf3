// Stands in, in the bundled build, for modules foreman's dependencies load but foreman never uses,
// since each costs memory at load: ssh2 (ssh:// engines), gRPC and protobufjs (BuildKit sessions),
// tar-fs and @balena/dockerignore (image builds from a context), thread-stream (pino transports).
// Whatever is called or constructed through it throws, naming what is missing.
function unsupported() {
  throw new Error('not included in the foreman build: ssh:// engines, BuildKit sessions, image builds and log transports are unsupported');
}
module.exports = new Proxy(unsupported, {
  get: (target, key) => (key === 'prototype' ? target.prototype : key === '__esModule' || typeof key === 'symbol' ? undefined : unsupported),
});
