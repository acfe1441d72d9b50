import { describe, expect, test } from 'vitest';
import {
  DATE_NEG_INFINITY,
  DATE_POS_INFINITY,
  TIMESTAMP_NEG_INFINITY,
  TIMESTAMP_POS_INFINITY,
  dateToDays,
  daysToDate,
  microsToTime,
  microsToTimestamp,
  timeToMicros,
  timestampToMicros,
} from '../../src/formats/temporal.js';

describe('dates as days since 1970-01-01', () => {
  test.each([
    ['1970-01-01', 0],
    ['1969-12-31', -1],
    ['2000-02-29', 11016],
    ['0001-01-01', -719162],
    ['+0000-12-31', -719163],
    ['-0043-03-15', -735160],
    ['9999-12-31', 2932896],
    ['+10000-01-01', 2932897],
    ['infinity', DATE_POS_INFINITY],
    ['-infinity', DATE_NEG_INFINITY],
  ])('%s ⇄ %d', (text, days) => {
    expect(dateToDays(text)).toBe(days);
    expect(daysToDate(days)).toBe(text);
  });

  test('rejects text that is not a canonical date', () => {
    expect(() => dateToDays('2020-13-01')).toThrow(/canonical date/);
    expect(() => dateToDays('20-01-01')).toThrow(/canonical date/);
  });
});

describe('times and timestamps as microseconds', () => {
  test.each([
    ['00:00:00.000000', 0n],
    ['12:34:56.789012', 45296789012n],
    ['24:00:00.000000', 86400000000n],
  ])('time %s ⇄ %d', (text, micros) => {
    expect(timeToMicros(text)).toBe(micros);
    expect(microsToTime(micros)).toBe(text);
  });

  test.each([
    ['1970-01-01T00:00:00.000000', 0n],
    ['1969-12-31T23:59:59.999999', -1n],
    ['2026-03-14T10:22:01.456789', 1773483721456789n],
    ['-4712-01-01T00:00:00.000000', -210863520000000000n],
    ['+294276-12-31T23:59:59.999999', 9224318015999999999n],
    ['infinity', TIMESTAMP_POS_INFINITY],
    ['-infinity', TIMESTAMP_NEG_INFINITY],
  ])('timestamp %s ⇄ %d', (text, micros) => {
    expect(timestampToMicros(text, false)).toBe(micros);
    expect(microsToTimestamp(micros, false)).toBe(text);
    const zoned = text.includes('T') ? `${text}Z` : text;
    expect(timestampToMicros(zoned, true)).toBe(micros);
    expect(microsToTimestamp(micros, true)).toBe(zoned);
  });

  test('a zone marker must match the kind', () => {
    expect(() => timestampToMicros('2020-01-01T00:00:00.000000Z', false)).toThrow(/timestamp/);
    expect(() => timestampToMicros('2020-01-01T00:00:00.000000', true)).toThrow(/timestamptz/);
  });
});
