/**
 * The Docker executor against Podman's Docker-compatible API: the job-flow and recovery end-to-end
 * tests run again, in a child process, against a Podman service of this test's own (its own storage,
 * run root and socket), stopped by its pid afterwards. Needs root, podman and catatonit (for
 * `Init: true`), as CI installs them; elsewhere it says why it skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { testJobImage } from './support/image.ts';
import { repoRoot } from './support/paths.ts';
import { waitFor } from './support/wait.ts';

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for a rootful Podman service';
  for (const tool of ['podman', 'catatonit']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (Debian: apt-get install podman catatonit)`;
  }
  return undefined;
}

/** An address of this host that Podman's containers reach (its bridges come up only with their first container). */
function hostAddress(): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name === 'docker0') continue;
    const a = (addrs ?? []).find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return undefined;
}

test('job-flow and recovery pass against Podman', { skip: unavailable() ?? false, timeout: 900_000 }, async (t) => {
  const image = await testJobImage();
  const address = hostAddress();
  assert.ok(address, 'an IPv4 address of this host');
  const dir = mkdtempSync(join(tmpdir(), 'fp-'));
  const podman = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run')];
  // Podman 4.3 runs no container without these limits set.
  const conf = join(dir, 'containers.conf');
  writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n');
  // Without NODE_TEST_CONTEXT, which would make the child's test runner report to this one instead of printing TAP
  // (asked for with --test-reporter=tap: from Node 23 on the default is the spec reporter even without a TTY).
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  const env = { ...inherited, CONTAINERS_CONF: conf };
  const socket = join(dir, 'podman.sock');
  let service: ChildProcess | undefined;
  try {
    service = spawn('podman', [...podman, 'system', 'service', '--time=0', `unix://${socket}`], { env, stdio: 'ignore' });
    await waitFor('the Podman service', () => spawnSync('curl', ['-sf', '--unix-socket', socket, 'http://d/version']).status === 0, 30_000, 200);
    const load = spawnSync('sh', ['-c', `docker save ${image} | podman ${podman.join(' ')} load -q`], { env });
    assert.equal(load.status, 0, load.stderr.toString());
    const started = Date.now();
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=1', 'test/job-flow.e2e.test.ts', 'test/recovery.e2e.test.ts'],
      {
        cwd: repoRoot,
        // A child run that hangs must fail this test: spawnSync blocks, so the test's own timeout cannot fire.
        timeout: 780_000,
        killSignal: 'SIGKILL',
        env: {
          ...env,
          FOREMAN_DOCKER_URL: `unix://${socket}`,
          FOREMAN_TEST_ENGINE: 'podman',
          // Podman creates a network's bridge with its first container, so the agent cannot bind the gateway before.
          FOREMAN_TEST_ENGINE_ENV: JSON.stringify({ FOREMAN_CORE_HOSTNAME: address }),
        },
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const summary = (run.stdout.match(/^# (tests|pass|fail) \d+$/gm) ?? []).map((l) => l.slice(2)).join(', ');
    t.diagnostic(`against Podman in ${Math.round((Date.now() - started) / 1000)} s: ${summary}`);
    assert.equal(run.error, undefined, `the child run: ${String(run.error)}`);
    assert.equal(
      run.status,
      0,
      run.stdout
        .split('\n')
        .filter((l) => /^\s*not ok|error:/.test(l))
        .slice(0, 20)
        .join('\n'),
    );
    assert.match(run.stdout, /^# fail 0$/m);
  } finally {
    spawnSync('podman', [...podman, 'rm', '--all', '--force'], { env });
    spawnSync('podman', [...podman, 'rmi', '--all', '--force'], { env });
    service?.kill('SIGTERM');
    if (service && service.exitCode === null) await new Promise((resolve) => service?.once('exit', resolve));
    spawnSync('sh', ['-c', `umount $(grep ' ${dir}' /proc/mounts | cut -d' ' -f2 | sort -r) 2>/dev/null`]);
    rmSync(dir, { recursive: true, force: true });
  }
});
