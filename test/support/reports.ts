/** Jobs for the fake control server, and what the agent reports back about them. */
import assert from 'node:assert/strict';
import type { RecordedRequest } from './servers.ts';

/** A job for the test job image, as the control server hands it out. */
export function job(id: string, callbackUrl: string, body: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, image: 'foreman-test-job:latest', body, callbackUrl, ...extra };
}

/** The body of a report the agent sent when it ended a job itself. */
export interface EndingReport {
  outcome: string;
  reason: string;
  message: string;
  exitCode?: number;
  logs?: string[];
}

export function reportOf(request: RecordedRequest): EndingReport {
  return JSON.parse(request.body.toString()) as EndingReport;
}

/** The delivery sequence numbers of these requests, in arrival order. */
export function seqs(requests: RecordedRequest[]): number[] {
  return requests.map((r) => Number(r.headers['x-foreman-delivery-seq']));
}

/** Deliveries may repeat (at least once) but first arrivals must be in order with no gaps. */
export function assertInOrder(requests: RecordedRequest[]): void {
  const firsts: number[] = [];
  for (const s of seqs(requests)) if (!firsts.includes(s)) firsts.push(s);
  assert.deepEqual(
    firsts,
    firsts.map((_, i) => i + 1),
    `delivery order ${JSON.stringify(seqs(requests))}`,
  );
}
