/** What an engine says about an image and about its host: shared by the executors, the image cache and the poll headers. */

/** An image as the engine describes it. */
export interface ImageInfo {
  readonly id: string;
  /** The repository digest of the reference (`repo@sha256:…`), when the image came from a registry. */
  readonly digest: string | undefined;
  readonly sizeBytes: number;
}

/** An image jobs used, as the agent keeps it (for `x-foreman-images` and the image cache). */
export interface ImageRecord extends ImageInfo {
  readonly ref: string;
  /** This agent pulled it (it was missing): only such images are ever removed. */
  readonly pulled: boolean;
  readonly lastUsedAt: number;
}
