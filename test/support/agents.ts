/**
 * Agents under test: their settings (a temp dir, a network name, FOREMAN_* env), an agent in this process or
 * a real `foreman run` process, and stacks of an agent with the fake servers it talks to.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import type { Supervisor } from '../../src/agent/supervisor.ts';
import { composeAgent, createExecutor } from '../../src/agent/compose.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { LoadedConfig } from '../../src/config/types.ts';
import { SqliteStore } from '../../src/jobs/sqlite-store.ts';
import { LogStore } from '../../src/logs/log-store.ts';
import { systemClock } from '../../src/shared/clock.ts';
import { cleanup, docker, dockerUrl } from './containers.ts';
import { repoRoot } from './paths.ts';
import { CallbackReceiver, FakeControlServer } from './servers.ts';
import { waitFor } from './wait.ts';

/** Settings a second engine needs (Podman: where the job API listens), from FOREMAN_TEST_ENGINE_ENV as JSON. */
const engineSettings = JSON.parse(process.env.FOREMAN_TEST_ENGINE_ENV ?? '{}') as Record<string, string>;

export interface TestEnv {
  readonly dir: string;
  readonly networkName: string;
  /** Env for loadConfig / the agent process: FOREMAN_* settings. */
  readonly env: Record<string, string>;
}

/** A temp dir, its own Docker network name, and the FOREMAN_* env for an agent that uses them. */
export function testEnv(controlUrl: string, overrides: Record<string, string> = {}): TestEnv {
  const dir = mkdtempSync(join(tmpdir(), 'foreman-test-'));
  const networkName = `foreman-test-${Math.random().toString(36).slice(2, 8)}`;
  const env: Record<string, string> = {
    FOREMAN_CORE_URL: controlUrl,
    FOREMAN_CORE_TOKEN: 'test-token',
    FOREMAN_CORE_PORT: '0',
    FOREMAN_CORE_NETWORK_NAME: networkName,
    FOREMAN_CORE_DATA_DIR: join(dir, 'data'),
    FOREMAN_CORE_POLL_FREQUENCY: '100',
    FOREMAN_CORE_POLL_TIMEOUT: '2000',
    FOREMAN_CORE_JOB_COMPLETION_TIMEOUT: '30000',
    FOREMAN_CORE_JOB_REMOVAL_TIMEOUT: '200',
    FOREMAN_CORE_SHUTDOWN_TIMEOUT: '15000',
    FOREMAN_CORE_LABELS_QUEUE: 'test',
    FOREMAN_LOG_LEVEL: 'debug',
    FOREMAN_DOCKER_URL: dockerUrl,
    ...engineSettings,
    ...overrides,
  };
  return { dir, networkName, env };
}

export function loadTestConfig(t: TestEnv): LoadedConfig {
  return loadConfig({ env: t.env, cwd: t.dir, home: t.dir });
}

export interface InProcessAgent {
  readonly agent: Supervisor;
  readonly store: SqliteStore;
  readonly loaded: LoadedConfig;
  readonly logFile: string;
  close(): Promise<void>;
}

/** Starts an agent in this process, logging to a file in the test dir. */
export async function startAgent(t: TestEnv): Promise<InProcessAgent> {
  const loaded = loadTestConfig(t);
  const logFile = join(t.dir, `agent-${Date.now()}.log`);
  const log = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true }));
  const store = SqliteStore.open({ dataDir: loaded.config.core.data_dir, log });
  const executor = createExecutor(loaded.config, docker, store.agentId, log, systemClock);
  const logStore = new LogStore(join(loaded.config.core.data_dir, 'logs.db'));
  const agent = composeAgent(loaded.config, { store, executor, log, clock: systemClock, version: 'test', logStore });
  await agent.start();
  return { agent, store, loaded, logFile, close: () => agent.close() };
}

/** A `foreman run` process. */
export interface SpawnedAgent {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Its exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  /** Sends it a signal; when absent, `child.kill(signal)` does (an agent in a PID namespace of its own needs its group signalled). */
  readonly kill?: (signal: NodeJS.Signals) => void;
}

/**
 * Starts `foreman` as a real process with a config file in the test dir (`args` after `--config`).
 * `executable` runs that file (the single executable) in its own folder instead of `node bin/foreman.js`.
 */
export function spawnAgent(
  t: TestEnv,
  extraEnv: Record<string, string> = {},
  nodeFlags: string[] = [],
  args: string[] = [],
  executable?: string,
): SpawnedAgent {
  const logFile = join(t.dir, `agent-process-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const configFile = join(t.dir, 'foreman.toml');
  writeFileSync(configFile, '# settings come from FOREMAN_* variables\n');
  const before = executable ? [] : [...nodeFlags, join(repoRoot, 'bin/foreman.js')];
  let child: ChildProcess;
  try {
    child = spawn(executable ?? process.execPath, [...before, 'run', '--config', configFile, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: t.dir, ...t.env, ...extraEnv },
      stdio: ['ignore', fd, fd],
      ...(executable ? { cwd: dirname(executable) } : {}),
    });
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd);
  }
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, logFile, exited };
}

export function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function signal(agent: SpawnedAgent, sig: NodeJS.Signals): void {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
  if (agent.kill) agent.kill(sig);
  else agent.child.kill(sig);
}

/**
 * The agent's exit code once it exits by itself; fails (with the end of its log) when it is still running
 * after `timeoutMs`, so an agent that should have exited fails the test instead of hanging it.
 */
export async function exitCode(agent: SpawnedAgent, timeoutMs = 30_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the agent did not exit within ${timeoutMs} ms; its log ends:\n${readLog(agent.logFile).slice(-2000)}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([agent.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Signals the agent (SIGTERM unless told) and waits for its exit; SIGKILL when it is still running after `graceMs`. */
export async function stopAgent(agent: SpawnedAgent, sig: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<number | null> {
  signal(agent, sig);
  if (sig === 'SIGKILL') return agent.exited;
  return exitCode(agent, graceMs).catch(() => {
    signal(agent, 'SIGKILL');
    return agent.exited;
  });
}

/** Stops a spawned agent (gently unless `signal` says otherwise), closes the test servers and removes what the test made. */
export async function teardown(parts: {
  agent: SpawnedAgent;
  control: FakeControlServer;
  callbacks: CallbackReceiver;
  env: TestEnv;
  agentId: string | undefined;
  signal?: NodeJS.Signals;
}): Promise<void> {
  await closeAll([
    () => stopAgent(parts.agent, parts.signal ?? 'SIGTERM'),
    () => parts.control.close(),
    () => parts.callbacks.stop(),
    () => cleanup(parts.env, parts.agentId),
  ]);
}

/** Runs every step even when one fails; then throws the first failure. */
async function closeAll(steps: Array<() => Promise<unknown>>): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw failures[0];
}

/** The agent id an agent stored in its data_dir, if it got that far. */
export function storedAgentId(env: TestEnv): string | undefined {
  const file = join(env.env.FOREMAN_CORE_DATA_DIR ?? join(env.dir, 'data'), 'foreman.db');
  if (!existsSync(file)) return undefined;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare("SELECT value FROM meta WHERE key = 'agent_id'").get() as { value: string } | undefined)?.value;
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}

/** A control server, a callback receiver and an in-process agent wired to them. */
export interface Stack {
  readonly control: FakeControlServer;
  readonly callbacks: CallbackReceiver;
  readonly env: TestEnv;
  readonly running: InProcessAgent;
  /** Closes the agent and both servers and removes what the test made. Safe to call twice. */
  close(): Promise<void>;
}

export async function startStack(overrides: Record<string, string> = {}): Promise<Stack> {
  const control = await new FakeControlServer().start();
  let callbacks: CallbackReceiver | undefined;
  let env: TestEnv | undefined;
  let running: InProcessAgent;
  try {
    callbacks = await new CallbackReceiver().start();
    env = testEnv(control.url, overrides);
    running = await startAgent(env);
  } catch (err) {
    // Nothing may stay open when the agent does not start: an open server keeps the test process alive.
    const made = env;
    await closeAll([() => control.close(), async () => callbacks?.stop(), async () => made && cleanup(made, storedAgentId(made))]).catch(() => undefined);
    throw err;
  }
  const started = { control, callbacks, env, running };
  let closing: Promise<void> | undefined;
  return {
    ...started,
    close() {
      closing ??= closeAll([() => running.close(), () => control.close(), () => started.callbacks.stop(), () => cleanup(started.env, running.agent.agentId)]);
      return closing;
    },
  };
}

export interface SpawnStackOptions {
  /** More env for the process only (not in `env.env`), passed to spawnAgent. */
  readonly extraEnv?: Record<string, string>;
  /** Node flags before bin/foreman.js, passed to spawnAgent. */
  readonly nodeFlags?: string[];
  /** Arguments after `run --config FILE`, passed to spawnAgent. */
  readonly args?: string[];
  /** The single executable to run instead of `node bin/foreman.js`, passed to spawnAgent. */
  readonly executable?: string;
  /** Starts the agent instead of spawnAgent (e.g. with a config file of its own, or as PID 1), at first and on each restart. */
  readonly spawn?: (env: TestEnv) => SpawnedAgent;
  /** The control server URL the agent is given, made from the fake's own (e.g. with credentials in it). */
  readonly controlUrl?: (url: string) => string;
  /** Runs once the env is made, before the agent first starts (e.g. to make its network on another engine). */
  readonly prepare?: (env: TestEnv) => unknown;
}

/** A control server, a callback receiver and a real agent process wired to them. */
export interface SpawnedStack {
  readonly control: FakeControlServer;
  readonly callbacks: CallbackReceiver;
  readonly env: TestEnv;
  /** The agent process started last. */
  readonly agent: SpawnedAgent;
  /** The agent's id, once it polled (or reported, or stored it in its data_dir). */
  agentId(): string | undefined;
  /** Waits for the agent's first poll and returns the id it carried. */
  waitForAgentId(timeoutMs?: number): Promise<string>;
  /** Stops the running agent (see stopAgent) and resolves with its exit code; the servers stay up. */
  stop(options?: { signal?: NodeJS.Signals }): Promise<number | null>;
  /** Stops the running agent (SIGKILL unless told) if it still runs, and starts a new one on the same env. */
  restart(options?: { signal?: NodeJS.Signals }): Promise<SpawnedAgent>;
  /**
   * Stops the agent (SIGTERM unless told, SIGKILL after 30 s), closes both servers, and removes the containers,
   * network and temp dir the test made. Safe to call twice; every step runs even when one fails.
   */
  close(options?: { signal?: NodeJS.Signals }): Promise<void>;
}

/**
 * Starts a fake control server and callback receiver, an env for them with `overrides`, and a `foreman run`
 * process on it. Close it in a `finally` (or an `after` hook that tolerates a failed `before`).
 */
export async function spawnStack(overrides: Record<string, string> = {}, options: SpawnStackOptions = {}): Promise<SpawnedStack> {
  const control = await new FakeControlServer().start();
  let callbacks: CallbackReceiver | undefined;
  let env: TestEnv | undefined;
  const start = (t: TestEnv): SpawnedAgent =>
    options.spawn ? options.spawn(t) : spawnAgent(t, options.extraEnv, options.nodeFlags, options.args, options.executable);
  let agent: SpawnedAgent;
  try {
    callbacks = await new CallbackReceiver().start();
    env = testEnv(options.controlUrl ? options.controlUrl(control.url) : control.url, overrides);
    await options.prepare?.(env);
    agent = start(env);
  } catch (err) {
    const made = env;
    await closeAll([() => control.close(), async () => callbacks?.stop(), async () => made && cleanup(made)]).catch(() => undefined);
    throw err;
  }
  const parts = { control, callbacks, env };
  const agentId = (): string | undefined => {
    const reported = parts.callbacks.requests.find((r) => r.headers['x-foreman-agent-id'])?.headers['x-foreman-agent-id'];
    return control.agentId ?? (reported === undefined ? undefined : String(reported));
  };
  let closing: Promise<void> | undefined;
  return {
    ...parts,
    get agent() {
      return agent;
    },
    agentId,
    waitForAgentId: (timeoutMs = 30_000) => waitFor("the agent's first poll", agentId, timeoutMs),
    stop: (o = {}) => stopAgent(agent, o.signal ?? 'SIGTERM'),
    async restart(o = {}) {
      await stopAgent(agent, o.signal ?? 'SIGKILL');
      agent = start(parts.env);
      return agent;
    },
    close(o = {}) {
      closing ??= closeAll([
        () => stopAgent(agent, o.signal ?? 'SIGTERM'),
        () => control.close(),
        () => parts.callbacks.stop(),
        () => cleanup(parts.env, agentId() ?? storedAgentId(parts.env)),
      ]);
      return closing;
    },
  };
}
