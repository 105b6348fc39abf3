// One-command demo: the reference control server (`foreman server`), a foreman agent and five jobs on the test image.
//
//   npm run demo             run until Ctrl-C; watch http://127.0.0.1:<port>/ and submit more jobs
//   npm run demo -- --once   exit when the jobs have ended: 0 if all succeeded, else 1
//
// Everything lives in a temp dir that is removed on exit; the agent's log is kept there while it runs.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { stringify as toToml } from 'smol-toml';
import { buildTestJobImage } from '../test-job-image/build.ts';
import type { JobView } from '../../src/server/store.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NETWORK = 'foreman-demo';
const LABELS = { queue: 'demo' };
const WATCH_INTERVAL_MS = 250;
const AGENT_STOP_TIMEOUT_MS = 30_000;

const say = (line: string) => process.stdout.write(`${line}\n`);
const warn = (line: string) => process.stderr.write(`demo: warning: ${line}\n`);
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

const HELP = `Usage: npm run demo [-- OPTIONS]

Starts the reference control server (with its dashboard), a foreman agent and N jobs on the
registry-free test job image, and prints each job's progress. Runs until Ctrl-C unless --once
is given; then stops the agent, removes what it made and exits.

Options:
  --once             Exit when the jobs have ended: 0 if all succeeded, 1 otherwise
  --jobs N           How many jobs to submit (1 to 100; default 5)
  --timeout SECONDS  With --once, give up after this long (default 120)
  -h, --help         Show this help

Needs a Docker engine at /var/run/docker.sock. Sign in to the dashboard with the admin token the
demo prints, and submit more jobs there or with the curl line it prints (see docs/control-server.md).`;

interface Options {
  help: boolean;
  once: boolean;
  jobs: number;
  timeoutMs: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      once: { type: 'boolean', default: false },
      jobs: { type: 'string', default: '5' },
      timeout: { type: 'string', default: '120' },
    },
    strict: true,
  });
  if (values.help) return { help: true, once: false, jobs: 0, timeoutMs: 0 };
  const jobs = Number(values.jobs);
  const timeoutSeconds = Number(values.timeout);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 100) throw new Error('--jobs must be an integer from 1 to 100');
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new Error('--timeout must be a positive number of seconds');
  return { help: false, once: values.once, jobs, timeoutMs: timeoutSeconds * 1000 };
}

/** A port nothing listens on right now, for the agent's job API: fixed for the run, so containers keep a stable URL. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ port: 0, host: '0.0.0.0' }, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolvePort(port));
    });
  });
}

function progressBar(progress: number | null): string {
  const fraction = Math.max(0, Math.min(1, progress ?? 0));
  const filled = Math.round(fraction * 20);
  return `[${'#'.repeat(filled)}${' '.repeat(20 - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%`;
}

function describeJob(job: JobView, label: string): string {
  const parts = [`job ${label} ${job.id.slice(0, 8)}`, job.status.padEnd(9), progressBar(job.progress)];
  if (job.outcome !== null) parts.push(job.outcome);
  if (job.status === 'completed' && job.result !== null) parts.push(`result ${JSON.stringify(job.result).slice(0, 120)}`);
  // The agent sends a job's whole log before its final report, so the count is final here.
  if (job.status === 'completed') parts.push(`log: ${job.logLines} lines${job.logComplete ? '' : ' (incomplete)'}`);
  return parts.join('  ');
}

async function tail(path: string, lines: number): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Resolves with the exit code once the child has exited (immediately if it already has). */
function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`demo: ${messageOf(err)}\nusage: npm run demo -- [--once] [--jobs N] [--timeout SECONDS]   (npm run demo -- --help)\n`);
    return 2;
  }
  if (options.help) {
    say(HELP);
    return 0;
  }

  // The first Ctrl-C stops everything cleanly; a second one kills the agent outright.
  const stopping = new AbortController();
  let agent: ChildProcess | undefined;
  let signalCount = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signalCount++;
    if (signalCount === 1) {
      say(`\ndemo: ${signal} received, shutting down (again to force)`);
      stopping.abort();
    } else {
      agent?.kill('SIGKILL');
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let dir: string | undefined;
  let server: ChildProcess | undefined;
  let base: string | undefined;
  const adminToken = randomBytes(24).toString('base64url');
  const operator = { authorization: `Bearer ${adminToken}` };
  const submitted = new Map<string, string>();
  const lastLine = new Map<string, string>();
  // Prints each job whose status or progress changed since the last call.
  const printChanges = async (): Promise<JobView[]> => {
    const jobs = (await (await fetch(`${base}/jobs?limit=500`, { headers: operator })).json()) as JobView[];
    for (const job of [...jobs].reverse()) {
      const line = describeJob(job, submitted.get(job.id) ?? 'extra');
      if (lastLine.get(job.id) !== line) say(line);
      lastLine.set(job.id, line);
    }
    return jobs;
  };
  let exitCode = 0;
  try {
    say('demo: preparing the test job image (built on first run)');
    const image = await buildTestJobImage({ quiet: true });
    if (stopping.signal.aborted) return 0;

    dir = await mkdtemp(join(tmpdir(), 'foreman-demo-'));
    const token = randomBytes(24).toString('base64url');
    // `foreman server`, the tokens in its environment (not on its command line, where ps shows them).
    const serverEnv = { ...withoutForeman(), FOREMAN_SERVER_TOKENS: token, FOREMAN_SERVER_ADMIN_TOKENS: adminToken };
    server = spawn(
      process.execPath,
      [join(REPO, 'bin', 'foreman.js'), 'server', '--host', '127.0.0.1', '--port', '0', '--db', join(dir, 'control-server.db'), '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'inherit'], env: serverEnv, detached: true },
    );
    base = await listeningAt(server);

    const configPath = join(dir, 'foreman.toml');
    const config = {
      core: {
        url: `${base}/job`,
        token,
        port: await freePort(),
        network_name: NETWORK,
        data_dir: join(dir, 'data'),
        job_completion_timeout: 60_000,
        job_removal_timeout: 1_000,
        poll_frequency: 1_000,
        labels: LABELS,
      },
    };
    await mkdir(config.core.data_dir, { recursive: true });
    await writeFile(configPath, toToml(config), { mode: 0o600 });

    const logPath = join(dir, 'agent.log');
    const logFd = openSync(logPath, 'a');
    // FOREMAN_* variables would override the demo's config.
    const env = withoutForeman();
    try {
      // Its own process group, so a terminal Ctrl-C reaches only the demo, which then stops the agent gently.
      agent = spawn(process.execPath, [join(REPO, 'bin', 'foreman.js'), '--config', configPath], {
        stdio: ['ignore', logFd, logFd],
        env,
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    const agentExit = exitOf(agent);
    agent.once('error', (err) => warn(`agent: ${err.message}`));

    say(`demo: dashboard  ${base}/`);
    say(`demo: sign in    with the admin token ${adminToken}`);
    say(`demo: agent log  ${logPath}`);
    say(`demo: config     ${configPath}`);

    const post = async (job: unknown): Promise<string> => {
      const response = await fetch(`${base}/jobs`, { method: 'POST', headers: { ...operator, 'content-type': 'application/json' }, body: JSON.stringify(job) });
      const reply = (await response.json()) as { id?: string; error?: string };
      if (response.status !== 201 || reply.id === undefined) throw new Error(`POST /jobs failed: ${reply.error ?? response.status}`);
      return reply.id;
    };
    for (let n = 1; n <= options.jobs; n++) {
      const values = Array.from({ length: 5 }, (_, i) => n * 10 + i);
      const id = await post({ image, labels: LABELS, body: { action: 'progress', steps: 5, delayMs: 300, values } });
      submitted.set(id, `${n}/${options.jobs}`);
    }
    say(`demo: submitted ${options.jobs} jobs (each reports 5 progress steps, then the sum of its values)`);
    if (!options.once) {
      say(`demo: submit more with: curl -X POST ${base}/jobs -H 'authorization: Bearer ${adminToken}' -H 'content-type: application/json' \\`);
      say(`        -d '{"image":"${image}","labels":${JSON.stringify(LABELS)},"body":{"action":"progress","steps":10,"delayMs":500}}'`);
      say('demo: press Ctrl-C to stop');
    }

    const deadline = Date.now() + options.timeoutMs;
    let agentGone = false;
    void agentExit.then(() => (agentGone = true));
    let summarised = false;
    for (;;) {
      const jobs = await printChanges();
      const ours = jobs.filter((job) => submitted.has(job.id));
      const finished = ours.filter((job) => job.status === 'completed');
      const succeeded = finished.filter((job) => job.outcome === 'succeeded').length;
      if (finished.length === submitted.size && !summarised) {
        summarised = true;
        say(`demo: ${succeeded}/${submitted.size} jobs completed`);
        if (options.once) {
          exitCode = succeeded === submitted.size ? 0 : 1;
          break;
        }
      }
      if (stopping.signal.aborted) break;
      if (agentGone) {
        process.stderr.write(`demo: the agent exited unexpectedly (code ${String(await agentExit)}); last lines of ${logPath}:\n${await tail(logPath, 20)}\n`);
        exitCode = 1;
        break;
      }
      if (options.once && Date.now() > deadline) {
        say(`demo: ${succeeded}/${submitted.size} jobs completed`);
        process.stderr.write(`demo: timed out after ${options.timeoutMs / 1000} s waiting for the jobs to end\n`);
        exitCode = 1;
        break;
      }
      await sleep(WATCH_INTERVAL_MS, undefined, { signal: stopping.signal }).catch(() => undefined);
    }
  } catch (err) {
    process.stderr.write(`demo: ${messageOf(err)}\n`);
    exitCode = 1;
  } finally {
    if (agent !== undefined) {
      await stopAgent(agent);
      // Jobs cut short report their outcome (e.g. agent-shutdown) while the agent stops.
      await printChanges().catch(() => undefined);
    }
    await removeLeftovers(new Set(submitted.keys()));
    if (server !== undefined) await stopServer(server);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return exitCode;
}

function withoutForeman(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FOREMAN_') && !key.startsWith('CS_')));
}

/** The server's base URL, from the line `foreman server` prints once it listens. */
async function listeningAt(server: ChildProcess): Promise<string> {
  let out = '';
  return new Promise((resolveUrl, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const url = /dashboard: (http:\/\/\S+?)\/? /.exec(out)?.[1];
      if (url === undefined) return;
      server.stdout?.off('data', onData);
      server.stdout?.resume();
      resolveUrl(url);
    };
    server.stdout?.on('data', onData);
    server.once('exit', (code) => reject(new Error(`foreman server exited with ${String(code)} before it listened: ${out}`)));
    server.once('error', reject);
  });
}

async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  server.kill('SIGTERM');
  await exitOf(server);
}

async function stopAgent(agent: ChildProcess): Promise<void> {
  if (agent.exitCode !== null || agent.signalCode !== null) return;
  say('demo: stopping the agent (it stops and removes its containers)');
  agent.kill('SIGTERM');
  const exited = exitOf(agent);
  const timer = new AbortController();
  const timedOut = await Promise.race([exited.then(() => false), sleep(AGENT_STOP_TIMEOUT_MS, true, { signal: timer.signal }).catch(() => false)]);
  timer.abort();
  if (timedOut) {
    warn(`the agent did not stop within ${AGENT_STOP_TIMEOUT_MS / 1000} s; killing it`);
    agent.kill('SIGKILL');
    await exited;
  }
}

/** Safety net: the agent should have removed its containers; remove any of this demo's that remain, and its network. */
async function removeLeftovers(jobIds: Set<string>): Promise<void> {
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  try {
    const containers = await docker.listContainers({ all: true, filters: { label: ['foreman.managed=true'] } });
    for (const info of containers) {
      const jobId = info.Labels['foreman.job-id'];
      if (jobId === undefined || !jobIds.has(jobId)) continue;
      warn(`container ${info.Names[0] ?? info.Id} was left behind; removing it`);
      await docker.getContainer(info.Id).remove({ force: true });
    }
  } catch (err) {
    warn(`could not check for leftover containers: ${messageOf(err)}`);
  }
  // Fails harmlessly while another agent still has containers on it.
  await docker
    .getNetwork(NETWORK)
    .remove()
    .catch(() => undefined);
}

process.exitCode = await main();
