/**
 * Runs the test suite with Node's test runner, one file at a time, in this order:
 *
 *   1. the unit tests beside the modules: every *.test.ts under src/
 *   2. the files in test/ that need no engine and no agent: test/*.test.ts that are not *.e2e.test.ts
 *   3. the end-to-end files (the real engine, real agents): test/*.e2e.test.ts, except those in LAST
 *   4. LAST, in the order given there (each says why it runs after everything else)
 *
 * Each list is sorted by name. Node 20 expands no globs itself, so the files are found here; a list that comes
 * out empty is an error (Node would print "# tests 0" and exit 0, which reads as a green run).
 *
 * Usage:
 *   node scripts/run-tests.mjs                                  every file, in the order above (npm run test:all)
 *   node scripts/run-tests.mjs --test-name-pattern 'drain'      options for `node --test`, passed on
 *   node scripts/run-tests.mjs test/recovery.e2e.test.ts src/jobs/state.test.ts
 *                                                              only these files, still in the order above
 *   node scripts/run-tests.mjs --list [FILES]                   print the files in order and exit
 *   node scripts/run-tests.mjs --floor                          the unit tests and the core job-flow end-to-end
 *                                                              files (FLOOR): what CI runs on the lowest Node that
 *                                                              package.json's engines allows (npm run test:floor)
 *
 * An argument ending in ".test.ts" picks a file (relative to the current folder or the repository); every other
 * argument goes to `node --test`, before the file list, because Node 20 takes options after the first file for
 * more files. (Write an option's value that ends in ".test.ts" as --option=value.) The script prints the files it
 * runs on stderr, then exits with the test runner's code.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');

/**
 * Files that run after all others, in this order, with why.
 * - engine-restart: runs a second dockerd beside the shared engine, with a bridge interface, containerd, mounts and
 *   cgroups of its own, and restarts it. Should its teardown leave any of that behind, no other file has run on a
 *   host it changed (a second dockerd started with the wrong flags deletes the host's docker0).
 * - podman: starts a rootful Podman service, whose networks add their own bridges and firewall rules to the host,
 *   and runs job-flow and recovery again against it; those two have passed (or failed, where that is easier to
 *   read) in their own run by then.
 * - swarm: turns the shared engine into a single-node swarm manager (`docker swarm init`) and only leaves the swarm
 *   (`docker swarm leave --force`) when it ends, so while it runs the engine is in swarm mode (docker_gwbridge,
 *   overlay networks, host-gateway meaning the node address) and any other file would run against that. It also
 *   runs five end-to-end files again in a child process, and is the longest file (several minutes). Last of all.
 */
const LAST = ['test/engine-restart.e2e.test.ts', 'test/podman.e2e.test.ts', 'test/swarm.e2e.test.ts'];

/**
 * The core job-flow end-to-end files, run with every unit test on the lowest Node that engines allows (`--floor`;
 * .ci/run runs the whole suite on the Node the artifacts carry): a job from poll to callback, the endings the agent
 * reports, cancels and stalls, recovery after a crash, and the command line.
 */
const FLOOR = ['test/cli.e2e.test.ts', 'test/endings.e2e.test.ts', 'test/job-control.e2e.test.ts', 'test/job-flow.e2e.test.ts', 'test/recovery.e2e.test.ts'];

const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Every file under `dir` (recursively) whose name ends in `suffix`, relative to the repository. */
function findFiles(dir, suffix) {
  const found = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...findFiles(path, suffix));
    else if (entry.name.endsWith(suffix)) found.push(path);
  }
  return found.sort(byName);
}

function fail(message) {
  process.stderr.write(`run-tests: ${message}\n`);
  process.exit(1);
}

const unit = findFiles('src', '.test.ts');
const inTest = readdirSync(join(root, 'test'))
  .filter((name) => name.endsWith('.test.ts') && statSync(join(root, 'test', name)).isFile())
  .map((name) => `test/${name}`)
  .sort(byName);
const plain = inTest.filter((file) => !file.endsWith('.e2e.test.ts'));
const e2e = inTest.filter((file) => file.endsWith('.e2e.test.ts') && !LAST.includes(file));
for (const [name, list] of Object.entries({ LAST, FLOOR })) {
  const missing = list.filter((file) => !existsSync(join(root, file)));
  if (missing.length > 0) fail(`${name} names files that do not exist: ${missing.join(', ')}`);
}
for (const [name, list] of Object.entries({
  'unit tests (src/**/*.test.ts)': unit,
  'test/*.test.ts without .e2e': plain,
  'end-to-end files (test/*.e2e.test.ts)': e2e,
})) {
  if (list.length === 0) fail(`found no ${name}: nothing would run`);
}
const ordered = [...unit, ...plain, ...e2e, ...LAST];

const args = process.argv.slice(2);
const listOnly = args.includes('--list');
const floorOnly = args.includes('--floor');
const picked = [...args.filter((arg) => arg.endsWith('.test.ts')), ...(floorOnly ? [...unit, ...FLOOR] : [])];
const options = args.filter((arg) => !arg.endsWith('.test.ts') && arg !== '--list' && arg !== '--floor');

let files = ordered;
if (picked.length > 0) {
  const wanted = picked.map((arg) =>
    relative(root, resolve(existsSync(arg) ? process.cwd() : root, arg))
      .split('\\')
      .join('/'),
  );
  const unknown = wanted.filter((file) => !ordered.includes(file));
  if (unknown.length > 0) fail(`not a test file of the suite: ${unknown.join(', ')}`);
  files = ordered.filter((file) => wanted.includes(file));
}

process.stderr.write(
  `run-tests: Node ${process.version}, ${files.length} files, in this order:\n${files.map((file, i) => `  ${String(i + 1).padStart(3)}  ${file}\n`).join('')}`,
);
if (listOnly) process.exit(0);

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...options, ...files], { cwd: root, stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('error', (err) => fail(`could not start the test runner: ${err.message}`));
child.on('exit', (code, signal) => {
  if (code === null) process.stderr.write(`run-tests: the test runner ended on ${signal}\n`);
  process.exit(code ?? 1);
});
