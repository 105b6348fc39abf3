// Builds the test job image without a registry: a `FROM scratch` image holding the host's node binary,
// the shared libraries it links against (at the same absolute paths, loader included) and job.mjs.
//
//   node --import tsx examples/test-job-image/build.ts [--tag T]     (or: npm run build:test-image)
//
// The image is labelled with a hash of its inputs, so a second run with unchanged inputs skips the build.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const DEFAULT_TEST_JOB_IMAGE_TAG = 'foreman-test-job:latest';
const HASH_LABEL = 'dev.foreman.test-job.inputs-hash';
// Bump when the image layout below changes, so old images with the same inputs get rebuilt.
const RECIPE_VERSION = '3';
const NODE_IN_IMAGE = '/usr/local/bin/node';
const JOB_IN_IMAGE = '/job.mjs';
const DOCKER = process.env.DOCKER_CLI ?? 'docker';

const here = dirname(fileURLToPath(import.meta.url));
const jobScriptPath = join(here, 'job.mjs');

export interface BuildTestJobImageOptions {
  tag?: string;
  /** Suppress `docker build` output (it goes to stderr otherwise). Default true. */
  quiet?: boolean;
}

export async function buildTestJobImage(opts: BuildTestJobImageOptions = {}): Promise<string> {
  const tag = opts.tag ?? DEFAULT_TEST_JOB_IMAGE_TAG;
  const quiet = opts.quiet ?? true;
  const nodePath = await realpath(process.execPath);
  const jobScript = await readFile(jobScriptPath);
  const inputsHash = await hashInputs(nodePath, jobScript);

  const existing = await inspectImage(tag);
  if (existing?.labels[HASH_LABEL] === inputsHash) return tag;

  const context = await mkdtemp(join(tmpdir(), 'foreman-test-job-'));
  try {
    const rootfs = join(context, 'rootfs');
    await placeFile(nodePath, join(rootfs, NODE_IN_IMAGE));
    for (const lib of await sharedLibraries(nodePath)) {
      await placeFile(await realpath(lib), join(rootfs, lib));
    }
    await placeFile(jobScriptPath, join(rootfs, JOB_IN_IMAGE));
    // glibc resolves names from /etc/hosts (docker writes it, e.g. host.docker.internal) then DNS.
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await writeFile(join(rootfs, 'etc', 'nsswitch.conf'), 'hosts: files dns\n');
    await mkdir(join(rootfs, 'tmp'), { recursive: true });
    await chmod(join(rootfs, 'tmp'), 0o1777);

    const dockerfile = [
      'FROM scratch',
      'COPY rootfs/ /',
      `CMD ${JSON.stringify([NODE_IN_IMAGE, JOB_IN_IMAGE])}`,
      '',
    ].join('\n');
    await writeFile(join(context, 'Dockerfile'), dockerfile);

    await runDocker(['build', '--label', `${HASH_LABEL}=${inputsHash}`, '--tag', tag, context], quiet);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  // The retagged old image would linger as <none>; removing it fails harmlessly while a container still uses it.
  if (existing && existing.id !== (await inspectImage(tag))?.id) {
    await execFileAsync(DOCKER, ['image', 'rm', existing.id]).catch(() => undefined);
  }
  return tag;
}

async function hashInputs(nodePath: string, jobScript: Buffer): Promise<string> {
  const nodeStat = await stat(nodePath);
  return createHash('sha256')
    .update(JSON.stringify({ recipe: RECIPE_VERSION, nodePath, size: nodeStat.size, mtimeMs: nodeStat.mtimeMs }))
    .update(jobScript)
    .digest('hex');
}

/** The image's id and labels, or undefined when no image has that tag. */
async function inspectImage(tag: string): Promise<{ id: string; labels: Record<string, string> } | undefined> {
  try {
    const { stdout } = await execFileAsync(DOCKER, ['image', 'inspect', '--format', '{{json .}}', tag]);
    const image = JSON.parse(stdout) as { Id: string; Config?: { Labels?: Record<string, string> | null } };
    return { id: image.Id, labels: image.Config?.Labels ?? {} };
  } catch {
    return undefined;
  }
}

/** Absolute paths of the libraries `ldd` lists for a binary (vdso has no path and is skipped). */
async function sharedLibraries(binary: string): Promise<string[]> {
  let output: string;
  try {
    output = (await execFileAsync('ldd', [binary])).stdout;
  } catch (err) {
    const stdout = (err as { stdout?: string }).stdout ?? '';
    if (stdout.includes('not a dynamic executable')) return [];
    throw new Error(`ldd ${binary} failed: ${(err as Error).message}`, { cause: err });
  }
  const libs: string[] = [];
  for (const line of output.split('\n')) {
    if (line.includes('not found')) throw new Error(`ldd ${binary}: missing library: ${line.trim()}`);
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (match?.[1]) libs.push(match[1]);
  }
  return libs;
}

/** Puts a file into the build context; a hard link avoids copying ~100 MB when /tmp is on the same filesystem. */
async function placeFile(source: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  try {
    await link(source, target);
  } catch {
    await copyFile(source, target);
  }
}

function runDocker(args: string[], quiet: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER, args, { stdio: ['ignore', quiet ? 'pipe' : process.stderr, quiet ? 'pipe' : process.stderr] });
    let captured = '';
    const capture = (chunk: Buffer): void => {
      captured = (captured + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', capture);
    child.stderr?.on('data', capture);
    child.on('error', (err) => reject(new Error(`could not run ${DOCKER}: ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${DOCKER} ${args[0] ?? ''} exited with ${code ?? 'a signal'}${captured ? `:\n${captured}` : ''}`));
    });
  });
}

function parseTagArg(argv: string[]): string | undefined {
  const index = argv.indexOf('--tag');
  if (index === -1) return undefined;
  const tag = argv[index + 1];
  if (!tag) throw new Error('--tag needs a value');
  return tag;
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    const started = performance.now();
    const tag = await buildTestJobImage({ tag: parseTagArg(process.argv.slice(2)), quiet: false });
    process.stderr.write(`test job image ready in ${Math.round(performance.now() - started)} ms\n`);
    process.stdout.write(`${tag}\n`);
  } catch (err) {
    process.stderr.write(`build:test-image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
