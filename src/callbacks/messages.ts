/**
 * The callback wire format, in one place: the headers and bodies of forwarded updates and of
 * the reports the agent sends when it ends a job itself. The store keeps what these return; the
 * outbox adds the per-delivery headers when it sends.
 */
import type { Delivery, NewDelivery } from '../shared/delivery.ts';
import {
  AGENT_SET_HEADERS,
  FINAL_STATUS,
  HEADER,
  REPORT_LOG_LINE_CHARS,
  REPORT_LOG_LINES,
  deliveryHeaders,
  identityHeaders,
  type Outcome,
  type Reason,
  type ReportBody,
  encodeUsage,
  type JobUsage,
  encodeHookResult,
  type HookResult,
  OUTCOMES,
  REASONS,
} from '../protocol/wire.ts';

export { REPORT_LOG_LINES, REPORT_LOG_LINE_CHARS };

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
    readonly outcome: Outcome | undefined;
    readonly headers: Readonly<Record<string, string | string[] | undefined>>;
    readonly body: Buffer;
    /** What the container used, on its final update. */
    readonly usage?: JobUsage | undefined;
  },
): NewDelivery {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(update.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || (AGENT_SET_HEADERS as readonly string[]).includes(name)) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  Object.assign(headers, identityHeaders(to.jobId, to.agentId));
  if (update.outcome !== undefined) headers[HEADER.jobOutcome] = update.outcome;
  if (update.outcome !== undefined && update.usage) headers[HEADER.usage] = encodeUsage(update.usage);
  return { url: to.callbackUrl, headers, body: update.body };
}

/** How the agent ended a job, for its report. */
export interface Ending {
  /** One of the outcomes in docs/protocol.md (`failed`, `timed-out`, …). */
  readonly outcome: Outcome;
  readonly reason: Reason;
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
  const body: ReportBody = {
    outcome: ending.outcome,
    reason: ending.reason,
    message: ending.message,
    ...(ending.echoId ? { id: to.jobId } : {}),
    ...(ending.exitCode !== undefined && ending.exitCode !== null ? { exitCode: ending.exitCode } : {}),
    ...(ending.logs ? { logs: ending.logs } : {}),
    ...(ending.usage ? { usage: ending.usage } : {}),
  };
  return {
    url: to.callbackUrl,
    headers: {
      'content-type': 'application/json',
      [HEADER.jobStatus]: FINAL_STATUS,
      [HEADER.jobOutcome]: ending.outcome,
      ...identityHeaders(to.jobId, to.agentId),
      ...(ending.usage ? { [HEADER.usage]: encodeUsage(ending.usage) } : {}),
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
    ...deliveryHeaders(delivery.id, delivery.seq),
    'user-agent': userAgent,
  };
}

/** Whether a body is one of the agent's own reports (`ReportBody`), not a container's forwarded update. */
function agentReport(body: Buffer): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    const { outcome, reason, message } = parsed as Record<string, unknown>;
    const known = (OUTCOMES as readonly unknown[]).includes(outcome) && (REASONS as readonly unknown[]).includes(reason);
    return known && typeof message === 'string' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A final delivery as it leaves, with the result of the job's post_job hook: the header on every final update,
 * and `postJobHook` in the body of the agent's own reports (a container's body goes as it came).
 */
export function withPostJobHook(delivery: Delivery, result: HookResult): Delivery {
  const report = agentReport(delivery.body);
  const body = report ? Buffer.from(JSON.stringify({ ...report, postJobHook: result })) : delivery.body;
  return { ...delivery, headers: { ...delivery.headers, [HEADER.postJobHook]: encodeHookResult(result) }, body };
}
