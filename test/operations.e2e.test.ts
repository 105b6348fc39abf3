/**
 * Running the agent as operators do, with real agent processes on the real engine: `foreman ping` and the health
 * listener without any metrics, the text log format and the first log line, the token read from a file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pkg from '../package.json' with { type: 'json' };
import { testJobImage } from './support/image.ts';
import { readLog, spawnAgent, spawnStack, type TestEnv } from './support/agents.ts';
import { freePort } from './support/ports.ts';
import { repoRoot } from './support/paths.ts';
import { job } from './support/reports.ts';
import { waitFor } from './support/wait.ts';

/** `foreman <args>` with the agent's own settings, as a HEALTHCHECK or a script runs it beside the agent. */
async function foreman(env: TestEnv, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/foreman.js'), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: env.dir, ...env.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url);
    return { status: res.status, text: await res.text() };
  } catch (err) {
    return { status: 0, text: String(err) };
  }
}

test('foreman ping and the health listener answer with no metrics listener: alive, then ready; not once the agent is gone', async () => {
  await testJobImage();
  const healthPort = await freePort();
  const s = await spawnStack({ FOREMAN_HEALTH_ADDRESS: `127.0.0.1:${healthPort}` });
  try {
    const socket = join(s.env.env.FOREMAN_CORE_DATA_DIR ?? '', 'foreman.sock');
    const alive = await waitFor('ping to answer', async () => {
      const result = await foreman(s.env, ['ping']);
      return result.code === 0 ? result : undefined;
    });
    assert.equal(alive.stdout, `ok: the agent is alive (${socket})\n`, 'one line on stdout');
    assert.equal(alive.stderr, '', 'nothing on stderr');
    await s.waitForAgentId();
    const ready = await waitFor('ping --ready to pass', async () => {
      const result = await foreman(s.env, ['ping', '--ready']);
      return result.code === 0 ? result : undefined;
    });
    assert.equal(ready.stdout, `ok: the agent is ready (${socket})\n`);

    const base = `http://127.0.0.1:${healthPort}`;
    assert.deepEqual(await get(`${base}/healthz`), { status: 200, text: 'ok\n' }, '/healthz on health.address');
    assert.deepEqual(await get(`${base}/readyz`), { status: 200, text: 'ok\n' }, '/readyz on health.address');
    assert.equal((await get(`${base}/metrics`)).status, 404, 'no metrics there');

    s.control.reply([job('ops-1', s.callbacks.url(), { values: [1, 2] })]);
    await s.callbacks.waitForCompletion('ops-1');
    assert.match(readLog(s.agent.logFile), /"msg":"polling for jobs"/, 'the agent ran');
    assert.doesNotMatch(readLog(s.agent.logFile), /prom-client|metrics/i, 'and served no metrics');

    assert.equal(await s.stop(), 0, 'the agent stops cleanly');
    const gone = await foreman(s.env, ['ping']);
    assert.equal(gone.code, 1, 'ping fails once the agent is gone');
    assert.equal(gone.stderr, `foreman: no agent answers at ${socket}: is it running, with this core.data_dir?\n`);
  } finally {
    await s.close();
  }
});

test('--log-format text and --log-level: the first line names the version, Node, the agent id, the executor and the engine', async () => {
  const s = await spawnStack({}, { args: ['--log-format', 'text', '--log-level', 'info'] });
  try {
    const agentId = await s.waitForAgentId();
    const lines = await waitFor('the agent to log that it polls', () => {
      const all = readLog(s.agent.logFile).split('\n').filter(Boolean);
      return all.some((line) => line.includes('polling for jobs')) ? all : undefined;
    });
    const first = lines[0] ?? '';
    assert.match(
      first,
      new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z INFO  foreman ${pkg.version.replaceAll('.', '\\.')} starting `),
      first,
    );
    for (const field of [`version=${pkg.version}`, `node=${process.version}`, `agentId=${agentId}`, 'executor=docker', 'engine=unix:///var/run/docker.sock']) {
      assert.ok(first.includes(` ${field}`), `the first line has ${field}: ${first}`);
    }
    assert.match(first, / engineVersion="[^"]+ \(API [\d.]+\)"/, `the first line has the engine's version: ${first}`);
    assert.ok(
      lines.every((line) => /^\S+Z (INFO|WARN|ERROR) /.test(line)),
      `every line is text, none below info:\n${lines.filter((line) => !/^\S+Z (INFO|WARN|ERROR) /.test(line)).join('\n')}`,
    );
    assert.ok(!lines.some((line) => line.startsWith('{')), 'no JSON line');
  } finally {
    await s.close();
  }
});

test('the token from core.token_file: the agent polls with it; a file others may read is warned about', async () => {
  const s = await spawnStack(
    {},
    {
      prepare: (env) => {
        writeFileSync(join(env.dir, 'token'), 'token-from-a-file\n', { mode: 0o644 });
      },
      spawn: (env) => {
        const { FOREMAN_CORE_TOKEN: _, ...rest } = env.env;
        return spawnAgent({ ...env, env: { ...rest, FOREMAN_CORE_TOKEN_FILE: join(env.dir, 'token') } });
      },
    },
  );
  try {
    await s.waitForAgentId();
    assert.equal(s.control.polls[0]?.headers.authorization, 'Bearer token-from-a-file', 'the token read from the file, without its newline');
    const log = readLog(s.agent.logFile);
    assert.match(log, /may be read by every user \(mode 0644\); make it readable by the agent's user alone \(chmod 600\)/, 'the mode is warned about');
    assert.ok(!log.includes('token-from-a-file'), 'the token is never logged');
  } finally {
    await s.close();
  }
});
