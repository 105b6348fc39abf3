/**
 * The callback wire format, in one place: the headers and bodies of forwarded updates and of
 * the reports the agent sends when it ends a job itself. The store keeps what these return; the
 * outbox adds the per-delivery headers when it sends.
 */
import type { Delivery, NewDelivery } from '../shared/delivery.ts';
import { encodeJobId } from '../shared/job-input.ts';
import { encodeUsage, USAGE_HEADER, type JobUsage } from '../shared/usage.ts';

/** Lines of container output attached to a report, and the longest a line may be. */
export const REPORT_LOG_LINES = 20;
export const REPORT_LOG_LINE_CHARS = 1000;

/** Not forwarded from the container's request: they describe its connection, not the update. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'user-agent',
]);

interface Identity {
  readonly jobId: string;
  readonly agentId: string;
  readonly callbackUrl: string;
}

/**
 * A container's PUT, forwarded: its headers (less hop-by-hop and anything it may not set) and body as
 * they came. `outcome` is set on the job's final update (`succeeded`, or `canceled` during a cancel).
 */
export function forwardedUpdate(
  to: Identity,
  update: {
    readonly outcome: string | undefined;
    readonly headers: Readonly<Record<string, string | string[] | undefined>>;
    readonly body: Buffer;
    /** What the container used, on its final update. */
    readonly usage?: JobUsage | undefined;
  },
): NewDelivery {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(update.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith('x-foreman-delivery-') || name === 'x-foreman-job-outcome' || name === USAGE_HEADER)
      continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  Object.assign(headers, identityHeaders(to));
  if (update.outcome !== undefined) headers['x-foreman-job-outcome'] = update.outcome;
  if (update.outcome !== undefined && update.usage) headers[USAGE_HEADER] = encodeUsage(update.usage);
  return { url: to.callbackUrl, headers, body: update.body };
}

/** How the agent ended a job, for its report. */
export interface Ending {
  /** One of the outcomes in docs/protocol.md (`failed`, `timed-out`, …). */
  readonly outcome: string;
  readonly reason: string;
  readonly message: string;
  readonly exitCode?: number | null;
  /** The container's last lines, trimmed by `trimLogTail`. */
  readonly logs?: readonly string[] | undefined;
  /**
   * The job's id in the body too (`"id"`), for an id the header can carry only in an encoding of its own (a lone
   * surrogate: JSON writes it `\ud800`, so `JSON.parse` gives back the very string the control server sent).
   */
  readonly echoId?: boolean;
  /** What the container used, when one ran. */
  readonly usage?: JobUsage | undefined;
}

/** The final update the agent sends for a job that did not complete by itself. */
export function endingReport(to: Identity, ending: Ending): NewDelivery {
  const body: Record<string, unknown> = { outcome: ending.outcome, reason: ending.reason, message: ending.message };
  if (ending.echoId) body.id = to.jobId;
  if (ending.exitCode !== undefined && ending.exitCode !== null) body.exitCode = ending.exitCode;
  if (ending.logs) body.logs = ending.logs;
  if (ending.usage) body.usage = ending.usage;
  return {
    url: to.callbackUrl,
    headers: {
      'content-type': 'application/json',
      'x-foreman-job-status': 'completed',
      'x-foreman-job-outcome': ending.outcome,
      ...identityHeaders(to),
      ...(ending.usage ? { [USAGE_HEADER]: encodeUsage(ending.usage) } : {}),
    },
    body: Buffer.from(JSON.stringify(body)),
  };
}

/** The last `REPORT_LOG_LINES` lines, each cut to `REPORT_LOG_LINE_CHARS`. */
export function trimLogTail(lines: readonly string[]): string[] {
  return lines.slice(-REPORT_LOG_LINES).map((l) => (l.length > REPORT_LOG_LINE_CHARS ? `${l.slice(0, REPORT_LOG_LINE_CHARS)}…` : l));
}

/** Everything one attempt sends: the stored headers plus the delivery's id and seq and our user agent. */
export function wireHeaders(delivery: Delivery, userAgent: string): Record<string, string> {
  return {
    ...delivery.headers,
    'x-foreman-delivery-id': delivery.id,
    'x-foreman-delivery-seq': String(delivery.seq),
    'user-agent': userAgent,
  };
}

function identityHeaders(to: Identity): Record<string, string> {
  return { 'x-foreman-job-id': encodeJobId(to.jobId), 'x-foreman-agent-id': to.agentId };
}
