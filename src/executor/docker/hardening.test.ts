import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allowsInterContainerTraffic, hardenedHostConfig, settingProblems } from './hardening.ts';

test('every container drops all capabilities and gains no privileges; limits appear only when set', () => {
  assert.deepEqual(hardenedHostConfig({ memoryLimit: 0 }, undefined), { CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges'] });
  assert.deepEqual(
    hardenedHostConfig({ memoryLimit: 1 << 28, cpus: 1.5, pidsLimit: 1024, capAdd: ['CHOWN'], readOnlyRootfs: true, runtime: 'runsc' }, undefined),
    {
      CapDrop: ['ALL'],
      CapAdd: ['CHOWN'],
      SecurityOpt: ['no-new-privileges'],
      Memory: 1 << 28,
      NanoCpus: 1_500_000_000,
      PidsLimit: 1024,
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,exec,mode=1777' },
      Runtime: 'runsc',
    },
  );
});

test("a job's request replaces each maximum it names, and only that one", () => {
  const config = hardenedHostConfig({ memoryLimit: 1 << 28, cpus: 2, pidsLimit: 1024 }, { cpus: 0.1, pids: 10 });
  assert.deepEqual([config.NanoCpus, config.Memory, config.PidsLimit], [100_000_000, 1 << 28, 10]);
  // With no maxima, a request still applies.
  const open = hardenedHostConfig({ memoryLimit: 0 }, { memory: 64 << 20 });
  assert.deepEqual([open.NanoCpus, open.Memory, open.PidsLimit], [undefined, 64 << 20, undefined]);
});

test('settings the engine cannot honour are named, one line each', () => {
  const info = { Runtimes: { runc: {}, 'io.containerd.runc.v2': {} }, NCPU: 2 };
  assert.deepEqual(settingProblems({ memoryLimit: 0, runtime: 'runc', cpus: 2 }, info), []);
  assert.deepEqual(settingProblems({ memoryLimit: 0 }, {}), []);
  const [runtime, cpus] = settingProblems({ memoryLimit: 0, runtime: 'runsc', cpus: 3 }, info);
  assert.match(
    runtime ?? '',
    /^docker\.runtime "runsc" is not offered by the Docker engine \(it offers: runc, io\.containerd\.runc\.v2\);.*unset docker\.runtime$/,
  );
  assert.equal(cpus, "docker.cpus = 3: expected 0 (no limit) or from 0.01 to 2 (the engine's host has 2 CPUs)");
  assert.match(settingProblems({ memoryLimit: 0, cpus: 0.001 }, info)[0] ?? '', /^docker\.cpus = 0\.001/);
});

test('only a bridge with inter-container traffic off keeps containers apart', () => {
  assert.equal(allowsInterContainerTraffic({ Driver: 'bridge', Options: { 'com.docker.network.bridge.enable_icc': 'false' } }), false);
  assert.equal(allowsInterContainerTraffic({ Driver: 'bridge', Options: { 'com.docker.network.bridge.enable_icc': 'true' } }), true);
  assert.equal(allowsInterContainerTraffic({ Driver: 'bridge', Options: {} }), true);
  assert.equal(allowsInterContainerTraffic({ Driver: 'bridge', Options: null }), true);
  assert.equal(allowsInterContainerTraffic({ Driver: 'macvlan', Options: { 'com.docker.network.bridge.enable_icc': 'false' } }), true);
});
