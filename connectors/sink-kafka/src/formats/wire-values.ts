import type { LogicalType, Value } from '@nanosync/core';
import { ValueError, describe, int64Text, itemType } from './json-values.js';
import {
  TemporalValueError,
  dateToDays,
  daysToDate,
  microsToTime,
  microsToTimestamp,
  timeToMicros,
  timestampToMicros,
} from './temporal.js';

/**
 * The value shapes the binary formats (Avro, Protobuf) carry, one per logical kind:
 *
 *   int16, int32              int32
 *   int64                     int64 (BigInt in JS; never a double)
 *   float32, float64          double: a float32 the source reported as a JS number is kept
 *                             bit for bit, where a 32-bit float would round it again
 *   bool                      boolean
 *   bytes                     bytes
 *   date                      int32 days since 1970-01-01; ±infinity = int32 max / min
 *   time                      int64 microseconds since midnight
 *   timestamp, timestamptz    int64 microseconds since 1970-01-01T00:00:00 (UTC for tz);
 *                             ±infinity = int64 max / min
 *   decimal                   string in plain notation, `NaN`, `Infinity`, `-Infinity`:
 *                             a fixed-scale binary decimal cannot hold NaN, the infinities
 *                             or the per-value scale of an unconstrained numeric
 *   everything else           string in the canonical text (timetz, interval, uuid, json,
 *                             enum, inet, cidr, macaddr, money, other)
 *   array                     repeated items, each null, a value, or a nested array
 */
export type WireKind =
  | 'int'
  | 'long'
  | 'double'
  | 'bool'
  | 'bytes'
  | 'date'
  | 'time'
  | 'timestamp'
  | 'timestamptz'
  | 'string';

export function wireKind(type: LogicalType): WireKind {
  switch (type.kind) {
    case 'int16':
    case 'int32':
      return 'int';
    case 'int64':
      return 'long';
    case 'float32':
    case 'float64':
      return 'double';
    case 'bool':
      return 'bool';
    case 'bytes':
      return 'bytes';
    case 'date':
      return 'date';
    case 'time':
      return 'time';
    case 'timestamp':
      return 'timestamp';
    case 'timestamptz':
      return 'timestamptz';
    default:
      return 'string';
  }
}

export type WireScalar = number | bigint | boolean | string | Uint8Array;

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;
const TIME_DAY_END = /^24:/;

/**
 * Whether a temporal value lies outside what the standard logical types of other readers
 * accept, so Avro carries it as its canonical text instead: the infinities of date and
 * timestamps, `24:00:00` (Java's LocalTime ends at 23:59:59.999999999), and timestamps
 * whose microseconds since 1970 do not fit 64 bits (PostgreSQL reaches 294276 AD).
 */
export function temporalAsText(type: LogicalType, value: Value): value is string {
  if (typeof value !== 'string') return false;
  switch (wireKind(type)) {
    case 'date':
      return value === 'infinity' || value === '-infinity';
    case 'time':
      return TIME_DAY_END.test(value);
    case 'timestamp':
    case 'timestamptz': {
      if (value === 'infinity' || value === '-infinity') return true;
      try {
        const micros = timestampToMicros(value, type.kind === 'timestamptz');
        return micros > INT64_MAX || micros < INT64_MIN;
      } catch {
        return false;
      }
    }
    default:
      return false;
  }
}

export function isTemporal(type: LogicalType): boolean {
  const kind = wireKind(type);
  return kind === 'date' || kind === 'time' || kind === 'timestamp' || kind === 'timestamptz';
}

function mismatch(column: string, type: LogicalType, value: unknown): never {
  throw new ValueError(column, `value ${describe(value)} does not fit logical type ${type.kind}`);
}

/** Canonical scalar → wire scalar (64-bit integers as BigInt). */
export function scalarToWire(type: LogicalType, value: Value, column: string): WireScalar {
  try {
    switch (wireKind(type)) {
      case 'int':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < -2147483648 || value > 2147483647)
          mismatch(column, type, value);
        return value;
      case 'long':
        return BigInt(int64Text(value, column));
      case 'double':
        if (typeof value !== 'number') mismatch(column, type, value);
        return value;
      case 'bool':
        if (typeof value !== 'boolean') mismatch(column, type, value);
        return value;
      case 'bytes':
        if (!(value instanceof Uint8Array)) mismatch(column, type, value);
        return value;
      case 'date':
        if (typeof value !== 'string') mismatch(column, type, value);
        return dateToDays(value);
      case 'time':
        if (typeof value !== 'string') mismatch(column, type, value);
        return timeToMicros(value);
      case 'timestamp':
      case 'timestamptz': {
        if (typeof value !== 'string') mismatch(column, type, value);
        const micros = timestampToMicros(value, type.kind === 'timestamptz');
        if (micros > INT64_MAX || micros < INT64_MIN) {
          throw new ValueError(
            column,
            `${type.kind} ${JSON.stringify(value)} is beyond what 64-bit microseconds since 1970 can hold (years about 290308 BC to 294247 AD)`,
          );
        }
        return micros;
      }
      case 'string':
        if (typeof value !== 'string') mismatch(column, type, value);
        return value;
    }
  } catch (err) {
    if (err instanceof TemporalValueError) throw new ValueError(column, err.message);
    throw err;
  }
}

/** Wire scalar → canonical scalar. 64-bit integers may arrive as BigInt, Long-like or decimal text. */
export function scalarFromWire(type: LogicalType, value: unknown, column: string): Value {
  switch (wireKind(type)) {
    case 'int':
      return Number(value);
    case 'long':
      return BigInt(String(value)).toString();
    case 'date':
      return daysToDate(Number(value));
    case 'time':
      return microsToTime(BigInt(String(value)));
    case 'timestamp':
    case 'timestamptz':
      return microsToTimestamp(BigInt(String(value)), type.kind === 'timestamptz');
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw new ValueError(column, `bytes field holds ${describe(value)}`);
      return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
    default:
      return value as Value;
  }
}

/** Visit an array value: each item is null, a nested array (same element kind) or a scalar. */
export type ArrayItem<T> =
  | { kind: 'null' }
  | { kind: 'nested'; items: T[] }
  | { kind: 'value'; value: WireScalar }
  | { kind: 'text'; value: string };

export function arrayToWire<T>(
  type: LogicalType & { kind: 'array' },
  value: Value,
  column: string,
  build: (item: ArrayItem<T>) => T,
  asText?: (type: LogicalType, value: Value) => value is string,
): T[] {
  if (!Array.isArray(value)) mismatch(column, type, value);
  return value.map((item) => {
    if (item === null) return build({ kind: 'null' });
    const t = itemType(type, item);
    if (t.kind === 'array') return build({ kind: 'nested', items: arrayToWire(t, item, column, build, asText) });
    if (asText?.(t, item)) return build({ kind: 'text', value: item });
    return build({ kind: 'value', value: scalarToWire(t, item, column) });
  });
}
