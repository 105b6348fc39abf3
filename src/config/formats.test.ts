import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from './formats.ts';

test('durations with units, as Go and systemd write them, in milliseconds', () => {
  const cases: Array<[string, number | undefined]> = [
    ['500ms', 500],
    ['90s', 90_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['1.5s', 1500],
    ['0.1s', 100],
    [' 90s ', 90_000],
    ['0s', 0],
    ['2500', 2500],
    ['0.5ms', undefined],
    ['30s1m', undefined],
    ['1m1m', undefined],
    ['1h 30m', undefined],
    ['90 seconds', undefined],
    ['-5s', undefined],
    ['s', undefined],
    ['', undefined],
    ['9999999999999999d', undefined],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, JSON.stringify(text));
});

test('milliseconds shown in the largest units that write them exactly', () => {
  const cases: Array<[number, string]> = [
    [0, '0'],
    [1500, '1s500ms'],
    [90_000, '1m30s'],
    [10_000, '10s'],
    [86_400_000, '1d'],
    [2_147_483_647, '24d20h31m23s647ms'],
  ];
  for (const [ms, text] of cases) {
    assert.equal(formatDuration(ms), text, String(ms));
    assert.equal(parseDuration(text), ms, `${text} reads back as ${ms}`);
  }
});
