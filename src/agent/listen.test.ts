import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeExecutor } from '../executor/fake/fake-executor.ts';
import { resolveListenAddress, type ListenSettings } from './listen.ts';

const base: ListenSettings = { hostname: undefined, listen_address: undefined, extra_hosts: [], network_name: 'jobs' };

test('no hostname: the job network gateway, unless listen_address says otherwise', async () => {
  const executor = new FakeExecutor();
  assert.deepEqual(await resolveListenAddress(base, executor), { advertise: '127.0.0.1', bind: '127.0.0.1' });
  assert.deepEqual(await resolveListenAddress({ ...base, listen_address: '0.0.0.0' }, executor), { advertise: '127.0.0.1', bind: '0.0.0.0' });
});

test('a hostname meaning host-gateway binds the default bridge gateway the engine reports, or refuses naming core.listen_address', async () => {
  const executor = new FakeExecutor();
  executor.bridgeGateway = '10.99.0.1';
  const seed = { ...base, hostname: 'host.docker.internal', extra_hosts: ['HOST.docker.internal:host-gateway'] };
  assert.deepEqual(await resolveListenAddress(seed, executor), { advertise: 'host.docker.internal', bind: '10.99.0.1' });
  executor.bridgeGateway = undefined;
  // An engine that reports none: the kernel's docker0 address, else a refusal.
  assert.deepEqual(await resolveListenAddress(seed, executor, () => Promise.resolve('172.31.0.1')), { advertise: 'host.docker.internal', bind: '172.31.0.1' });
  await assert.rejects(
    resolveListenAddress(seed, executor, () => Promise.resolve(undefined)),
    /default bridge has no gateway address; set core\.listen_address/,
  );
  assert.deepEqual(await resolveListenAddress({ ...seed, listen_address: '0.0.0.0' }, executor), { advertise: 'host.docker.internal', bind: '0.0.0.0' });
});

test('a hostname that is a local address binds it; any other refuses to start rather than listen on every interface', async () => {
  const executor = new FakeExecutor();
  assert.deepEqual(await resolveListenAddress({ ...base, hostname: '127.0.0.1' }, executor), { advertise: '127.0.0.1', bind: '127.0.0.1' });
  await assert.rejects(
    resolveListenAddress({ ...base, hostname: '192.0.2.7' }, executor),
    /core\.hostname 192\.0\.2\.7 is not an address of this host.*set core\.listen_address \(0\.0\.0\.0 listens on every interface\)/,
  );
  await assert.rejects(resolveListenAddress({ ...base, hostname: 'nowhere.invalid' }, executor), /does not resolve here.*core\.listen_address/);
});
