import { createHash, randomBytes } from 'node:crypto';
import { jobEndpoint } from '../../protocol/wire.ts';

/**
 * A container name within Docker's charset ([a-zA-Z0-9][a-zA-Z0-9_.-]*), readable and unique:
 * a sanitised prefix of the id plus a hash of the whole id, scoped by agent.
 */
export function containerNameFor(agentId: string, jobId: string): string {
  const readable = jobId.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 40);
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 12);
  return `foreman-${agentId.slice(0, 8)}-${readable}-${hash}`;
}

export function newJobSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** Where containers reach the job API; the base is known once the server listens. */
export class JobEndpoints {
  base = '';

  urlFor(jobId: string, secret: string): string {
    return jobEndpoint(this.base, jobId, secret);
  }
}
