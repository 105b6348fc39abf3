// `foreman server`: the reference control server. Reads its flags and FOREMAN_SERVER_* / CS_* variables here (only
// src/cli/ sees argv and the environment) and hands them to src/server/process.ts.
import { parseArgs } from 'node:util';
import { KEYS, ServerConfigError, loadServerConfig, runServerProcess } from '../server/process.ts';

const MULTIPLE = new Set(['tokens', 'admin_tokens', 'read_only_tokens']);

export const SERVER_HELP = `Usage: foreman server [options]

Runs the reference control server: agents poll it for jobs (GET /job) and report to each job's
callbackUrl and logsUrl; operators submit, cancel and watch jobs through its API and dashboard.
One instance on SQLite (the default), or several behind a load balancer on one PostgreSQL database.

Options:
${KEYS.map((key) => `  ${`${key.flag} ${key.kind === 'tokens' ? 'TOKEN' : key.kind === 'file' ? 'FILE' : 'VALUE'}`.padEnd(30)} ${key.help}`).join('\n')}
  -c, --config FILE              read these settings from a TOML file (keys: ${KEYS.slice(0, 3)
    .map((key) => key.key)
    .join(', ')}, …)
  -h, --help                     show this help

Each setting can also come from FOREMAN_SERVER_<KEY> (e.g. FOREMAN_SERVER_ADMIN_TOKEN_FILE) or the
older CS_<KEY> (CS_PORT, CS_DB, CS_TOKENS, CS_TOKEN_FILE…); a flag wins over the environment, the
environment over the file. Durations take units: 500ms, 15s, 10m, 2h, 30d.

Exit status: 0 after SIGINT or SIGTERM, 1 when the server cannot start, 2 for bad usage or settings.`;

export async function serverCommand(argv: string[], env: NodeJS.ProcessEnv, write: (line: string) => void, complain: (line: string) => void): Promise<number> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string', short: 'c' },
    help: { type: 'boolean', short: 'h' },
    database: { type: 'string' },
  };
  for (const key of KEYS) options[key.flag.slice(2)] = { type: 'string', ...(MULTIPLE.has(key.key) ? { multiple: true } : {}) };
  let values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    complain(`${(error as Error).message.split('\n')[0] ?? ''} (see foreman server --help)`);
    return 2;
  }
  if (values.help === true) {
    write(SERVER_HELP);
    return 0;
  }
  const flags: Record<string, string | string[] | undefined> = {};
  for (const key of KEYS) flags[key.key] = values[key.flag.slice(2)] as string | string[] | undefined;
  flags.database ??= values.database as string | undefined;
  let config;
  try {
    config = loadServerConfig({ flags, env, configPath: (values.config as string | undefined) ?? env.FOREMAN_SERVER_CONFIG });
  } catch (error) {
    if (!(error instanceof ServerConfigError)) throw error;
    for (const problem of error.problems) complain(problem);
    return 2;
  }
  return runServerProcess(config, { write, complain });
}
