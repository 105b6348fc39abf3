/** Where the job API listens, with the real agent process and engine: never on every interface unless told. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCode, readLog, spawnStack } from './support/agents.ts';

test('a hostname that is not an address of this host: the agent refuses to start, with one line naming core.listen_address', async () => {
  const s = await spawnStack({ FOREMAN_CORE_HOSTNAME: '192.0.2.7' });
  try {
    assert.equal(await exitCode(s.agent), 1);
    const errors = readLog(s.agent.logFile)
      .split('\n')
      .filter((l) => l.includes('"level":50'));
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0] ?? '', /core\.hostname 192\.0\.2\.7 is not an address of this host.*set core\.listen_address/);
    assert.equal(s.control.polls.length, 0, 'it never polled');
  } finally {
    await s.close();
  }
});
