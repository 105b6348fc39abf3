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

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
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
