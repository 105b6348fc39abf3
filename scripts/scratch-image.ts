// Builds `FROM scratch` images without a registry: a node binary (the host's, or the one a caller names) and the
// shared libraries `ldd` lists for it (at the same absolute paths, loader included), plus whatever the caller puts beside them.
// Used by the test job image (examples/test-job-image/build.ts) and the agent image (scripts/build-image.ts).
//
// Each image carries a label with a hash of its inputs; when the tag already holds an image with that hash
// the build is skipped, so an unchanged rebuild is cheap.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, link, mkdir, mkdtemp, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const DOCKER = process.env.DOCKER_CLI ?? 'docker';
export const NODE_IN_IMAGE = '/usr/local/bin/node';
// Bump when the base layout below changes, so images with the same inputs get rebuilt.
const BASE_RECIPE_VERSION = '1';

export interface ScratchImageSpec {
  /** The first tag is checked for an up-to-date image; the others are pointed at the same image. */
  readonly tags: readonly string[];
  /** Label holding the inputs hash. */
  readonly hashLabel: string;
  /** Hash of everything `populate` puts into the image (see `baseInputs` for node's part). */
  readonly inputsHash: string;
  /** More labels, e.g. the version. */
  readonly labels?: Readonly<Record<string, string>>;
  /** The node binary to put at NODE_IN_IMAGE, or false for none. Default: the one running this script. */
  readonly node?: string | false;
  /** Prefix of the temporary build context's directory name. */
  readonly contextPrefix: string;
  /** Puts the caller's files into the rootfs, which already holds node, its libraries, /etc and /tmp. */
  populate(rootfs: string): Promise<void>;
  /** Dockerfile instructions after `FROM scratch` and `COPY rootfs/ /` (CMD, ENV, ...). */
  readonly instructions: readonly string[];
  /** Suppress `docker build` output (it goes to stderr otherwise). Default true. */
  readonly quiet?: boolean;
}

/** What identifies node and the base layout, for the caller's inputs hash; avoids reading ~100 MB on every run. */
export async function baseInputs(node: string = process.execPath): Promise<string> {
  const nodePath = await realpath(node);
  const nodeStat = await stat(nodePath);
  return JSON.stringify({ base: BASE_RECIPE_VERSION, nodePath, size: nodeStat.size, mtimeMs: nodeStat.mtimeMs });
}

/** What identifies a host binary for an inputs hash (its real path, size and mtime), without reading it. */
export async function binaryInputs(binary: string): Promise<string> {
  const path = await realpath(binary);
  const { size, mtimeMs } = await stat(path);
  return JSON.stringify({ path, size, mtimeMs });
}

/** sha256 over the parts, each length-prefixed so that moving bytes between parts changes the hash. */
export function hashParts(parts: ReadonlyArray<string | Buffer>): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(`${Buffer.byteLength(part)}:`).update(part);
  return hash.digest('hex');
}

/** Builds the image unless the first tag already holds one with this inputs hash. Returns whether it built. */
export async function buildScratchImage(spec: ScratchImageSpec): Promise<{ built: boolean; id: string }> {
  const [primary] = spec.tags;
  if (!primary) throw new Error('buildScratchImage needs at least one tag');
  // The Dockerfile and labels count as inputs too: changing an ENV or a CMD rebuilds.
  const inputsHash = hashParts([spec.inputsHash, JSON.stringify(spec.instructions), JSON.stringify(spec.labels ?? {})]);
  const previous = await Promise.all(spec.tags.map((tag) => inspectImage(tag)));
  const existing = previous[0];
  if (existing?.labels[spec.hashLabel] === inputsHash) {
    for (const [i, tag] of spec.tags.entries()) {
      if (previous[i]?.id !== existing.id) await execFileAsync(DOCKER, ['tag', existing.id, tag]);
    }
    return { built: false, id: existing.id };
  }

  const context = await mkdtemp(join(tmpdir(), spec.contextPrefix));
  try {
    const rootfs = join(context, 'rootfs');
    await placeBase(rootfs, spec.node ?? process.execPath);
    await spec.populate(rootfs);
    // One LABEL line: `docker build --label` adds a build step (an intermediate container) per label.
    const labels = Object.entries({ ...spec.labels, [spec.hashLabel]: inputsHash }).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    const dockerfile = ['FROM scratch', 'COPY rootfs/ /', ...spec.instructions, `LABEL ${labels.join(' ')}`, ''].join('\n');
    await writeFile(join(context, 'Dockerfile'), dockerfile);
    const args = ['build'];
    for (const tag of spec.tags) args.push('--tag', tag);
    await runDocker([...args, context], spec.quiet ?? true);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  const id = (await inspectImage(primary))?.id ?? '';
  // A retagged old image would linger as <none>; removing it fails harmlessly while a container or another tag uses it.
  for (const old of new Set(previous.map((image) => image?.id))) {
    if (old && old !== id) await execFileAsync(DOCKER, ['image', 'rm', old]).catch(() => undefined);
  }
  return { built: true, id };
}

/** node at NODE_IN_IMAGE (unless `node` is false), its libraries, name resolution through /etc/hosts, and a writable /tmp. */
async function placeBase(rootfs: string, node: string | false): Promise<void> {
  if (node !== false) await placeBinary(rootfs, node, NODE_IN_IMAGE);

  // glibc resolves names from /etc/hosts (docker writes it, e.g. host.docker.internal) then DNS.
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await writeFile(join(rootfs, 'etc', 'nsswitch.conf'), 'hosts: files dns\n');
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
}

/** The image's id and labels, or undefined when no image has that tag. */
export async function inspectImage(tag: string): Promise<{ id: string; labels: Record<string, string> } | undefined> {
  try {
    const { stdout } = await execFileAsync(DOCKER, ['image', 'inspect', '--format', '{{json .}}', tag]);
    const image = JSON.parse(stdout) as { Id: string; Config?: { Labels?: Record<string, string> | null } };
    return { id: image.Id, labels: image.Config?.Labels ?? {} };
  } catch {
    return undefined;
  }
}

/** A host binary at `target` in the image (its own path by default), with every library `ldd` lists for it at the same path. */
export async function placeBinary(rootfs: string, binary: string, target: string = binary): Promise<void> {
  const path = await realpath(binary);
  await placeFile(path, join(rootfs, target));
  for (const lib of await sharedLibraries(path)) {
    const into = join(rootfs, lib);
    // Two binaries may share a library: place it once.
    if (!(await stat(into).catch(() => undefined))) await placeFile(await realpath(lib), into);
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

/**
 * Puts a file into the build context. A hard link avoids copying ~100 MB when /tmp is on the same
 * filesystem, so never chmod a placed file: that would change the original too.
 */
export async function placeFile(source: string, target: string): Promise<void> {
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

/** The value after `--tag` in argv, if any. */
export function parseTagArg(argv: string[]): string | undefined {
  const index = argv.indexOf('--tag');
  if (index === -1) return undefined;
  const tag = argv[index + 1];
  if (!tag) throw new Error('--tag needs a value');
  return tag;
}
