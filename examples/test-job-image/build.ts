// Builds the test job image without a registry: a `FROM scratch` image holding the host's node binary,
// the shared libraries it links against (at the same absolute paths, loader included) and job.mjs.
//
//   node --import tsx examples/test-job-image/build.ts [--tag T]     (or: npm run build:test-image)
//
// The image is labelled with a hash of its inputs, so a second run with unchanged inputs skips the build.
// The node-and-libraries part is shared with the agent image: scripts/scratch-image.ts.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NODE_IN_IMAGE, baseInputs, buildScratchImage, hashParts, parseTagArg, placeFile } from '../../scripts/scratch-image.ts';

export const DEFAULT_TEST_JOB_IMAGE_TAG = 'foreman-test-job:latest';
const HASH_LABEL = 'dev.foreman.test-job.inputs-hash';
// Bump when the image layout below changes, so old images with the same inputs get rebuilt.
const RECIPE_VERSION = '4';
const JOB_IN_IMAGE = '/job.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const jobScriptPath = join(here, 'job.mjs');

export interface BuildTestJobImageOptions {
  tag?: string;
  /** Suppress `docker build` output (it goes to stderr otherwise). Default true. */
  quiet?: boolean;
}

export async function buildTestJobImage(opts: BuildTestJobImageOptions = {}): Promise<string> {
  const tag = opts.tag ?? DEFAULT_TEST_JOB_IMAGE_TAG;
  const jobScript = await readFile(jobScriptPath);
  await buildScratchImage({
    tags: [tag],
    hashLabel: HASH_LABEL,
    inputsHash: hashParts([RECIPE_VERSION, await baseInputs(), jobScript]),
    contextPrefix: 'foreman-test-job-',
    populate: (rootfs) => placeFile(jobScriptPath, join(rootfs, JOB_IN_IMAGE)),
    // A CMD, not an ENTRYPOINT, so a job's `command` replaces it.
    instructions: [`CMD ${JSON.stringify([NODE_IN_IMAGE, JOB_IN_IMAGE])}`],
    quiet: opts.quiet ?? true,
  });
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
