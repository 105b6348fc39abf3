/** Capped exponential backoff with full jitter, and the retry classification shared by every HTTP client. */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** Delay before retry number `attempt` (1-based): uniform in [cap/2, cap], cap = min(max, base * 2^(attempt-1)). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** Network errors, 408, 429 and 5xx are worth retrying; any other 4xx is final. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A short, user-facing reason for a failed HTTP exchange, without stack traces. */
export function describeHttpError(err: unknown): string {
  // Connecting to a name with several addresses (localhost: ::1 and 127.0.0.1) fails with one error each.
  if (err instanceof AggregateError && err.errors.length > 0) {
    return [...new Set(err.errors.map(describeHttpError))].join('; ');
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const cause = (err as { cause?: unknown }).cause;
    const causeCode = cause instanceof Error ? (cause as { code?: unknown }).code : undefined;
    const label = typeof code === 'string' ? code : typeof causeCode === 'string' ? causeCode : undefined;
    if (!err.message) return label ?? err.name;
    return label && !err.message.includes(label) ? `${label}: ${err.message}` : err.message;
  }
  return String(err);
}
