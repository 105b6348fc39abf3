import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { ExecutorJobError } from '../executor.ts';
import { DockerExecutor } from './docker-executor.ts';
import { RegistryAuth } from './registry-auth.ts';

const auth = new RegistryAuth([
  { host: '127.0.0.1:5000', username: 'local', password: 'local-secret' },
  { host: 'Registry.Example.com', username: 'ci', password: 'ci-secret' },
  { host: 'index.docker.io', username: 'hub', password: 'hub-secret', identitytoken: 'hub-token' },
  { host: 'localhost', username: 'lh', password: 'lh-secret' },
]);

test("credentials are chosen by the image's registry, found as Docker finds it", () => {
  const cases: Array<[string, string | undefined]> = [
    ['127.0.0.1:5000/foreman-test/job:1', 'local'],
    ['registry.example.com/ci/build@sha256:' + 'a'.repeat(64), 'ci'],
    ['node:20', 'hub'],
    ['team/app', 'hub'],
    ['docker.io/library/node', 'hub'],
    ['localhost/app', 'lh'],
    ['127.0.0.1:5001/x', undefined],
    ['registry.example.com:443/ci/build', undefined],
    ['other.example.com/registry.example.com/x', undefined],
  ];
  for (const [image, user] of cases) assert.equal((auth.authFor(image) as { username?: string } | undefined)?.username, user, image);
  assert.deepEqual(auth.authFor('127.0.0.1:5000/x'), { username: 'local', password: 'local-secret', serveraddress: '127.0.0.1:5000' });
  assert.deepEqual(auth.authFor('alpine'), {
    username: 'hub',
    password: 'hub-secret',
    serveraddress: 'https://index.docker.io/v1/',
    identitytoken: 'hub-token',
  });
  assert.equal(new RegistryAuth().authFor('alpine'), undefined);
});

test('redact hides every password and token', () => {
  assert.equal(auth.redact('x local-secret y "hub-token" ci-secret'), 'x [redacted] y "[redacted]" [redacted]');
});

/** A fake engine whose pull records its options and ends with `error` in the progress stream. */
function fakeDocker(error?: string): { docker: Docker; pulls: Array<{ image: string; opts: Record<string, unknown> }> } {
  const pulls: Array<{ image: string; opts: Record<string, unknown> }> = [];
  const docker = {
    pull: (image: string, opts: Record<string, unknown>) => {
      pulls.push({ image, opts });
      return Promise.resolve(Readable.from([]));
    },
    modem: {
      followProgress: (_stream: unknown, done: (err: Error | null, output: Array<{ error?: string }>) => void) => done(null, error ? [{ error }] : [{}]),
    },
  } as unknown as Docker;
  return { docker, pulls };
}

const settings = { agentId: 'a', networkName: 'n', extraHosts: [], memoryLimit: 0 };

test('the executor pulls with the matching auth config, and without one for other registries', async () => {
  const { docker, pulls } = fakeDocker();
  const executor = new DockerExecutor({ docker, registryAuth: auth, ...settings });
  await executor.ensureImage('127.0.0.1:5000/foreman-test/job:1', true);
  await executor.ensureImage('127.0.0.1:5001/other:1', true);
  assert.deepEqual(pulls[0]?.opts.authconfig, { username: 'local', password: 'local-secret', serveraddress: '127.0.0.1:5000' });
  assert.equal('authconfig' in (pulls[1]?.opts ?? {}), false);
});

test("a refused pull is a pull error with the engine's message, and no secret in it", async () => {
  const { docker } = fakeDocker('Head "http://127.0.0.1:5000/v2/x/manifests/1": unauthorized: bad password local-secret');
  const executor = new DockerExecutor({ docker, registryAuth: auth, ...settings });
  await assert.rejects(executor.ensureImage('127.0.0.1:5000/x:1', true), (err: unknown) => {
    assert.ok(err instanceof ExecutorJobError, 'an ExecutorJobError');
    assert.equal(err.kind, 'pull');
    assert.equal(err.message, 'pulling image 127.0.0.1:5000/x:1 failed: Head "http://127.0.0.1:5000/v2/x/manifests/1": unauthorized: bad password [redacted]');
    return true;
  });
});
