// Builds the JavaScript kit's job image without a registry: a `FROM scratch` image holding the host's node, the
// libraries it links against, job.mjs and the foreman-job package (packages/job) installed beside it in
// node_modules, as `npm install foreman-job` would. A real job image would start `FROM node:24-slim`.
//
//   node --import tsx examples/node-job/build.ts [--tag T]     (default foreman-node-job:latest)
//
// The image is labelled with a hash of its inputs, so a second run with unchanged inputs skips the build.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NODE_IN_IMAGE, baseInputs, buildScratchImage, hashParts, parseTagArg, placeFile } from '../../scripts/scratch-image.ts';

export const NODE_JOB_IMAGE_TAG = 'foreman-node-job:latest';
const HASH_LABEL = 'dev.foreman.node-job.inputs-hash';
const RECIPE_VERSION = '1';

const here = dirname(fileURLToPath(import.meta.url));
const kit = join(here, '../../packages/job');
/** Each file and where it goes in the image. */
const FILES: ReadonlyArray<readonly [string, string]> = [
  [join(here, 'job.mjs'), '/app/job.mjs'],
  ...['package.json', 'index.js', 'index.d.ts'].map((name) => [join(kit, name), `/app/node_modules/foreman-job/${name}`] as const),
];

export async function buildNodeJobImage(opts: { tag?: string; quiet?: boolean } = {}): Promise<string> {
  const tag = opts.tag ?? NODE_JOB_IMAGE_TAG;
  const parts: Array<string | Buffer> = [RECIPE_VERSION, await baseInputs()];
  for (const [source, target] of FILES) parts.push(target, await readFile(source));
  await buildScratchImage({
    tags: [tag],
    hashLabel: HASH_LABEL,
    inputsHash: hashParts(parts),
    contextPrefix: 'foreman-node-job-',
    async populate(rootfs) {
      for (const [source, target] of FILES) await placeFile(source, join(rootfs, target));
    },
    // A CMD, so a job's `command` replaces it.
    instructions: ['WORKDIR /app', `CMD ${JSON.stringify([NODE_IN_IMAGE, '/app/job.mjs'])}`],
    quiet: opts.quiet ?? true,
  });
  return tag;
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    process.stdout.write(`${await buildNodeJobImage({ tag: parseTagArg(process.argv.slice(2)), quiet: false })}\n`);
  } catch (err) {
    process.stderr.write(`node-job: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
