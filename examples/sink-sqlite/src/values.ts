import type { ColumnSchema, LogicalType, Value } from '@nanosync/core';

/** What node:sqlite binds: null, numbers, bigint, text and bytes. */
export type SqliteValue = null | number | bigint | string | Uint8Array;

/** The declared SQLite type of a column. int64 and decimal stay TEXT so no digit is lost. */
export function sqliteType(type: LogicalType): string {
  switch (type.kind) {
    case 'int16':
    case 'int32':
    case 'bool':
      return 'INTEGER';
    case 'float32':
    case 'float64':
      return 'REAL';
    case 'bytes':
      return 'BLOB';
    default:
      return 'TEXT';
  }
}

/** A value that does not fit its column; the sink adds table and key to the message. */
export class BadValue extends Error {
  constructor(
    readonly column: string,
    message: string,
  ) {
    super(message);
  }
}

const INT64 = /^-?\d+$/;
const RANGE = { int16: 2 ** 15, int32: 2 ** 31 } as const;

/**
 * One canonical value (see the event model in @nanosync/core) as SQLite stores it, or a
 * {@link BadValue} when it cannot be stored without changing it.
 */
export function toSqlite(column: ColumnSchema, value: Value | undefined): SqliteValue {
  if (value === null || value === undefined) return null;
  const kind = column.type.kind;
  const bad = (what: string) => new BadValue(column.name, `${kind} value ${show(value)} ${what}`);
  switch (kind) {
    case 'int16':
    case 'int32':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('is not an integer');
      if (value < -RANGE[kind] || value >= RANGE[kind]) throw bad('is out of range');
      return value;
    case 'int64':
      if (typeof value === 'string' && INT64.test(value)) return value;
      if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
      throw bad('is not a whole number');
    case 'float32':
    case 'float64':
      if (typeof value !== 'number') throw bad('is not a number');
      // SQLite would store NaN as NULL: keep the non-finite values as their names.
      return Number.isFinite(value) ? value : String(value);
    case 'bool':
      if (typeof value !== 'boolean') throw bad('is not a boolean');
      return value ? 1 : 0;
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw bad('is not bytes');
      return value;
    case 'array':
      if (!Array.isArray(value)) throw bad('is not an array');
      return JSON.stringify(value, (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v));
    default:
      if (typeof value !== 'string') throw bad('is not text');
      return value;
  }
}

function show(value: Value): string {
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
