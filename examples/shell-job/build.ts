// Builds the shell job's image without a registry: a `FROM scratch` image holding the host's /bin/sh (dash on
// Debian), curl and sleep, the libraries they link against, and job.sh. A real job image would start
// `FROM alpine` or `FROM debian` and `apk add curl` or `apt-get install curl`; this machine cannot pull one.
//
//   node --import tsx examples/shell-job/build.ts [--tag T]     (default foreman-shell-job:latest)
//
// The image is labelled with a hash of its inputs, so a second run with unchanged inputs skips the build.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { binaryInputs, buildScratchImage, hashParts, parseTagArg, placeBinary, placeFile } from '../../scripts/scratch-image.ts';

export const SHELL_JOB_IMAGE_TAG = 'foreman-shell-job:latest';
const HASH_LABEL = 'dev.foreman.shell-job.inputs-hash';
const RECIPE_VERSION = '1';
/** Host binaries the job runs, each at the same path in the image. */
const BINARIES = ['/bin/sh', '/usr/bin/curl', '/usr/bin/sleep'];

const here = dirname(fileURLToPath(import.meta.url));
const script = join(here, 'job.sh');

export async function buildShellJobImage(opts: { tag?: string; quiet?: boolean } = {}): Promise<string> {
  const tag = opts.tag ?? SHELL_JOB_IMAGE_TAG;
  const parts: Array<string | Buffer> = [RECIPE_VERSION, await readFile(script)];
  for (const binary of BINARIES) parts.push(binary, await binaryInputs(binary));
  await buildScratchImage({
    tags: [tag],
    hashLabel: HASH_LABEL,
    inputsHash: hashParts(parts),
    node: false,
    contextPrefix: 'foreman-shell-job-',
    async populate(rootfs) {
      for (const binary of BINARIES) await placeBinary(rootfs, binary);
      await placeFile(script, join(rootfs, 'job.sh'));
    },
    // A CMD, so a job's `command` replaces it.
    instructions: ['CMD ["/bin/sh", "/job.sh"]'],
    quiet: opts.quiet ?? true,
  });
  return tag;
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly) {
  try {
    process.stdout.write(`${await buildShellJobImage({ tag: parseTagArg(process.argv.slice(2)), quiet: false })}\n`);
  } catch (err) {
    process.stderr.write(`shell-job: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
