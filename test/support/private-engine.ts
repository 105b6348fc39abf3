/**
 * A private Docker engine for tests of engine outages: a second dockerd with its own socket, data root,
 * exec root, pid file, containerd, bridge interface and cgroup parent, started and stopped by its pid.
 * The host's dockerd, its containers, networks, docker0 and firewall rules are never touched.
 *
 * Needs root, `dockerd` and `docker` (Debian's docker.io) and `ip` (iproute2).
 *
 * Flags and why:
 * - `--bridge=<own bridge>`: never `--bridge=none` nor docker0; both make a second daemon delete the
 *   host's docker0. The bridge is made here with `ip link add` (dockerd creates only docker0 itself).
 * - `--iptables=false --ip-masq=false --ip-forward=false`: leaves the host's firewall and sysctls alone.
 *   Containers reach the agent on their network's gateway, which is host-local traffic and needs none of these.
 * - no `--default-address-pool`: dockerd 20.10, started with address pools over a data root that already
 *   holds its default "bridge" network (that is, on every restart), deletes the interface named docker0
 *   ("Clear stale bridge network" in daemon_unix.go), which is the host's. Instead the test creates its
 *   network with an explicit subnet from this engine's own 10.x /16 (`createNetwork`); a network created
 *   without one gets a default pool, which dockerd picks clear of the host's routes.
 * - `--config-file` of its own: neither the host's /etc/docker/daemon.json is read nor /etc/docker/key.json written.
 * - `--cgroup-parent=/<own name>` on cgroup v1 (cgroupfs driver): its containers' cgroups sit apart from the
 *   host engine's /docker and are removed with it. On cgroup v2 the default stays: dockerd 20.10 picks the
 *   systemd driver there when systemd runs, which takes only "x.slice" parents, and cgroupfs on v2 would
 *   enable controllers in the root cgroup; so its containers go where the host engine's go.
 * - no `--containerd`: dockerd starts a containerd of its own under the exec root.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Dirent } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';

export interface PrivateEngine {
  /** unix:///tmp/fe-XXXXXX/d.sock */
  readonly url: string;
  /** A client for the engine's socket. */
  readonly docker: Docker;
  /** Its directory: socket, pid file, log, data root and exec root. */
  readonly dir: string;
  /** The dockerd log (its output across restarts). */
  readonly logFile: string;
  /** The bridge interface made for its default network. */
  readonly bridge: string;
  /** The 10.x /16 its own addresses come from. */
  readonly range: string;
  /** How long starting it and loading the images took. */
  readonly timings: { readonly startMs: number; readonly loadImagesMs: number };
  /** Pid of the running dockerd, undefined while it is down. */
  readonly pid: number | undefined;
  /** Creates a bridge network with a subnet of its own range, for an agent to find and use. */
  createNetwork(name: string, labels?: Record<string, string>): Promise<{ subnet: string; gateway: string }>;
  /** SIGTERMs dockerd by its pid, waits for it to exit, starts it again with the same flags, waits until it answers. */
  restart(): Promise<{ downMs: number }>;
  /** Removes its containers and networks, ends it by its pid and removes all it left. Safe to call twice. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
// dockerd's own shutdown waits up to 15 s (--shutdown-timeout) for containers, then stops containerd (up to 10 s).
const EXIT_TIMEOUT_MS = 45_000;

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Why a private engine cannot run here, or undefined when it can. */
export function privateEngineUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to run a private dockerd';
  const missing = Object.entries({ dockerd: 'docker.io', docker: 'docker.io', ip: 'iproute2' }).filter(([command]) => !onPath(command));
  if (missing.length > 0) return `needs ${missing.map(([command, pkg]) => `${command} (${pkg})`).join(', ')} on PATH`;
  return undefined;
}

/** True when this process may run a private dockerd: root, dockerd and docker, and `ip`. */
export function canRunPrivateEngine(): boolean {
  return privateEngineUnavailable() === undefined;
}

function run(command: string, args: string[], timeout = 15_000): string {
  return execFileSync(command, args, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryRun(command: string, args: string[]): string | undefined {
  try {
    return run(command, args);
  } catch {
    return undefined;
  }
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

/** Every IPv4 prefix in the host's routes and addresses (gateways and sources count as /32). */
function hostPrefixes(): Array<{ base: number; bits: number }> {
  const text = `${run('ip', ['-4', '-o', 'route', 'show', 'table', 'all'])}\n${run('ip', ['-4', '-o', 'addr', 'show'])}`;
  const prefixes: Array<{ base: number; bits: number }> = [];
  for (const m of text.matchAll(/\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?:\/(\d{1,2}))?\b/g)) {
    const bits = m[2] === undefined ? 32 : Number(m[2]);
    // The default route (0.0.0.0/0) overlaps everything and says nothing about local networks.
    if (bits === 0) continue;
    prefixes.push({ base: ipToInt(m[1] ?? ''), bits });
  }
  return prefixes;
}

function overlaps(a: { base: number; bits: number }, b: { base: number; bits: number }): boolean {
  const bits = Math.min(a.bits, b.bits);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

/** A 10.N.0.0/16 that no route or address of this host touches (10.64–10.254: clear of the usual 10.0.x). */
function pickRange(): number {
  const taken = hostPrefixes();
  for (let attempt = 0; attempt < 200; attempt++) {
    const n = 64 + Math.floor(Math.random() * 191);
    const candidate = { base: ipToInt(`10.${n}.0.0`), bits: 16 };
    if (!taken.some((p) => overlaps(p, candidate))) return n;
  }
  throw new Error('no free 10.x.0.0/16 on this host for a private engine');
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of processes whose command line names `dir`: this engine's dockerd, containerd and shims. */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(`${dir}/`)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

/** Pipes `docker save` on the host engine into `docker load` on the private one. */
async function loadImage(image: string, url: string): Promise<void> {
  const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
  const load = spawn('docker', ['-H', url, 'load', '--quiet'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let errors = '';
  const capture = (chunk: Buffer): void => {
    errors = (errors + chunk.toString()).slice(-4000);
  };
  save.stderr.on('data', capture);
  load.stderr.on('data', capture);
  load.stdout.resume();
  // A failing load closes its stdin: ignore the resulting EPIPE, the exit codes tell.
  load.stdin.on('error', () => undefined);
  save.stdout.pipe(load.stdin);
  const [[saveCode], [loadCode]] = (await Promise.all([once(save, 'close'), once(load, 'close')])) as [[number | null], [number | null]];
  if (saveCode !== 0 || loadCode !== 0) {
    throw new Error(`loading ${image} into the private engine failed (docker save exited ${saveCode}, docker load exited ${loadCode}): ${errors.trim()}`);
  }
}

class Engine implements PrivateEngine {
  readonly url: string;
  readonly docker: Docker;
  readonly logFile: string;
  readonly bridge: string;
  readonly range: string;
  timings = { startMs: 0, loadImagesMs: 0 };

  private readonly socket: string;
  private readonly pidFile: string;
  /** Its own cgroup parent, on cgroup v1 only (see the top of this file). */
  private readonly cgroupName: string | undefined;
  private readonly args: string[];
  private readonly ping: Docker;
  /** For the clean-up calls of stop(), which must not hang on a stuck daemon. */
  private readonly admin: Docker;
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> = Promise.resolve();
  private bridgeCreated = false;
  private nextSubnet = 1;
  private stopping: Promise<void> | undefined;
  private readonly onProcessExit = (): void => {
    // Last resort when the test process ends without stop(): at least end the daemon (synchronously).
    const pid = this.pid;
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
  };

  constructor(
    readonly dir: string,
    private readonly n: number,
  ) {
    const name = dir.split('/').pop() ?? 'fe-engine';
    this.socket = join(dir, 'd.sock');
    this.url = `unix://${this.socket}`;
    this.pidFile = join(dir, 'd.pid');
    this.logFile = join(dir, 'dockerd.log');
    // Interface names: at most 15 characters. "fmt" and the dir's random suffix: 9.
    this.bridge = `fmt${name
      .replace(/^fe-/, '')
      .replace(/[^a-zA-Z0-9]/g, '0')
      .slice(0, 12)}`;
    this.cgroupName = existsSync('/sys/fs/cgroup/cgroup.controllers') ? undefined : name;
    this.range = `10.${n}.0.0/16`;
    this.docker = new Docker({ socketPath: this.socket });
    this.ping = new Docker({ socketPath: this.socket, timeout: 3000 });
    this.admin = new Docker({ socketPath: this.socket, timeout: 30_000 });
    const configFile = join(dir, 'daemon.json');
    // Its own config file: the host's /etc/docker/daemon.json stays unread, key.json is kept here.
    writeFileSync(configFile, `${JSON.stringify({ 'deprecated-key-path': join(dir, 'key.json') }, null, 2)}\n`);
    this.args = [
      `--config-file=${configFile}`,
      `--host=${this.url}`,
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${this.pidFile}`,
      `--bridge=${this.bridge}`,
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      ...(this.cgroupName ? [`--cgroup-parent=/${this.cgroupName}`] : []),
    ];
  }

  get pid(): number | undefined {
    const child = this.child;
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** Makes the bridge interface its default network uses, with an address of the engine's range. */
  makeBridge(): void {
    run('ip', ['link', 'add', 'name', this.bridge, 'type', 'bridge']);
    this.bridgeCreated = true;
    run('ip', ['addr', 'add', `10.${this.n}.0.1/24`, 'dev', this.bridge]);
    run('ip', ['link', 'set', this.bridge, 'up']);
  }

  lastLogLines(count = 25): string {
    try {
      return readFileSync(this.logFile, 'utf8')
        .split('\n')
        .filter((l) => l && !l.includes('module=grpc'))
        .slice(-count)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Starts dockerd and waits until it answers. */
  async launch(): Promise<void> {
    const log = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('dockerd', this.args, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    this.child = child;
    this.exited = once(child, 'exit').catch(() => undefined);
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    process.once('exit', this.onProcessExit);
    const answers = await until(
      async () => {
        if (spawnError || child.exitCode !== null || child.signalCode !== null) return true;
        try {
          await this.ping.ping();
          return true;
        } catch {
          return false;
        }
      },
      START_TIMEOUT_MS,
      100,
    );
    const gone = spawnError ?? (child.exitCode !== null || child.signalCode !== null ? `exited with ${child.exitCode ?? child.signalCode}` : undefined);
    if (!answers || gone) {
      const why = gone ? `dockerd ${String(gone)}` : `dockerd did not answer within ${START_TIMEOUT_MS / 1000} s`;
      throw new Error(`private engine at ${this.url}: ${why}; last lines of ${this.logFile}:\n${this.lastLogLines()}`);
    }
  }

  /** SIGTERMs dockerd by its pid and waits for it and its containerd to exit. */
  async terminate(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) {
      rmSync(this.pidFile, { force: true });
      return;
    }
    const fromFile = existsSync(this.pidFile) ? Number(readFileSync(this.pidFile, 'utf8').trim()) : pid;
    if (fromFile !== pid) throw new Error(`pid file ${this.pidFile} names ${fromFile}, but this engine's dockerd is ${pid}`);
    const containerdPidFile = join(this.dir, 'exec', 'containerd', 'containerd.pid');
    const containerd = existsSync(containerdPidFile) ? Number(readFileSync(containerdPidFile, 'utf8').trim()) : undefined;
    process.kill(pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((r) => {
        timer = setTimeout(() => r(false), EXIT_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!exited) {
      process.kill(pid, 'SIGKILL');
      await this.exited;
    }
    process.removeListener('exit', this.onProcessExit);
    // dockerd stops the containerd it started; make sure it is gone before a new one starts on the same root.
    if (containerd && !(await until(() => !processAlive(containerd), 15_000))) {
      if (processesUsing(this.dir).includes(containerd)) process.kill(containerd, 'SIGKILL');
    }
    // A dockerd that is gone may leave its pid file, and a new one refuses to start then.
    rmSync(this.pidFile, { force: true });
  }

  async createNetwork(name: string, labels: Record<string, string> = {}): Promise<{ subnet: string; gateway: string }> {
    const third = this.nextSubnet++;
    if (third > 254) throw new Error('the private engine ran out of subnets');
    const subnet = `10.${this.n}.${third}.0/24`;
    const gateway = `10.${this.n}.${third}.1`;
    await this.docker.createNetwork({
      Name: name,
      Driver: 'bridge',
      CheckDuplicate: true,
      Labels: labels,
      IPAM: { Driver: 'default', Config: [{ Subnet: subnet, Gateway: gateway }] },
    });
    return { subnet, gateway };
  }

  async restart(): Promise<{ downMs: number }> {
    const stoppedAt = Date.now();
    await this.terminate();
    await this.launch();
    return { downMs: Date.now() - stoppedAt };
  }

  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    const problems: string[] = [];
    const note = (what: string, err: unknown): void => {
      problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    };
    // 1. Its containers and networks, through its API while it runs (dockerd leaves network bridges behind on exit).
    const bridges = new Set<string>();
    if (this.pid !== undefined) {
      try {
        for (const c of await this.admin.listContainers({ all: true })) {
          await this.admin
            .getContainer(c.Id)
            .remove({ force: true })
            .catch((err: unknown) => note(`removing container ${c.Id.slice(0, 12)}`, err));
        }
        for (const net of await this.admin.listNetworks()) {
          if (['bridge', 'host', 'none'].includes(net.Name)) continue;
          bridges.add(net.Options?.['com.docker.network.bridge.name'] ?? `br-${net.Id.slice(0, 12)}`);
          await this.admin
            .getNetwork(net.Id)
            .remove()
            .catch((err: unknown) => note(`removing network ${net.Name}`, err));
        }
      } catch (err) {
        note('listing its containers and networks', err);
      }
    }
    // 2. The daemon, by its pid; then any process of its own still running (containerd, shims), by pid.
    try {
      await this.terminate();
    } catch (err) {
      note('stopping dockerd', err);
    }
    const leftovers = processesUsing(this.dir);
    if (leftovers.length > 0) {
      problems.push(`processes left running, killed: ${leftovers.join(', ')}`);
      for (const pid of leftovers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
      await until(() => leftovers.every((pid) => !processAlive(pid)), 10_000);
    }
    // 3. Interfaces: its bridge, its networks' bridges, and any other with an address of its range.
    const range = { base: ipToInt(`10.${this.n}.0.0`), bits: 16 };
    for (const line of (tryRun('ip', ['-4', '-o', 'addr', 'show']) ?? '').split('\n')) {
      const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(line);
      if (m?.[1] && m[2] && overlaps({ base: ipToInt(m[2]), bits: 32 }, range)) bridges.add(m[1]);
    }
    if (this.bridgeCreated) bridges.add(this.bridge);
    for (const name of bridges) {
      if (tryRun('ip', ['link', 'show', 'dev', name]) === undefined) continue;
      try {
        run('ip', ['link', 'delete', name]);
      } catch (err) {
        note(`deleting interface ${name}`, err);
      }
    }
    // 4. Mounts it left under its directory (overlay, netns, its data root's bind mount), deepest first.
    for (const mountPoint of mountsUnder(this.dir)) {
      if (tryRun('umount', [mountPoint]) === undefined && tryRun('umount', ['-l', mountPoint]) === undefined) {
        problems.push(`could not unmount ${mountPoint}`);
      }
    }
    // 5. Its cgroups (v1): empty directories once its containers are gone (rmdir only, children first).
    const cgroupName = this.cgroupName;
    if (cgroupName && /^fe-\w+$/.test(cgroupName)) for (const root of cgroupV1Roots()) removeCgroup(join(root, cgroupName), note);
    // 6. Its directory, unless something is still mounted in it (then rm could reach into that).
    const stillMounted = mountsUnder(this.dir);
    if (stillMounted.length === 0) rmSync(this.dir, { recursive: true, force: true });
    else problems.push(`kept ${this.dir}: still mounted ${stillMounted.join(', ')}`);
    if (problems.length > 0) throw new Error(`private engine ${this.url} did not stop cleanly:\n  ${problems.join('\n  ')}`);
  }
}

/** The cgroup v1 hierarchies: each controller's root (and a hybrid host's "unified" one). */
function cgroupV1Roots(): string[] {
  const base = '/sys/fs/cgroup';
  const roots: string[] = [];
  try {
    for (const entry of readdirSync(base)) {
      if (existsSync(join(base, entry, 'cgroup.procs'))) roots.push(join(base, entry));
    }
  } catch {
    // no cgroup fs
  }
  return roots;
}

function removeCgroup(path: string, note: (what: string, err: unknown) => void): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(path, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) if (entry.isDirectory()) removeCgroup(join(path, entry.name), note);
  try {
    rmdirSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') note(`removing cgroup ${path}`, err);
  }
}

/**
 * Starts a private dockerd (see the top of this file), loads `loadImages` into it from the host engine
 * and returns it running. Call `stop()` in a `finally`.
 */
export async function startPrivateEngine(options: { loadImages?: string[] } = {}): Promise<PrivateEngine> {
  const unavailable = privateEngineUnavailable();
  if (unavailable) throw new Error(`cannot run a private engine: ${unavailable}`);
  // Short paths: containerd's socket under the exec root must stay within the ~100-character socket path limit.
  const dir = mkdtempSync('/tmp/fe-');
  let engine: Engine | undefined;
  try {
    engine = new Engine(dir, pickRange());
    const startedAt = Date.now();
    engine.makeBridge();
    await engine.launch();
    const loadingAt = Date.now();
    for (const image of options.loadImages ?? []) await loadImage(image, engine.url);
    engine.timings = { startMs: loadingAt - startedAt, loadImagesMs: Date.now() - loadingAt };
    return engine;
  } catch (err) {
    if (engine) {
      await engine.stop().catch((stopErr: unknown) => {
        (err as Error).message += `\n(and cleaning up: ${stopErr instanceof Error ? stopErr.message : String(stopErr)})`;
      });
    } else {
      rmSync(dir, { recursive: true, force: true });
    }
    throw err;
  }
}
