/**
 * What the store keeps of a job's trace (src/tracing/), so that a restarted agent continues the same spans:
 * after a kill -9 and re-adoption, the job's later spans and its report belong to the trace it began.
 */
export interface TraceIds {
  /** The job's `foreman.job` span, written as a W3C traceparent: `00-<trace id>-<span id>-<flags>`. */
  readonly job: string;
  /** The id (16 hex digits) of the job's `foreman.run` span: the parent its container was given in TRACEPARENT. */
  readonly run: string;
  /** The parent the job came with (its `traceparent`, as parsed and written again), when it had a valid one. */
  readonly parent?: string | undefined;
  /** The trace's `tracestate`, when it has one. */
  readonly state?: string | undefined;
}
