import type { LogicalType, Value } from '@nanosync/core';
import type { ColumnMapping } from '../schema/types.js';

/**
 * Core values → the values the Storage Write API takes for each BigQuery type:
 *
 * | BigQuery | protobuf value |
 * |---|---|
 * | INT64 | int64 (from the exact decimal string; never through a JS number) |
 * | FLOAT64 | double, NaN and ±Infinity kept |
 * | NUMERIC, BIGNUMERIC | string, checked against precision and scale; NaN/Infinity refused |
 * | BOOL, STRING, BYTES, JSON | bool, string, bytes, string |
 * | DATE | int32 days since 1970-01-01 |
 * | TIME | string `HH:MM:SS.ffffff` |
 * | DATETIME | string `YYYY-MM-DD HH:MM:SS.ffffff` |
 * | TIMESTAMP | int64 microseconds since 1970 UTC |
 *
 * BigQuery's calendar types span years 1 to 9999 and TIME stops before 24:00; anything
 * outside (PostgreSQL `infinity`, 4713 BC, `24:00:00`) is refused with a {@link ValueRejected}
 * that the caller turns into an error naming table, column and key.
 */

/** Why one value cannot be written; the caller adds table, column, key and position. */
export class ValueRejected extends Error {
  override readonly name = 'ValueRejected';
}

/** protobufjs takes 64-bit integers as `{low, high}` words. */
export interface Int64Words {
  low: number;
  high: number;
  unsigned: false;
}

export type ProtoValue = number | string | boolean | Uint8Array | Int64Words | ProtoValue[];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MICROS_MIN = -62_135_596_800_000_000n; // 0001-01-01T00:00:00Z
const MICROS_MAX = 253_402_300_799_999_999n; // 9999-12-31T23:59:59.999999Z

export function int64Words(value: bigint): Int64Words {
  if (value < INT64_MIN || value > INT64_MAX) throw new ValueRejected(`${value} does not fit a 64-bit integer`);
  const bits = BigInt.asUintN(64, value);
  return { low: Number(bits & 0xffff_ffffn) | 0, high: Number(bits >> 32n) | 0, unsigned: false };
}

export function wordsToBigInt(words: { low: number; high: number }): bigint {
  return BigInt.asIntN(64, (BigInt(words.high >>> 0) << 32n) | BigInt(words.low >>> 0));
}

/** The protobuf value of one non-null column value; arrays map item by item. */
export function protoValueOf(mapping: ColumnMapping, value: Value): ProtoValue {
  if (mapping.asJsonText) return JSON.stringify(jsonOf(mapping.valueType, value));
  if (mapping.field.mode === 'REPEATED') {
    if (!Array.isArray(value)) throw new ValueRejected(`expected an array, got ${typeof value}`);
    return value.map((item, i) => {
      if (item === null) {
        throw new ValueRejected(`array element ${i + 1} is NULL; BigQuery arrays cannot hold NULL elements`);
      }
      if (Array.isArray(item))
        throw new ValueRejected('a multi-dimensional array cannot be stored in a one-dimensional BigQuery ARRAY');
      return scalarValue(mapping, item as Exclude<Value, null>);
    });
  }
  return scalarValue(mapping, value as Exclude<Value, null>);
}

function scalarValue(mapping: ColumnMapping, value: Exclude<Value, null>): ProtoValue {
  const { field, valueType } = mapping;
  switch (field.type) {
    case 'INT64':
      if (typeof value === 'number') {
        if (!Number.isSafeInteger(value)) throw new ValueRejected(`${value} is not an integer`);
        return int64Words(BigInt(value));
      }
      if (typeof value === 'string' && /^-?\d+$/.test(value)) return int64Words(BigInt(value));
      throw new ValueRejected(`"${String(value).slice(0, 40)}" is not an integer`);
    case 'FLOAT64':
      if (typeof value === 'number') return value;
      if (typeof value === 'string' && /^(NaN|-?Infinity|-?\d+(\.\d+)?([eE][-+]?\d+)?)$/.test(value))
        return Number(value);
      throw new ValueRejected(`"${String(value).slice(0, 40)}" is not a number`);
    case 'NUMERIC':
    case 'BIGNUMERIC':
      return decimalText(String(value), field.type, field.precision, field.scale);
    case 'BOOL':
      if (typeof value === 'boolean') return value;
      throw new ValueRejected(`${typeof value} is not a boolean`);
    case 'BYTES':
      if (value instanceof Uint8Array) return value;
      throw new ValueRejected(`${typeof value} is not bytes`);
    case 'DATE':
      return dateDays(String(value));
    case 'TIME':
      return timeText(String(value));
    case 'DATETIME':
      return datetimeText(String(value));
    case 'TIMESTAMP':
      return int64Words(timestampMicros(String(value)));
    case 'JSON':
      return typeof value === 'string' ? value : JSON.stringify(value);
    case 'STRING':
      return stringOf(valueType, value);
  }
}

function stringOf(type: LogicalType, value: Exclude<Value, null>): string {
  if (typeof value === 'string') {
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value)) {
      throw new ValueRejected('the text contains a lone UTF-16 surrogate, which is not valid UTF-8');
    }
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return JSON.stringify(jsonOf(type, value));
  throw new ValueRejected(`cannot write ${typeof value} as text`);
}

const DECIMAL = /^(-)?(\d+)(?:\.(\d+))?$/;

/** Checks a decimal against the column's digits; BigQuery rounds silently, so a value that would round is refused. */
export function decimalText(text: string, type: 'NUMERIC' | 'BIGNUMERIC', precision?: number, scale?: number): string {
  const match = DECIMAL.exec(text);
  if (!match) {
    throw new ValueRejected(
      /^[-+]?(NaN|Infinity)$/i.test(text)
        ? `${text} has no ${type} representation (map the column to a string type at the source, or filter the row)`
        : `"${text.slice(0, 60)}" is not a decimal number`,
    );
  }
  const intDigits = (match[2] as string).replace(/^0+(?=\d)/, '');
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const maxFraction = scale ?? (type === 'NUMERIC' ? 9 : 38);
  const maxInt = precision !== undefined ? precision - (scale ?? 0) : type === 'NUMERIC' ? 29 : 38;
  if (fraction.length > maxFraction)
    throw new ValueRejected(`${text} has more than ${maxFraction} digits after the point, which ${type} would round`);
  if (intDigits !== '0' && intDigits.length > maxInt)
    throw new ValueRejected(`${text} has more than ${maxInt} digits before the point, beyond ${type}'s range`);
  return text;
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_TEXT = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;
const TIMESTAMP_TEXT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z)?$/;

function utcMillis(year: number, month: number, day: number, h = 0, m = 0, s = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(h, m, s, 0);
  return d.getTime();
}

function outOfRange(text: string, type: string): ValueRejected {
  return new ValueRejected(`${text} is outside BigQuery's ${type} range (0001-01-01 to 9999-12-31)`);
}

/** `YYYY-MM-DD` → days since 1970-01-01. */
export function dateDays(text: string): number {
  const match = DATE_TEXT.exec(text);
  if (!match) {
    if (/^(-?infinity|[-+]\d{4,})/.test(text)) throw outOfRange(text, 'DATE');
    throw new ValueRejected(`"${text.slice(0, 40)}" is not a date`);
  }
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (year < 1) throw outOfRange(text, 'DATE');
  return Math.round(utcMillis(year, month, day) / 86_400_000);
}

export function timeText(text: string): string {
  const match = TIME_TEXT.exec(text);
  if (!match) throw new ValueRejected(`"${text.slice(0, 40)}" is not a time of day`);
  if (Number(match[1]) > 23)
    throw new ValueRejected(`${text} is outside BigQuery's TIME range (00:00:00 to 23:59:59.999999)`);
  return `${match[1]}:${match[2]}:${match[3]}.${(match[4] ?? '').padEnd(6, '0')}`;
}

export function datetimeText(text: string): string {
  const match = TIMESTAMP_TEXT.exec(text);
  if (!match || match[8]) {
    if (/^(-?infinity|[-+]\d{4,})/.test(text)) throw outOfRange(text, 'DATETIME');
    throw new ValueRejected(`"${text.slice(0, 40)}" is not a timestamp without time zone`);
  }
  if (Number(match[1]) < 1) throw outOfRange(text, 'DATETIME');
  return `${match[1]}-${match[2]}-${match[3]} ${match[4]}:${match[5]}:${match[6]}.${(match[7] ?? '').padEnd(6, '0')}`;
}

/** `YYYY-MM-DDTHH:MM:SS.ffffffZ` → microseconds since 1970 UTC. */
export function timestampMicros(text: string): bigint {
  const match = TIMESTAMP_TEXT.exec(text);
  if (!match) {
    if (/^(-?infinity|[-+]\d{4,})/.test(text)) throw outOfRange(text, 'TIMESTAMP');
    throw new ValueRejected(`"${text.slice(0, 40)}" is not a timestamp`);
  }
  const ms = utcMillis(
    Number(match[1]),
    Number(match[2]),
    Number(match[3]),
    Number(match[4]),
    Number(match[5]),
    Number(match[6]),
  );
  const micros = BigInt(ms) * 1000n + BigInt((match[7] ?? '').padEnd(6, '0'));
  if (Number(match[1]) < 1 || micros < MICROS_MIN || micros > MICROS_MAX) throw outOfRange(text, 'TIMESTAMP');
  return micros;
}

/** JSON form of a value for JSON columns (arrays of arrays): numbers that JSON cannot hold exactly stay strings, bytes are base64. */
function jsonOf(type: LogicalType, value: Value): unknown {
  if (value === null) return null;
  if (Array.isArray(value)) return value.map((v) => jsonOf(type.kind === 'array' ? type.items : type, v));
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (type.kind === 'json' && typeof value === 'string') {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  return value;
}
