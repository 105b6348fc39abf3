/**
 * `foreman conformance`, run as a command: the reference server (`foreman server`) passes every rule; a server built
 * with the control-server kit passes them too, and, told to break rules one at a time, fails exactly the rule it
 * breaks, saying why; bad usage is exit 2.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { RULE_NAMES } from '../src/conformance/conformance.ts';
import { FAULTS, startBrokenServer } from './support/broken-server.ts';
import type { Fault } from './support/broken-server.ts';
import { ADMIN_TOKEN, AGENT_TOKEN, spawnServer } from './support/control-server.ts';
import type { SpawnedServer } from './support/control-server.ts';
import { repoRoot } from './support/paths.ts';

const run = promisify(execFile);

interface Checked {
  code: number;
  lines: Map<string, { outcome: string; why: string }>;
  output: string;
}

/** Runs `foreman conformance ARGS` from the sources; its exit code and one entry per rule line. */
async function conformance(args: string[]): Promise<Checked> {
  const result = await run(process.execPath, ['--import', 'tsx', 'test/support/foreman.ts', 'conformance', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '' },
    timeout: 240_000,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? -1, stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
  );
  const lines = new Map<string, { outcome: string; why: string }>();
  for (const line of result.stdout.split('\n')) {
    const match = /^(pass|FAIL|skip) {2}(.+?): (.*)$/.exec(line);
    if (match) lines.set(match[2]!, { outcome: match[1]!, why: match[3]! });
  }
  return { code: result.code, lines, output: `${result.stdout}${result.stderr}` };
}

/** What each fault of the broken server breaks. */
const BREAKS: Record<Fault, string> = {
  auth: 'authenticates the poll',
  capacity: 'honours x-foreman-capacity',
  rehand: 'never hands a job out again after its final update',
  duplicate: 'accepts a duplicate delivery idempotently (same id and seq twice)',
  stale: 'keeps the latest state when an older seq arrives late',
  cancel: 'repeats x-foreman-cancel until the final update',
  logs: 'answers log batches with offsets',
  lost: 'treats an agent that stops polling as lost',
};

describe('foreman conformance', { timeout: 600_000 }, () => {
  let dir: string;
  let reference: SpawnedServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'foreman-conformance-'));
    reference = await spawnServer(['--port', '0', '--db', join(dir, 'cs.db'), '--agent-timeout', '1s', '--log-level', 'warn'], {
      FOREMAN_SERVER_TOKENS: AGENT_TOKEN,
      FOREMAN_SERVER_ADMIN_TOKENS: ADMIN_TOKEN,
    });
  });
  after(async () => {
    await reference?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the reference server passes every rule', async (t) => {
    const checked = await conformance([
      `${reference.base}/job`,
      '--token',
      AGENT_TOKEN,
      '--lost-after',
      '10s',
      '--enqueue-url',
      `${reference.base}/jobs`,
      '--enqueue-header',
      `authorization: Bearer ${ADMIN_TOKEN}`,
      '--cancel-url',
      `${reference.base}/jobs/{{id}}/cancel`,
      '--cancel-header',
      `authorization: Bearer ${ADMIN_TOKEN}`,
    ]);
    t.diagnostic(checked.output);
    assert.equal(checked.code, 0, checked.output);
    assert.deepEqual([...checked.lines.keys()], RULE_NAMES, 'one line per rule, in order');
    for (const [rule, line] of checked.lines) assert.equal(line.outcome, 'pass', `${rule}: ${line.why}`);
    assert.match(checked.output, new RegExp(`^${RULE_NAMES.length} of ${RULE_NAMES.length} rules passed; 0 failed; 0 skipped$`, 'm'));
  });

  it('a server written with the kit passes every rule, enqueued by a command', async () => {
    const server = await startBrokenServer(AGENT_TOKEN, []);
    try {
      const enqueue = `curl -sf -X POST ${server.url}/enqueue -H 'content-type: application/json' -d '{"id":"'"$FOREMAN_CONFORMANCE_ID"'","labels":{"{{label}}":"{{run}}"}}'`;
      const checked = await conformance([
        `${server.url}/job`,
        '--token',
        AGENT_TOKEN,
        '--lost-after',
        '5s',
        '--enqueue',
        enqueue,
        '--cancel-url',
        `${server.url}/cancel/{{id}}`,
      ]);
      assert.equal(checked.code, 0, checked.output);
      assert.deepEqual(
        [...checked.lines.values()].map((line) => line.outcome),
        RULE_NAMES.map(() => 'pass'),
        checked.output,
      );
    } finally {
      await server.close();
    }
  });

  for (const fault of FAULTS) {
    it(`a server that breaks "${BREAKS[fault]}" fails that rule${fault === 'rehand' ? ' (and the late-seq rule, whose job it hands out again)' : ', and only that one'}`, async () => {
      const server = await startBrokenServer(AGENT_TOKEN, [fault]);
      try {
        const checked = await conformance([
          `${server.url}/job`,
          '--token',
          AGENT_TOKEN,
          '--lost-after',
          '3s',
          '--enqueue-url',
          `${server.url}/enqueue`,
          '--cancel-url',
          `${server.url}/cancel/{{id}}`,
        ]);
        assert.equal(checked.code, 1, `exit 1 on a failure: ${checked.output}`);
        const failed = [...checked.lines].filter(([, line]) => line.outcome === 'FAIL').map(([rule]) => rule);
        // A server that hands an ended job out again also does so after the late-seq rule's final update.
        const expected = fault === 'rehand' ? [BREAKS.rehand, BREAKS.stale] : [BREAKS[fault]];
        assert.deepEqual(failed, expected, checked.output);
        assert.ok((checked.lines.get(BREAKS[fault])?.why ?? '').length > 10, 'it says why');
      } finally {
        await server.close();
      }
    });
  }

  it('without a way to cancel, the cancel rules are skipped, saying so; bad usage is exit 2', async () => {
    const server = await startBrokenServer(AGENT_TOKEN, []);
    try {
      const checked = await conformance([`${server.url}/job`, '--token', AGENT_TOKEN, '--lost-after', '0', '--enqueue-url', `${server.url}/enqueue`]);
      assert.equal(checked.code, 0, checked.output);
      const skipped = [...checked.lines].filter(([, line]) => line.outcome === 'skip').map(([rule]) => rule);
      assert.deepEqual(skipped, [BREAKS.stale, BREAKS.cancel, BREAKS.lost], checked.output);
    } finally {
      await server.close();
    }
    const usage = await conformance(['not-a-url']);
    assert.equal(usage.code, 2, usage.output);
    assert.match(usage.output, /is not an http/);
    assert.match(usage.output, /--token .* is required/);
    assert.match(usage.output, /say how to enqueue a job/);
  });
});
