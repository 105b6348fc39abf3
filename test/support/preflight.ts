/** Run before the test suite: without a Docker engine the suite fails at once with one clear line, never skips. */
import { createDockerClient } from '../../src/executor/docker/client.ts';

const url = process.env.FOREMAN_DOCKER_URL ?? 'unix:///var/run/docker.sock';
try {
  await createDockerClient(url).ping();
} catch {
  process.stderr.write(`no Docker engine at ${url}: start Docker or set docker.url (FOREMAN_DOCKER_URL for the tests)\n`);
  process.exit(1);
}
