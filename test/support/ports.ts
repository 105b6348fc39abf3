/** Free TCP ports for servers the agent binds itself, from below the kernel's ephemeral range. */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports `freePort` has handed out in this process, so no two callers get the same one. */
const handedOut = new Set<number>();

/** The lowest port the kernel hands out for `listen(0)` and outgoing connections. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on every interface right now, for a server the agent binds itself (a metrics address, a job API
 * port that must stay fixed across restarts). It comes from below the kernel's ephemeral range: a port from
 * `listen(0)`, once released, can go straight to the next `listen(0)`, e.g. the test's own control server, which
 * then answers in the agent's place.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  const top = low > 11_000 ? low : 32_768; // a range starting lower leaves no gap: take Linux's default bound
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free TCP port found between 10000 and ${top}`);
}
