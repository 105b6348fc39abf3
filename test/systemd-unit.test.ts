/** examples/systemd/foreman.service: the keys that make drain, detach and restarts work under systemd. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultOf } from '../src/config/schema.ts';

const repoRoot = resolve(import.meta.dirname, '..');

const UNIT = join(repoRoot, 'examples/systemd/foreman.service');
const text = readFileSync(UNIT, 'utf8');

/** `[Section]` → key → every value given (systemd keys may repeat), comments and blank lines dropped. */
function parseUnit(source: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1] ?? '', current);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(current && eq > 0, `not a key=value line in a section: ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

const unit = parseUnit(text);
function values(section: string, key: string): string[] {
  return unit.get(section)?.get(key) ?? [];
}
function value(section: string, key: string): string | undefined {
  const all = values(section, key);
  assert.ok(all.length <= 1, `${section}.${key} is given ${all.length} times`);
  return all[0];
}
/** Space-separated list keys (After=, Wants=) may also be given on several lines. */
function words(section: string, key: string): string[] {
  return values(section, key).flatMap((v) => v.split(/\s+/));
}

/** systemd time spans as used here: `90`, `90s`, `15min`, `1h 30min`. */
function seconds(span: string): number {
  const units: Record<string, number> = { '': 1, s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  let total = 0;
  for (const part of span.split(/\s+/)) {
    const m = /^(\d+)([a-z]*)$/.exec(part);
    const factor = m ? units[m[2] ?? ''] : undefined;
    assert.ok(m && factor !== undefined, `unknown time span ${span}`);
    total += Number(m[1]) * factor;
  }
  return total;
}

describe('the systemd unit', () => {
  it('starts after the Docker engine, wants it but does not stop with it', () => {
    assert.ok(words('Unit', 'After').includes('docker.service'), 'After= names docker.service');
    assert.ok(words('Unit', 'Wants').includes('docker.service'), 'Wants= names docker.service');
    assert.ok(!words('Unit', 'Requires').includes('docker.service'), 'Requires= would stop the agent with dockerd');
    assert.ok(!words('Unit', 'BindsTo').includes('docker.service'), 'BindsTo= would stop the agent with dockerd');
  });

  it('runs the installed command with flags the CLI knows', () => {
    const execStart = value('Service', 'ExecStart');
    assert.equal(execStart, '/usr/local/bin/foreman run --config /etc/foreman/foreman.toml');
    const help = spawnSync(process.execPath, [join(repoRoot, 'bin/foreman.js'), '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^ {2}run +Run the agent/m);
    assert.match(help.stdout, /--config PATH/);
  });

  it('sends one SIGTERM to the agent alone and waits out a drain and the shutdown', () => {
    assert.ok(['mixed', 'process'].includes(value('Service', 'KillMode') ?? ''), 'the first SIGTERM must reach the agent only');
    assert.ok([undefined, 'SIGTERM'].includes(value('Service', 'KillSignal')), `KillSignal=${value('Service', 'KillSignal')}: the agent drains on SIGTERM`);
    const stopSeconds = seconds(value('Service', 'TimeoutStopSec') ?? '0');
    const neededMs = Number(defaultOf('core.drain_timeout')) + Number(defaultOf('core.shutdown_timeout'));
    assert.ok(stopSeconds * 1000 > neededMs, `TimeoutStopSec ${stopSeconds}s is not above drain + shutdown (${neededMs} ms)`);
    // No ExecReload: SIGHUP means nothing to the agent.
    assert.equal(value('Service', 'ExecReload'), undefined);
  });

  it('restarts on failure, but not on a bad configuration (exit 2)', () => {
    assert.equal(value('Service', 'Restart'), 'on-failure');
    assert.ok(words('Service', 'RestartPreventExitStatus').includes('2'), 'RestartPreventExitStatus= names 2 (a bad configuration)');
  });

  it('runs as a user of the docker group with its state directory as data_dir', () => {
    const user = value('Service', 'User');
    assert.ok(user === undefined || user === 'root' || words('Service', 'SupplementaryGroups').includes('docker'), 'a non-root user needs the docker group');
    assert.equal(value('Service', 'StateDirectory'), 'foreman');
    assert.ok(values('Service', 'Environment').includes('FOREMAN_CORE_DATA_DIR=/var/lib/foreman'), 'Environment= sets FOREMAN_CORE_DATA_DIR=/var/lib/foreman');
    assert.equal(value('Install', 'WantedBy'), 'multi-user.target');
  });

  it('reads the token from a systemd credential, and shows the environment-file way beside it', () => {
    assert.deepEqual(values('Service', 'LoadCredential'), ['token:/etc/foreman/token'], 'LoadCredential= hands the agent /etc/foreman/token');
    assert.ok(
      values('Service', 'Environment').includes('FOREMAN_CORE_TOKEN_FILE=%d/token'),
      'core.token_file names the credential (%d: $CREDENTIALS_DIRECTORY)',
    );
    assert.match(text, /^#EnvironmentFile=-\/etc\/foreman\/foreman\.env$/m, 'the EnvironmentFile= way is shown, commented out');
    assert.match(text, /FOREMAN_CORE_TOKEN=/, 'and what that file holds');
  });

  it('is sandboxed: read-only system with its state and cache directories writable, no capabilities, few address families', () => {
    const expected: Record<string, string> = {
      ProtectSystem: 'strict',
      ProtectHome: 'true',
      PrivateDevices: 'true',
      PrivateTmp: 'true',
      ProtectKernelTunables: 'true',
      ProtectKernelModules: 'true',
      ProtectControlGroups: 'true',
      RestrictNamespaces: 'true',
      LockPersonality: 'true',
      SystemCallArchitectures: 'native',
      UMask: '0077',
      NoNewPrivileges: 'true',
      CapabilityBoundingSet: '',
      StateDirectory: 'foreman',
      CacheDirectory: 'foreman',
    };
    for (const [key, want] of Object.entries(expected)) assert.equal(value('Service', key), want, `${key}=${want}`);
    assert.deepEqual(words('Service', 'RestrictAddressFamilies').sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'], 'RestrictAddressFamilies=');
    assert.ok(values('Unit', 'Documentation').length > 0, 'Documentation= is set');
    // V8 writes the code it compiles (Node aborts with it); the docker group would not map inside a user namespace.
    for (const key of ['MemoryDenyWriteExecute', 'PrivateUsers', 'ProcSubset']) assert.equal(value('Service', key), undefined, `${key}= is left out`);
    assert.equal(value('Service', 'ReadOnlyPaths'), undefined, 'nothing else is taken away');
  });

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  it(
    'scores MEDIUM or better (at most 5.9) with systemd-analyze security, and the docs give the score',
    { skip: analyze.status === 0 ? false : 'systemd-analyze is not installed' },
    (t) => {
      const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      const score = /Overall exposure level for foreman\.service: (\d+\.\d) (\w+)/.exec(result.stdout);
      assert.ok(score, `an overall exposure level in:\n${result.stdout.slice(-500)}`);
      const [, level = '', word = ''] = score;
      t.diagnostic(`systemd-analyze security: ${level} ${word}`);
      assert.ok(Number(level) <= 5.9, `exposure ${level} ${word}: above MEDIUM (5.9)`);
      const docs = readFileSync(join(repoRoot, 'docs/security.md'), 'utf8');
      assert.ok(docs.includes(`${level} ${word}`), `docs/security.md gives the score, ${level} ${word}`);
      assert.ok(readFileSync(join(repoRoot, 'README.md'), 'utf8').includes(`${level} ${word}`), `the README gives the score, ${level} ${word}`);
      assert.ok(text.includes(`${level} ${word}`), `the unit's header gives it too`);
    },
  );
  it('passes systemd-analyze verify', { skip: analyze.status === 0 ? false : 'systemd-analyze is not installed' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'foreman-unit-'));
    try {
      // verify insists that the command exists; /usr/local/bin/foreman is not installed here.
      const file = join(dir, 'foreman.service');
      writeFileSync(file, text.replace(/^ExecStart=\/usr\/local\/bin\/foreman /m, `ExecStart=${process.execPath} `));
      const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      // Unknown keys and bad values are only warnings, with exit 0.
      const ours = result.stderr.split('\n').filter((line) => line.includes(file));
      assert.deepEqual(ours, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
