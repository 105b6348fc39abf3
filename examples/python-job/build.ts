// Builds the Python kit's job image without a registry: a `FROM scratch` image holding the host's python3 (the
// interpreter `python3` on PATH runs, at its own path), the libraries ldd lists for it and for the standard library's
// extension modules, the standard library itself (less its tests, IDLE, Tk and the like), job.py and foreman_job.py
// (packages/job-python) beside it. A real job image would start `FROM python:3.12-slim` and `pip install foreman-job`.
//
//   node --import tsx examples/python-job/build.ts [--tag T]     (default foreman-python-job:latest)
//
// The image is labelled with a hash of its inputs, so a second run with unchanged inputs skips the build.

import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { binaryInputs, buildScratchImage, hashParts, parseTagArg, placeBinary, placeFile } from '../../scripts/scratch-image.ts';

const execFileAsync = promisify(execFile);

export const PYTHON_JOB_IMAGE_TAG = 'foreman-python-job:latest';
const HASH_LABEL = 'dev.foreman.python-job.inputs-hash';
const RECIPE_VERSION = '1';
/** Parts of the standard library a job never needs. */
const LEFT_OUT = new Set(['test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3', 'site-packages', 'dist-packages', '__pycache__', 'pydoc_data']);

const here = dirname(fileURLToPath(import.meta.url));
const FILES: ReadonlyArray<readonly [string, string]> = [
  [join(here, 'job.py'), '/app/job.py'],
  [join(here, '../../packages/job-python/foreman_job.py'), '/app/foreman_job.py'],
];

/** The interpreter `python3` runs and where its standard library is, as it says itself. */
export async function hostPython(): Promise<{ executable: string; stdlib: string; version: string }> {
  const script =
    'import sys, sysconfig, os; print(os.path.realpath(sys.executable)); print(sysconfig.get_paths()["stdlib"]); print("%d.%d" % sys.version_info[:2])';
  const { stdout } = await execFileAsync('python3', ['-c', script]);
  const [executable, stdlib, version] = stdout.trim().split('\n');
  if (!executable || !stdlib || !version) throw new Error(`python3 did not say where it lives: ${stdout}`);
  return { executable, stdlib, version };
}

/** Every file of the standard library to copy, less LEFT_OUT and compiled files. */
async function stdlibFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (LEFT_OUT.has(entry.name) || entry.name.startsWith('config-')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await stdlibFiles(path)));
    else if (entry.isFile() && !entry.name.endsWith('.pyc')) files.push(path);
  }
  return files;
}

export async function buildPythonJobImage(opts: { tag?: string; quiet?: boolean } = {}): Promise<string> {
  const tag = opts.tag ?? PYTHON_JOB_IMAGE_TAG;
  const python = await hostPython();
  const parts: Array<string | Buffer> = [RECIPE_VERSION, JSON.stringify(python), await binaryInputs(python.executable)];
  for (const [source, target] of FILES) parts.push(target, await readFile(source));
  await buildScratchImage({
    tags: [tag],
    hashLabel: HASH_LABEL,
    inputsHash: hashParts(parts),
    node: false,
    contextPrefix: 'foreman-python-job-',
    async populate(rootfs) {
      await placeBinary(rootfs, python.executable);
      for (const file of await stdlibFiles(python.stdlib)) {
        // Extension modules (lib-dynload) bring the libraries they link against.
        if (file.endsWith('.so')) await placeBinary(rootfs, file);
        else await placeFile(file, join(rootfs, file));
      }
      for (const [source, target] of FILES) await placeFile(source, join(rootfs, target));
    },
    instructions: [
      'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1',
      'WORKDIR /app',
      // A CMD, so a job's `command` replaces it.
      `CMD ${JSON.stringify([python.executable, '/app/job.py'])}`,
    ],
    quiet: opts.quiet ?? true,
  });
  return tag;
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    process.stdout.write(`${await buildPythonJobImage({ tag: parseTagArg(process.argv.slice(2)), quiet: false })}\n`);
  } catch (err) {
    process.stderr.write(`python-job: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
