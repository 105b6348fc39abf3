import { homedir } from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import pkg from '../../package.json' with { type: 'json' };
import { ConfigError, loadConfig, loadDataDir, probeSocketPath, runAgentProcess, socketPathProblem } from '../agent/process.ts';
import { ping } from './ping.ts';

const HELP = `Usage: foreman [command] [options]

Polls a control server for jobs and runs each one in a Docker container.

Commands:
  run            Run the agent (the default)
  check          Show the effective configuration and test Docker and the control server
  ping           Ask the running agent whether it is alive: one line, exit 0 if so, 1 if
                 not (for a container HEALTHCHECK or a script; needs no metrics listener)
  server         Run the reference control server (foreman server --help)
  conformance    Check a control server against the protocol, playing an agent
                 (foreman conformance --help)

Options:
  -c, --config PATH        Read this config file instead of searching for one
      --log-level LEVEL    fatal, error, warn, info, debug, trace or silent (log.level)
      --log-format FORMAT  json, or text for a terminal (log.format)
  -h, --help               Show this help
  -V, --version            Show foreman's version and the Node.js version it runs on

ping:
  --ready                  Ask whether the agent is ready (takes jobs) instead of alive
  --timeout MS             Give up after MS milliseconds (default 3000)

One-shot runs (run only), for ephemeral hosts such as one VM or pod per job:
  --max-jobs N             Take at most N jobs, then exit 0 once they have ended
                           and their reports have been delivered
  --exit-when-idle MS      Exit 0 after MS milliseconds with nothing running,
                           queued or left to deliver

Config file search order (first found wins):
  --config PATH, $FOREMAN_CONFIG, ./foreman.toml, /etc/foreman/foreman.toml,
  $HOME/.foreman/foreman.toml
Any option can be overridden by an environment variable FOREMAN_<SECTION>_<KEY>,
e.g. FOREMAN_CORE_PORT=8080 or FOREMAN_CORE_LABELS_QUEUE=high. Durations take
whole milliseconds or a unit: 500ms, 90s, 15m, 2h, 7d.

Exit status: 0 success, 1 failure, 2 bad usage or configuration (ping: 0 or 1).`;

const COMMANDS = ['run', 'check', 'ping'] as const;
type Command = (typeof COMMANDS)[number];

/** Exit code for bad usage or bad configuration. */
const EXIT_USAGE = 2;

/**
 * V8 settings for a long-lived, mostly idle agent, applied before any WebAssembly is compiled.
 *
 * `--liftoff-only`: undici parses HTTP with llhttp compiled to WebAssembly. By default V8 recompiles
 * its hot functions with TurboFan on a background thread, whose malloc arena grows to some 36 MB and,
 * in about half the runs, keeps 10 MB of it resident for good (an idle agent at 70 MB instead of
 * 60). Liftoff's code parses the agent's few small responses just as well.
 */
export const V8_FLAGS = ['--liftoff-only'] as const;

/** The command-line entry point: the only module that sees argv and the process environment. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
  ignoreClosedOutput();
  quietLibraryDeprecations();
  const write = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const complain = (line: string): void => {
    process.stderr.write(`foreman: ${line}\n`);
  };

  // Commands with options of their own.
  if (argv[0] === 'server') return (await import('./server.ts')).serverCommand(argv.slice(1), env, write, complain);
  if (argv[0] === 'conformance') return (await import('./conformance.ts')).conformanceCommand(argv.slice(1), env, write, complain);

  let values: {
    config?: string | undefined;
    help?: boolean | undefined;
    version?: boolean | undefined;
    'max-jobs'?: string | undefined;
    'exit-when-idle'?: string | undefined;
    'log-level'?: string | undefined;
    'log-format'?: string | undefined;
    ready?: boolean | undefined;
    timeout?: string | undefined;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
        'max-jobs': { type: 'string' },
        'exit-when-idle': { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        ready: { type: 'boolean' },
        timeout: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    complain(`${describeArgsError(err)} (see foreman --help)`);
    return EXIT_USAGE;
  }

  if (values.help || positionals[0] === 'help') {
    write(HELP);
    return 0;
  }
  if (values.version) {
    write(`foreman ${pkg.version} (node ${process.version})`);
    return 0;
  }
  if (positionals.length > 1) {
    complain(`unexpected argument "${positionals[1]}" (see foreman --help)`);
    return EXIT_USAGE;
  }
  const command = positionals[0] ?? 'run';
  if (command === 'server' || command === 'conformance') {
    complain(`put "${command}" first: foreman ${command} [options] (see foreman ${command} --help)`);
    return EXIT_USAGE;
  }
  if (!isCommand(command)) {
    complain(`unknown command "${command}" (see foreman --help)`);
    return EXIT_USAGE;
  }
  const maxJobs = wholeNumber(values['max-jobs'], '--max-jobs', 1);
  const exitWhenIdleMs = wholeNumber(values['exit-when-idle'], '--exit-when-idle', 0);
  if (typeof maxJobs === 'string' || typeof exitWhenIdleMs === 'string') {
    complain(`${typeof maxJobs === 'string' ? maxJobs : String(exitWhenIdleMs)} (see foreman --help)`);
    return EXIT_USAGE;
  }
  if (command !== 'run' && (maxJobs !== undefined || exitWhenIdleMs !== undefined)) {
    complain('--max-jobs and --exit-when-idle apply to "run" only (see foreman --help)');
    return EXIT_USAGE;
  }
  const pingTimeoutMs = wholeNumber(values.timeout, '--timeout', 1);
  if (typeof pingTimeoutMs === 'string') {
    complain(`${pingTimeoutMs} (see foreman --help)`);
    return EXIT_USAGE;
  }
  if (command !== 'ping' && (values.ready !== undefined || pingTimeoutMs !== undefined)) {
    complain('--ready and --timeout apply to "ping" only (see foreman --help)');
    return EXIT_USAGE;
  }
  const flags = [
    { key: 'log.level', flag: '--log-level', value: values['log-level'] },
    { key: 'log.format', flag: '--log-format', value: values['log-format'] },
  ].flatMap(({ key, flag, value }) => (value === undefined ? [] : [{ key, flag, value }]));

  if (command === 'ping') return runPing(values.config, env, { ready: values.ready === true, timeoutMs: pingTimeoutMs ?? 3000 }, write, complain);

  try {
    const loaded = loadConfig({
      argvConfigPath: values.config,
      env,
      cwd: process.cwd(),
      home: env.HOME || homedir(),
      flags,
    });
    for (const warning of loaded.warnings) complain(`warning: ${warning}`);
    // Loaded only for `check`: an idle agent should not hold code it never runs.
    if (command === 'check') return await (await import('./check/check.ts')).runCheck(loaded, write);
    return await runAgentProcess(loaded, {
      version: pkg.version,
      complain,
      oneShot: { maxJobs, exitWhenIdleMs },
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      // One problem a line, each naming where its value came from; after the warnings (a misspelled name's
      // did-you-mean), which often say why.
      for (const warning of err.warnings) complain(`warning: ${warning}`);
      for (const problem of err.problems) complain(problem);
      return EXIT_USAGE;
    }
    // Anything else is a bug or an environment failure; one line, no stack trace.
    complain(err instanceof Error ? err.message : String(err));
    return 1;
  }
}

/**
 * `foreman ping`: the config only says where data_dir is (nothing else of it is checked, and no warning is
 * repeated: a HEALTHCHECK runs this every few seconds); then one line, exit 0 or 1, also for a config that
 * cannot be read.
 */
async function runPing(
  configPath: string | undefined,
  env: NodeJS.ProcessEnv,
  options: { ready: boolean; timeoutMs: number },
  write: (line: string) => void,
  complain: (line: string) => void,
): Promise<number> {
  let socketPath: string;
  try {
    socketPath = probeSocketPath(loadDataDir({ argvConfigPath: configPath, env, cwd: process.cwd(), home: env.HOME || homedir() }));
  } catch (err) {
    complain(`cannot ping: ${err instanceof ConfigError ? err.problems.join('; ') : err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const tooLong = socketPathProblem(socketPath);
  if (tooLong) {
    complain(`cannot ping: ${tooLong}`);
    return 1;
  }
  const result = await ping({ socketPath, ...options });
  if (result.ok) write(result.line);
  else complain(result.line);
  return result.ok ? 0 : 1;
}

let outputGuarded = false;

/** `foreman check | head -1` closes stdout early; that is not worth a crash with a stack trace. */
function ignoreClosedOutput(): void {
  if (outputGuarded) return;
  outputGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && stream === process.stdout) process.stderr.write(`foreman: cannot write output: ${err.message}\n`);
    });
  }
}

/**
 * Deprecation warnings our dependencies trigger, which no user of foreman can act on. DEP0169: docker-modem 5
 * parses a TCP engine's address with `url.parse()`, which Node 24 warns about on stderr (once per process), so
 * `foreman check` and the agent on a `tcp://` or `https://` engine would print it. Every other warning still shows.
 */
const QUIET_DEPRECATIONS = new Set(['DEP0169']);
let deprecationsQuieted = false;

function quietLibraryDeprecations(): void {
  if (deprecationsQuieted) return;
  deprecationsQuieted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = (warning: string | Error, ...rest: unknown[]) => {
    // emitWarning(warning, type, code) or emitWarning(warning, { type, code })
    const options = rest[0];
    const code = typeof options === 'object' && options !== null ? (options as { code?: unknown }).code : rest[1];
    if (typeof code === 'string' && QUIET_DEPRECATIONS.has(code)) return;
    emit(warning, ...rest);
  };
}

/** An option's whole number of at least `min`: the number, undefined when absent, or what is wrong. */
function wholeNumber(value: string | undefined, option: string, min: number): number | undefined | string {
  if (value === undefined) return undefined;
  const n = /^\d{1,15}$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > 2_147_483_647) return `${option} ${JSON.stringify(value)}: expected a whole number from ${min} to 2147483647`;
  return n;
}

function isCommand(name: string): name is Command {
  return (COMMANDS as readonly string[]).includes(name);
}

/** parseArgs' own messages are long and mention positionals; say just what was wrong. */
function describeArgsError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'([^']+)'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option ${option}`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && message.includes('argument missing')) {
    return `option ${/--[\w-]+/.exec(option ?? '')?.[0] ?? option ?? ''} needs a value`;
  }
  return message;
}
