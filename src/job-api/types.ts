/** The job API's contract with the agent: what a container's request becomes, and what the agent answers. */
import type { Logger } from 'pino';
import type { JobStatus } from '../protocol/wire.ts';

export type { JobStatus } from '../protocol/wire.ts';

export interface JobUpdate {
  readonly status: JobStatus;
  readonly progress: number;
  /** The container's request headers, lower-cased, as received. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The raw request body, byte for byte. */
  readonly body: Buffer;
}

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

/** What the job API needs from the agent; all job logic lives behind it. */
export interface JobApiBackend {
  /** True when `secret` is the secret of a job this agent tracks. Must not reveal why not. */
  authorize(jobId: string, secret: string): boolean;
  fetchJob(jobId: string): Promise<ApiReply>;
  updateJob(jobId: string, update: JobUpdate): Promise<ApiReply>;
  /** Values the job's logs and reports hide from now on (already checked: strings within the limits). */
  addRedactions(jobId: string, values: readonly string[]): Promise<ApiReply>;
}

export interface JobApiOptions {
  readonly backend: JobApiBackend;
  readonly log: Logger;
  readonly maxBodySize: number;
}
