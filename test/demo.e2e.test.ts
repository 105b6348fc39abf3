import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');

async function managedContainers(): Promise<Set<string>> {
  const { stdout } = await execFileAsync('docker', ['ps', '-a', '--no-trunc', '--filter', 'label=foreman.managed=true', '--format', '{{.ID}}']);
  return new Set(stdout.split('\n').filter((line) => line !== ''));
}

/** Runs the demo's script with these arguments and returns its exit code and output. */
async function runDemo(args: string[], timeout: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Killed before the test's own timeout: a demo that hangs fails the test instead of keeping this process alive.
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo/demo.ts', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], timeout });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  return { code, stdout, stderr };
}

it('npm run demo -- --help says what the demo does and how long it runs, and exits 0', async () => {
  const { code, stdout, stderr } = await runDemo(['--help'], 60_000);
  assert.equal(code, 0, `exit code; stderr: ${stderr}`);
  assert.match(stdout, /^Usage: npm run demo/, 'the usage line comes first');
  assert.match(stdout, /until Ctrl-C/, 'the help says the demo runs until Ctrl-C');
  assert.match(stdout, /--once/, 'the help names --once');
  assert.equal(stderr, '', 'nothing on stderr');
});

it('npm run demo with an unknown option exits 2 and points at --help', async () => {
  const { code, stderr } = await runDemo(['--frobnicate'], 60_000);
  assert.equal(code, 2, 'exit code');
  assert.match(stderr, /npm run demo -- --help/, `stderr: ${stderr}`);
});

it('npm run demo -- --once runs five jobs to success and leaves no containers', { timeout: 240_000 }, async () => {
  // Only containers that appear during the run count: other work on this engine may have its own.
  const before = await managedContainers();
  const { code, stdout, stderr } = await runDemo(['--once'], 220_000);

  const output = `stdout:\n${stdout}\nstderr:\n${stderr}`;
  assert.equal(code, 0, output);
  assert.match(stdout, /^demo: 5\/5 jobs completed$/m, output);
  assert.match(stdout, /^demo: dashboard {2}http:\/\/127\.0\.0\.1:\d+\/$/m, output);
  assert.match(stdout, /^job 1\/5 \S+ +running +\[#+ *\] +\d+%$/m, 'no progress line was printed');
  assert.doesNotMatch(stderr, /left behind/, 'the agent left a container for the safety net to remove');

  const leftovers = [...(await managedContainers())].filter((id) => !before.has(id));
  assert.deepEqual(leftovers, [], 'containers labelled foreman.managed=true remain after the demo');
});
