// Builds an image of the reference control server, `foreman-control-server:<version>` and `:latest`, without a
// registry: FROM the agent's own image (scripts/build-image.ts, built first when missing or stale), which already
// carries `foreman server`; this image only makes it the command, with its settings for a container (listen on every
// address, the database on the volume) and no agent healthcheck. For examples/compose/.
//
//   node --import tsx scripts/build-control-server-image.ts      (or: npm run build:control-server-image)

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildAgentImage } from './build-image.ts';
import { DOCKER, NODE_IN_IMAGE } from './scratch-image.ts';
import { spawn } from 'node:child_process';

/** The image declares this volume (from the agent's image); the control server keeps its database in it. */
export const CONTROL_SERVER_DATA = '/var/lib/foreman';

/** Builds the image (docker's layer cache makes an unchanged rebuild quick) and returns its first tag. */
export async function buildControlServerImage(opts: { quiet?: boolean } = {}): Promise<{ tag: string; agentTag: string }> {
  const { tag: agentTag } = await buildAgentImage({ quiet: opts.quiet ?? true });
  const version = agentTag.slice(agentTag.lastIndexOf(':') + 1);
  const tags = [`foreman-control-server:${version}`, 'foreman-control-server:latest'];
  const context = await mkdtemp(join(tmpdir(), 'foreman-control-server-image-'));
  try {
    const dockerfile = [
      `FROM ${agentTag}`,
      'ENV FOREMAN_SERVER_HOST=0.0.0.0 FOREMAN_SERVER_PORT=8888',
      `ENV FOREMAN_SERVER_DATABASE=${CONTROL_SERVER_DATA}/control-server.db`,
      `ENTRYPOINT ${JSON.stringify([NODE_IN_IMAGE, '/app/bin/foreman.js', 'server'])}`,
      'CMD []',
      // The agent's `foreman ping` means nothing here; GET /healthz says whether the server and its database answer.
      `HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ${JSON.stringify([
        NODE_IN_IMAGE,
        '-e',
        "fetch('http://127.0.0.1:8888/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))",
      ])}`,
      `LABEL org.opencontainers.image.title="foreman reference control server" org.opencontainers.image.version=${JSON.stringify(version)}`,
      '',
    ].join('\n');
    await writeFile(join(context, 'Dockerfile'), dockerfile);
    await run([DOCKER, 'build', ...tags.flatMap((t) => ['--tag', t]), context], opts.quiet ?? true);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return { tag: tags[0] ?? '', agentTag };
}

function run([command = '', ...args]: string[], quiet: boolean): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ['ignore', quiet ? 'pipe' : process.stderr, quiet ? 'pipe' : process.stderr] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8000)));
    child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8000)));
    child.on('error', (err) => fail(new Error(`could not run ${command}: ${err.message}`)));
    child.on('close', (code) => (code === 0 ? done() : fail(new Error(`${command} ${args[0] ?? ''} exited with ${code ?? 'a signal'}:\n${output}`))));
  });
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    const started = performance.now();
    const { tag } = await buildControlServerImage({ quiet: false });
    process.stderr.write(`control server image built in ${Math.round(performance.now() - started)} ms\n`);
    process.stdout.write(`${tag}\n`);
  } catch (err) {
    process.stderr.write(`build:control-server-image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
