/** A private registry of the test's own, for pulls the engine must really make. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docker } from './containers.ts';
import { freePort } from './ports.ts';
import { waitFor } from './wait.ts';

/** A registry process of our own (Debian's docker-registry, distribution 2.8): storage in a temp dir, htpasswd auth when given, its log kept in memory. */
export class Registry {
  log = '';
  port = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> = Promise.resolve();
  readonly dir = mkdtempSync(join(tmpdir(), 'foreman-registry-'));
  private readonly auth: { readonly user: string; readonly password: string } | undefined;

  constructor(auth?: { readonly user: string; readonly password: string }) {
    this.auth = auth;
  }

  async start(): Promise<this> {
    if (this.auth) writeFileSync(join(this.dir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', this.auth.user, this.auth.password], { encoding: 'utf8' }));
    this.port = await freePort();
    const config = join(this.dir, 'config.yml');
    // Debug level: only then does the registry log the user a manifest is served to.
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: debug',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(this.dir, 'storage')}`,
        'http:',
        `  addr: 127.0.0.1:${this.port}`,
        ...(this.auth ? ['auth:', '  htpasswd:', '    realm: foreman-test', `    path: ${join(this.dir, 'htpasswd')}`] : []),
        '',
      ].join('\n'),
    );
    const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (this.log += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (this.log += chunk));
    const answer = async (): Promise<number> => (await fetch(`http://127.0.0.1:${this.port}/v2/`)).status;
    const ready = this.auth ? 401 : 200;
    await waitFor(`the registry to answer /v2/ with ${ready}`, async () => (await answer().catch(() => 0)) === ready, 20_000, 100);
    return this;
  }

  /** Ends the registry by its pid and removes its storage. */
  async stop(): Promise<void> {
    if (this.child?.pid !== undefined && this.child.exitCode === null) process.kill(this.child.pid, 'SIGTERM');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Follows a push or pull progress stream to its end, failing on an error in it. */
export async function follow(stream: NodeJS.ReadableStream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: Array<{ error?: string }>) => {
      const failed = output?.find((o) => o.error)?.error;
      if (err || failed) reject(err ?? new Error(failed));
      else resolve();
    });
  });
}
