/** Where the job API listens, with the real agent process and engine: never on every interface unless told. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeControlServer, cleanup, readLog, spawnAgent, testEnv, type TestEnv } from './support/harness.ts';

let control: FakeControlServer | undefined;
const envs: TestEnv[] = [];

after(async () => {
  await control?.close();
  for (const env of envs) await cleanup(env);
});

test('a hostname that is not an address of this host: the agent refuses to start, with one line naming core.listen_address', async () => {
  control = await new FakeControlServer().start();
  const env = testEnv(control.url, { FOREMAN_CORE_HOSTNAME: '192.0.2.7' });
  envs.push(env);
  const agent = spawnAgent(env);
  assert.equal(await agent.exited, 1);
  const errors = readLog(agent.logFile)
    .split('\n')
    .filter((l) => l.includes('"level":50'));
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0] ?? '', /core\.hostname 192\.0\.2\.7 is not an address of this host.*set core\.listen_address/);
  assert.equal(control.polls.length, 0, 'it never polled');
});
