// `foreman ping`: asks the running agent, over its Unix socket in data_dir, whether it is alive (or, with --ready,
// ready), and says so in one line: exit 0 when it is, 1 when not or when nothing answers. Never 2, which Docker
// reserves in a HEALTHCHECK. Needs no metrics listener, and loads nothing but node:http.
import { request } from 'node:http';

export interface PingOptions {
  /** The agent's socket, `<data_dir>/foreman.sock`. */
  readonly socketPath: string;
  /** Ask for readiness (`/readyz`) instead of liveness (`/healthz`). */
  readonly ready: boolean;
  readonly timeoutMs: number;
}

/** The probe's verdict as one line: `ok` and what was asked, or why not. */
export async function ping(options: PingOptions): Promise<{ ok: boolean; line: string }> {
  const what = options.ready ? 'ready' : 'alive';
  try {
    const { status, text } = await get(options.socketPath, options.ready ? '/readyz' : '/healthz', options.timeoutMs);
    if (status === 200) return { ok: true, line: `ok: the agent is ${what} (${options.socketPath})` };
    return { ok: false, line: `the agent is not ${what}: ${text.trim() || `HTTP ${status}`}` };
  } catch (err) {
    return { ok: false, line: unreachable(options, err) };
  }
}

function unreachable(options: PingOptions, err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const path = options.socketPath;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return `no agent answers at ${path}: is it running, with this core.data_dir?`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot reach the agent at ${path}: permission denied (run as the agent's user, or root)`;
  if (code === 'TIMEOUT') return `the agent at ${path} did not answer within ${options.timeoutMs} ms`;
  return `cannot reach the agent at ${path}: ${err instanceof Error ? err.message : String(err)}`;
}

function get(socketPath: string, path: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text = (text + chunk).slice(0, 4096)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', reject);
    req.end();
  });
}
