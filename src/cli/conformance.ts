// `foreman conformance <core.url>`: checks a running control server against the protocol by playing an agent. Reads
// its flags here (only src/cli/ sees argv and the environment) and hands them to src/conformance/conformance.ts.
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/formats.ts';
import { RULE_NAMES, runConformance } from '../conformance/conformance.ts';
import type { Hook } from '../conformance/conformance.ts';

export const CONFORMANCE_HELP = `Usage: foreman conformance <core.url> --token TOKEN (--enqueue CMD | --enqueue-url URL) [options]

Plays foreman agents and their jobs against a running control server and checks each rule of
docs/protocol.md a server must keep; prints one line per rule (pass, FAIL or skip, and why) and
exits 1 if any rule fails. It takes every job it is handed: point it at a server of its own, not
one with real work. No container or engine is needed.

Rules:
${RULE_NAMES.map((name) => `  - ${name}`).join('\n')}

How to enqueue a job (a server has no standard way; the checker enqueues what it needs):
  --enqueue CMD              a shell command
  --enqueue-url URL          or an HTTP request: POST to URL (--enqueue-method to change)
  --enqueue-header 'K: V'    a header of that request (repeatable)
  --enqueue-body TEMPLATE    its body (default: {"id":"{{id}}","image":"{{image}}","labels":{"{{label}}":"{{run}}"}})
Each job must require the label {{label}}={{run}} (every agent of the checker polls with it), so
each rule sees its own jobs only. Templates and commands get {{id}} (a job id to use, if the server
takes one), {{run}}, {{label}} and {{image}}; a command also gets them as FOREMAN_CONFORMANCE_ID,
FOREMAN_CONFORMANCE_RUN, FOREMAN_CONFORMANCE_LABEL and FOREMAN_CONFORMANCE_IMAGE.

How to cancel a job (for the cancel rules; skipped without):
  --cancel CMD | --cancel-url URL [--cancel-method M] [--cancel-header 'K: V']   {{id}} is the job's id

Options:
  --token TOKEN              the bearer token agents poll with (or FOREMAN_CONFORMANCE_TOKEN)
  --lost-after DURATION      how long the server may take to hand a silent agent's job to another
                             (default 60s; 0 skips that rule)
  --timeout DURATION         how long one request may take (default 10s)
  -h, --help                 show this help

Example, the reference server (foreman server --token T --admin-token A --agent-timeout 3s):
  foreman conformance http://127.0.0.1:8888/job --token T --lost-after 10s \\
    --enqueue-url http://127.0.0.1:8888/jobs --enqueue-header 'authorization: Bearer A' \\
    --cancel-url 'http://127.0.0.1:8888/jobs/{{id}}/cancel' --cancel-header 'authorization: Bearer A'

Exit status: 0 every rule passed (or was skipped), 1 a rule failed, 2 bad usage.`;

const DEFAULT_BODY = '{"id":"{{id}}","image":"{{image}}","labels":{"{{label}}":"{{run}}"}}';

export async function conformanceCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  write: (line: string) => void,
  complain: (line: string) => void,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        token: { type: 'string' },
        enqueue: { type: 'string' },
        'enqueue-url': { type: 'string' },
        'enqueue-method': { type: 'string' },
        'enqueue-header': { type: 'string', multiple: true },
        'enqueue-body': { type: 'string' },
        cancel: { type: 'string' },
        'cancel-url': { type: 'string' },
        'cancel-method': { type: 'string' },
        'cancel-header': { type: 'string', multiple: true },
        'lost-after': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    complain(`${(error as Error).message.split('\n')[0] ?? ''} (see foreman conformance --help)`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    write(CONFORMANCE_HELP);
    return 0;
  }
  const problems: string[] = [];
  const url = positionals[0];
  if (url === undefined || positionals.length > 1) problems.push('give the URL agents poll, once: foreman conformance <core.url> …');
  else if (!/^https?:\/\/[^/]/.test(url)) problems.push(`"${url}" is not an http:// or https:// URL`);
  const token = values.token ?? env.FOREMAN_CONFORMANCE_TOKEN;
  if (token === undefined || token === '') problems.push('--token (or FOREMAN_CONFORMANCE_TOKEN) is required: the token agents poll with');
  if ((values.enqueue === undefined) === (values['enqueue-url'] === undefined))
    problems.push('say how to enqueue a job: --enqueue CMD or --enqueue-url URL (one of them)');
  if (values.cancel !== undefined && values['cancel-url'] !== undefined) problems.push('--cancel and --cancel-url: give one');
  const duration = (flag: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined) problems.push(`${flag} ${JSON.stringify(text)}: expected a duration such as 10s or 2m`);
    return ms ?? fallback;
  };
  const lostAfterMs = duration('--lost-after', values['lost-after'], 60_000);
  const timeoutMs = duration('--timeout', values.timeout, 10_000);
  if (problems.length > 0) {
    for (const problem of problems) complain(problem);
    complain('see foreman conformance --help');
    return 2;
  }
  const enqueue: Hook =
    values.enqueue !== undefined
      ? { command: values.enqueue }
      : { url: values['enqueue-url'], method: values['enqueue-method'], headers: values['enqueue-header'], body: values['enqueue-body'] ?? DEFAULT_BODY };
  const cancel: Hook | undefined =
    values.cancel !== undefined
      ? { command: values.cancel }
      : values['cancel-url'] !== undefined
        ? { url: values['cancel-url'], method: values['cancel-method'], headers: values['cancel-header'] }
        : undefined;
  const results = await runConformance({ url: url!, token: token!, enqueue, cancel, lostAfterMs, timeoutMs, env }, (result) =>
    write(`${result.outcome.padEnd(4)}  ${result.rule}: ${result.why}`),
  );
  const failed = results.filter((result) => result.outcome === 'FAIL').length;
  const skipped = results.filter((result) => result.outcome === 'skip').length;
  write(`${results.length - failed - skipped} of ${results.length} rules passed; ${failed} failed; ${skipped} skipped`);
  return failed === 0 ? 0 : 1;
}
