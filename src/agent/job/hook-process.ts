/** One run of a host-side hook: a command (argv, no shell) with a clean environment, a timeout and an output tail. */
import { spawn } from 'node:child_process';
import type { HookResult } from '../../protocol/wire.ts';
import type { Clock } from '../../shared/clock.ts';

/** Lines of a hook's output kept for the job's report and the agent's log. */
export const HOOK_TAIL_LINES = 20;
/** Bytes of a hook's output kept (its end): a chatty hook costs no memory. */
const HOOK_TAIL_BYTES = 8192;

/**
 * The environment a hook sees: a fixed PATH and the job's variables, nothing of the agent's own (its token
 * or registry passwords may sit there), so a hook is as the operator wrote it wherever the agent runs.
 */
const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export interface HookRun extends HookResult {
  /** The last lines it wrote (stdout and stderr together). */
  readonly tail: readonly string[];
  /** Why it did not run, when it could not be started (e.g. no such file). */
  readonly error?: string;
}

/** True when the hook exited 0 in time. */
export function hookSucceeded(run: HookRun): boolean {
  return run.exitCode === 0 && !run.timedOut && run.error === undefined;
}

/**
 * Runs `argv` with `env` until it exits, `timeoutMs` passes or `signal` aborts (both kill its process
 * group with SIGKILL). Never throws: a command that cannot start is a run with `error`.
 */
export function runHook(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  timeoutMs: number,
  clock: Clock,
  signal?: AbortSignal,
): Promise<HookRun> {
  const started = clock.now();
  const [command, ...args] = argv;
  let output = Buffer.alloc(0);
  const keep = (chunk: Buffer): void => {
    output = Buffer.concat([output, chunk]);
    if (output.length > HOOK_TAIL_BYTES) output = output.subarray(output.length - HOOK_TAIL_BYTES);
  };
  const tail = (): string[] =>
    output
      .toString('utf8')
      .split(/\r?\n/)
      .filter((line) => line.length > 0)
      .slice(-HOOK_TAIL_LINES);
  return new Promise<HookRun>((resolve) => {
    if (command === undefined) {
      resolve({ exitCode: null, timedOut: false, durationMs: 0, tail: [], error: 'no command configured' });
      return;
    }
    let timedOut = false;
    let settled = false;
    // Its own process group, so a timeout also kills what it started.
    const child = spawn(command, args, { env: { ...BASE_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const kill = (): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = clock.after(timeoutMs, () => {
      timedOut = true;
      kill();
    });
    const onAbort = (): void => kill();
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (run: Omit<HookRun, 'durationMs' | 'tail' | 'timedOut'>): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      signal?.removeEventListener('abort', onAbort);
      resolve({ ...run, timedOut, durationMs: clock.now() - started, tail: tail() });
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => finish({ exitCode: null, error: err.message }));
    child.on('close', (code) => finish({ exitCode: code }));
    if (signal?.aborted) kill();
  });
}

/** A run as one phrase: `exited with code 3`, `timed out after 300000 ms`, `could not start: …`. */
export function describeHookRun(run: HookRun): string {
  if (run.error !== undefined) return `could not start: ${run.error}`;
  if (run.timedOut) return `timed out after ${run.durationMs} ms`;
  return run.exitCode === null ? 'was killed' : `exited with code ${run.exitCode}`;
}
