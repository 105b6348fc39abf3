// Stands in for ssh2, gRPC and protobufjs in the bundled build: dockerode loads them for ssh://
// engines and BuildKit sessions, which foreman never uses, and they cost memory at load.
class Unsupported {
  constructor() {
    throw new Error('not included in the foreman build: ssh:// engines and BuildKit sessions are unsupported');
  }
}
module.exports = { Client: Unsupported };
