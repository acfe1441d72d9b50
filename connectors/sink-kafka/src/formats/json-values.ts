import type { LogicalType, Row, TableSchema, Value } from '@nanosync/core';

/**
 * Canonical values ⇄ plain JSON, without losing anything:
 * int64 and decimal stay strings, bytes become base64, and the float values JSON has no
 * literal for (`NaN`, `Infinity`, `-Infinity`, and `-0`, which `JSON.stringify` would
 * print as `0`) become those words as strings. Everything else is already a JSON string,
 * number or boolean. `json` columns keep the document as text so no digit is re-rounded.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Thrown for a value that does not fit its column's logical type; the codec adds table and key. */
export class ValueError extends Error {
  constructor(
    readonly column: string,
    message: string,
  ) {
    super(message);
  }
}

const INT64 = /^-?\d+$/;

export function int64Text(value: unknown, column: string): string {
  if (typeof value === 'string' && INT64.test(value)) return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  throw new ValueError(column, `int64 value ${describe(value)} is not an integer string`);
}

export function floatToJson(value: number): number | string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return 'Infinity';
  if (value === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (Object.is(value, -0)) return '-0';
  return value;
}

export function floatFromJson(value: JsonValue, column: string): number {
  if (typeof value === 'number') return value;
  switch (value) {
    case 'NaN':
      return Number.NaN;
    case 'Infinity':
      return Number.POSITIVE_INFINITY;
    case '-Infinity':
      return Number.NEGATIVE_INFINITY;
    case '-0':
      return -0;
  }
  throw new ValueError(column, `float value ${describe(value)} is not a number`);
}

export function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return `${text.length > 48 ? `${text.slice(0, 48)}…` : text} (${value === null ? 'null' : typeof value})`;
}

function expect(ok: boolean, column: string, type: LogicalType, value: unknown): void {
  if (!ok) throw new ValueError(column, `value ${describe(value)} does not fit logical type ${type.kind}`);
}

export function toJsonValue(type: LogicalType, value: Value | undefined, column: string): JsonValue {
  if (value === null || value === undefined) return null;
  switch (type.kind) {
    case 'int16':
    case 'int32':
      expect(typeof value === 'number' && Number.isInteger(value), column, type, value);
      return value as number;
    case 'int64':
      return int64Text(value, column);
    case 'float32':
    case 'float64':
      expect(typeof value === 'number', column, type, value);
      return floatToJson(value as number);
    case 'bool':
      expect(typeof value === 'boolean', column, type, value);
      return value as boolean;
    case 'bytes':
      expect(value instanceof Uint8Array, column, type, value);
      return Buffer.from(
        (value as Uint8Array).buffer,
        (value as Uint8Array).byteOffset,
        (value as Uint8Array).byteLength,
      ).toString('base64');
    case 'array':
      expect(Array.isArray(value), column, type, value);
      return (value as Value[]).map((item) => toJsonValue(itemType(type, item), item, column));
    default:
      expect(typeof value === 'string', column, type, value);
      return value as string;
  }
}

export function fromJsonValue(type: LogicalType, value: JsonValue | undefined, column: string): Value {
  if (value === null || value === undefined) return null;
  switch (type.kind) {
    case 'float32':
    case 'float64':
      return floatFromJson(value, column);
    case 'bytes':
      if (typeof value !== 'string') throw new ValueError(column, `bytes value ${describe(value)} is not base64 text`);
      return new Uint8Array(Buffer.from(value, 'base64'));
    case 'array':
      if (!Array.isArray(value)) throw new ValueError(column, `array value ${describe(value)} is not an array`);
      return value.map((item) => fromJsonValue(itemType(type, item), item, column));
    default:
      if (typeof value === 'object') throw new ValueError(column, `value ${describe(value)} is not a scalar`);
      return value;
  }
}

/**
 * Multi-dimensional arrays arrive as nested JS arrays under a one-level `array` type (a
 * PostgreSQL `int4[]` does not know its dimensions), so an item that is itself an array
 * is read with the same array type.
 */
export function itemType(type: LogicalType & { kind: 'array' }, item: unknown): LogicalType {
  return Array.isArray(item) && type.items.kind !== 'array' ? type : type.items;
}

/** Row → JSON object with the table's column order; columns absent from the row stay absent. */
export function rowToJson(table: TableSchema, row: Row | undefined): Record<string, JsonValue> | null {
  if (!row) return null;
  const out: Record<string, JsonValue> = {};
  for (const column of table.columns) {
    if (Object.hasOwn(row, column.name))
      setColumn(out, column.name, toJsonValue(column.type, row[column.name], column.name));
  }
  return out;
}

export function rowFromJson(table: TableSchema | undefined, json: JsonValue | undefined): Row | undefined {
  if (json === null || json === undefined || typeof json !== 'object' || Array.isArray(json)) return undefined;
  const types = new Map(table?.columns.map((c) => [c.name, c.type]));
  const row: Row = {};
  for (const [name, value] of Object.entries(json)) {
    const type = types.get(name);
    setColumn(row, name, type ? fromJsonValue(type, value, name) : (value as Value));
  }
  return row;
}

/** Assign a column even when its name is `__proto__`, which plain assignment would not store. */
export function setColumn<T>(row: Record<string, T>, name: string, value: NoInfer<T>): void {
  if (name === '__proto__')
    Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  else row[name] = value;
}
