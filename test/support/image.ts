import { buildTestJobImage } from '../../examples/test-job-image/build.ts';

let image: Promise<string> | undefined;

/** Tag of the test job image, built (or found up to date) once per process. */
export async function testJobImage(): Promise<string> {
  image ??= buildTestJobImage({ quiet: true });
  try {
    return await image;
  } catch (err) {
    // Don't memoise a failed build: a later caller retries.
    image = undefined;
    throw err;
  }
}
