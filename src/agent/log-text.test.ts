import { test } from 'node:test';
import assert from 'node:assert/strict';
import { textLine } from './log-text.ts';

test('a pino line as time, level, message and key=value pairs: plain words bare, anything else as JSON', () => {
  const json = JSON.stringify({
    level: 30,
    time: Date.UTC(2026, 11, 7, 9, 14, 3, 120),
    pid: 7,
    hostname: 'h',
    agent: 'foreman',
    jobId: 'build-7',
    reason: 'connect ECONNREFUSED 127.0.0.1:9',
    attempts: 3,
    ok: false,
    nothing: null,
    engine: { version: '20.10' },
    msg: 'callback delivery failed; retrying',
  });
  assert.equal(
    textLine(json),
    '2026-12-07T09:14:03.120Z INFO  callback delivery failed; retrying jobId=build-7 reason="connect ECONNREFUSED 127.0.0.1:9" attempts=3 ok=false nothing=null engine={"version":"20.10"}\n',
  );
});

test('every level has its name; a line without fields ends at its message; a line that is not JSON passes as it came', () => {
  const levels = [10, 20, 30, 40, 50, 60].map((level) => textLine(JSON.stringify({ level, time: 0, msg: 'm' })).split(' ')[1]);
  assert.deepEqual(levels, ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'], 'the level names');
  assert.equal(textLine(JSON.stringify({ level: 40, time: 0, msg: 'warned' })), '1970-01-01T00:00:00.000Z WARN  warned\n', 'no trailing space');
  assert.equal(textLine('not json'), 'not json\n', 'kept, with its newline');
  assert.equal(
    textLine(JSON.stringify({ level: 30, time: 0, msg: 'x', text: 'a "quoted" = b' })),
    '1970-01-01T00:00:00.000Z INFO  x text="a \\"quoted\\" = b"\n',
    'quoted and escaped',
  );
});
