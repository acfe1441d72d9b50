import { describe, expect, test } from 'vitest';
import { columnMappingFor } from '../../src/schema/types.js';
import {
  ValueRejected,
  dateDays,
  datetimeText,
  decimalText,
  protoValueOf,
  timeText,
  timestampMicros,
  wordsToBigInt,
} from '../../src/write/values.js';

const mapping = (type: Parameters<typeof columnMappingFor>[0]['type']) =>
  columnMappingFor({ name: 'c', type, nullable: true }, 'c', false);

describe('values for the Storage Write API', () => {
  test('int64 travels exactly, never through a JS number', () => {
    const v = protoValueOf(mapping({ kind: 'int64' }), '9223372036854775807') as { low: number; high: number };
    expect(wordsToBigInt(v)).toBe(9223372036854775807n);
    expect(
      wordsToBigInt(protoValueOf(mapping({ kind: 'int64' }), '-9223372036854775808') as { low: number; high: number }),
    ).toBe(-(2n ** 63n));
    expect(() => protoValueOf(mapping({ kind: 'int64' }), '9223372036854775808')).toThrow(ValueRejected);
  });

  test('floats keep NaN and the infinities', () => {
    expect(protoValueOf(mapping({ kind: 'float64' }), Number.NaN)).toBeNaN();
    expect(protoValueOf(mapping({ kind: 'float64' }), Number.NEGATIVE_INFINITY)).toBe(Number.NEGATIVE_INFINITY);
  });

  test('decimals: checked against precision and scale, NaN refused for NUMERIC, kept as text for STRING', () => {
    expect(decimalText('-1234567890.12', 'NUMERIC', 12, 2)).toBe('-1234567890.12');
    expect(decimalText('1.5000', 'NUMERIC', 12, 2)).toBe('1.5000');
    expect(() => decimalText('1.123', 'NUMERIC', 12, 2)).toThrow(/more than 2 digits after the point/);
    expect(() => decimalText('12345678901', 'NUMERIC', 12, 2)).toThrow(/more than 10 digits before the point/);
    expect(() => decimalText('NaN', 'NUMERIC', 12, 2)).toThrow(/NaN has no NUMERIC representation/);
    expect(protoValueOf(mapping({ kind: 'decimal' }), 'Infinity')).toBe('Infinity');
  });

  test('DATE as days since 1970, the BigQuery range enforced', () => {
    expect(dateDays('1970-01-02')).toBe(1);
    expect(dateDays('0001-01-01')).toBe(-719162);
    expect(dateDays('9999-12-31')).toBe(2932896);
    expect(() => dateDays('infinity')).toThrow(/outside BigQuery's DATE range/);
    expect(() => dateDays('-0043-03-15')).toThrow(/outside BigQuery's DATE range/);
    expect(() => dateDays('0000-01-01')).toThrow(/outside BigQuery's DATE range/);
  });

  test('TIME stops before 24:00; DATETIME uses a space; microseconds kept', () => {
    expect(timeText('07:08:09.5')).toBe('07:08:09.500000');
    expect(() => timeText('24:00:00')).toThrow(/outside BigQuery's TIME range/);
    expect(datetimeText('2026-03-14T10:22:01.000001')).toBe('2026-03-14 10:22:01.000001');
    expect(() => datetimeText('-infinity')).toThrow(/DATETIME range/);
  });

  test('TIMESTAMP as microseconds since 1970 UTC, exact at both ends of the range', () => {
    expect(timestampMicros('1970-01-01T00:00:00.000001Z')).toBe(1n);
    expect(timestampMicros('1969-12-31T23:59:59.999999Z')).toBe(-1n);
    expect(timestampMicros('0001-01-01T00:00:00Z')).toBe(-62135596800000000n);
    expect(timestampMicros('9999-12-31T23:59:59.999999Z')).toBe(253402300799999999n);
    expect(() => timestampMicros('infinity')).toThrow(/TIMESTAMP range/);
    expect(() => timestampMicros('10000-01-01T00:00:00Z')).toThrow(ValueRejected);
  });

  test('arrays: REPEATED, NULL elements and nested arrays refused with the reason; arrays of arrays as JSON', () => {
    expect(protoValueOf(mapping({ kind: 'array', items: { kind: 'string' } }), ['a', ''])).toEqual(['a', '']);
    expect(() => protoValueOf(mapping({ kind: 'array', items: { kind: 'string' } }), ['a', null])).toThrow(
      /element 2 is NULL/,
    );
    expect(
      protoValueOf(mapping({ kind: 'array', items: { kind: 'array', items: { kind: 'int32' } } }), [[1, null], [3]]),
    ).toBe('[[1,null],[3]]');
  });

  test('strings with a lone surrogate are refused (not valid UTF-8); NUL is kept', () => {
    expect(protoValueOf(mapping({ kind: 'string' }), 'a\u0000b')).toBe('a\u0000b');
    expect(() => protoValueOf(mapping({ kind: 'string' }), 'a\uD800b')).toThrow(/lone UTF-16 surrogate/);
  });
});
