/** Which of a container's output streams a message came from. */
export type LogStreamName = 'stdout' | 'stderr';

/** One message of a container's output, as the engine stored it. */
export interface LogMessage {
  readonly stream: LogStreamName;
  /** The engine's timestamp, RFC 3339 in UTC with nanoseconds (fixed width, so strings sort by time). */
  readonly ts: string;
  /** The bytes, with the trailing newline when the engine had one (a message without one is part of a longer line). */
  readonly text: Buffer;
}

/** One line of a job's log as it is stored and sent. */
export interface LogLine {
  readonly stream: LogStreamName;
  readonly ts: string;
  /** Without its newline, at most `MAX_LINE_BYTES` bytes of UTF-8. */
  readonly text: string;
}
