// `log.format = "text"`: pino's JSON lines written for a person at a terminal instead:
//   2026-12-07T09:14:03.120Z INFO  job container started jobId=build-7 containerId=3f2a… image=foreman-test-job:latest
// pino still builds each line (with its redaction of nothing: the agent never logs a secret); this only rewrites it.

const LEVELS: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Fields every line has, shown in their own places or not at all. */
const OMITTED = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'agent']);

/** A value after `key=`: bare when it is one plain word, else as JSON (quoted, escaped, objects whole). */
function shown(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=\\]+$/u.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? 'undefined';
}

/** A field pino writes as a string or a number, as text. */
function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

/** One JSON log line from pino as `time LEVEL message key=value…`, ending in a newline; a line that is not JSON as it came. */
export function textLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString() : text(entry.time);
  const level = (typeof entry.level === 'number' ? LEVELS[entry.level] : undefined) ?? text(entry.level);
  const fields = Object.entries(entry)
    .filter(([key, value]) => !OMITTED.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${shown(value)}`);
  return `${[time, level.padEnd(5), text(entry.msg), ...fields].join(' ').trimEnd()}\n`;
}
