import { type ChangeEvent, type Row, setRowField, type Value } from '@nanosync/core';

/** A JSON value as it appears in a line of the file sink's output. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * One line of output: the change event with its table flattened to `schema.table`.
 * Fields the event does not carry (`before` on an insert, `commitTime` on a snapshot row)
 * are left out rather than written as null.
 */
export interface FileSinkRecord {
  op: ChangeEvent['op'];
  table: string;
  key: Record<string, JsonValue>;
  before?: Record<string, JsonValue>;
  after?: Record<string, JsonValue>;
  unchanged?: string[];
  position: string;
  commitTime?: string;
  /** Only on `truncate` (which has an empty key and no images): what the statement asked for. */
  truncate?: { cascade: boolean; restartIdentity: boolean };
  /** Only on snapshot events: the id of the chunk they were read in (the same when a chunk is read again after a crash). */
  chunk?: string;
}

/**
 * Map one column value onto JSON without losing anything:
 * - int64 and decimal already travel as strings and stay strings; a stray bigint becomes one too;
 * - bytes become base64 text;
 * - NaN and the infinities, which JSON cannot express as numbers, become "NaN", "Infinity", "-Infinity".
 */
export function toJsonValue(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'bigint':
      return value.toString();
    case 'object':
      if (value instanceof Uint8Array)
        return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
      if (Array.isArray(value)) return value.map(toJsonValue);
      if (value instanceof Date) return value.toISOString();
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonValue(v)]));
    default:
      return String(value);
  }
}

function rowToJson(row: Row): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  // Through setRowField: a column named `__proto__` is kept as a column, not taken for the prototype.
  for (const column in row)
    if (Object.hasOwn(row, column)) setRowField(out as Row, column, toJsonValue(row[column]) as Value);
  return out;
}

export function toRecord(event: ChangeEvent): FileSinkRecord {
  // Built field by field in the order of FileSinkRecord (which is the order of the JSON line).
  const record = {
    op: event.op,
    table: `${event.table.schema}.${event.table.name}`,
    key: rowToJson(event.key),
  } as FileSinkRecord;
  if (event.before) record.before = rowToJson(event.before);
  if (event.after) record.after = rowToJson(event.after);
  if (event.unchanged && event.unchanged.length > 0) record.unchanged = [...event.unchanged];
  record.position = event.position;
  if (event.commitTime !== undefined) record.commitTime = event.commitTime;
  if (event.chunk !== undefined) record.chunk = event.chunk;
  if (event.op === 'truncate')
    record.truncate = {
      cascade: event.truncate?.cascade ?? false,
      restartIdentity: event.truncate?.restartIdentity ?? false,
    };
  return record;
}

/**
 * The event as one line of JSON, newline included: the same bytes as
 * `JSON.stringify(toRecord(event))`, without copying the key and the row images into new
 * objects first. A row whose every value is already its JSON form (strings, booleans, finite
 * numbers, null) is what `rowToJson` would copy it into, so it is stringified as it is; any
 * other row (bytes, bigints, arrays, dates, NaN and the infinities, `undefined`) is copied as
 * before. An event of an unexpected shape goes through `toRecord` whole.
 */
export function toJsonLine(event: ChangeEvent): string {
  const { op, position } = event;
  if (
    typeof op !== 'string' ||
    typeof position !== 'string' ||
    (event.commitTime !== undefined && typeof event.commitTime !== 'string') ||
    (event.chunk !== undefined && typeof event.chunk !== 'string')
  )
    return `${JSON.stringify(toRecord(event))}\n`;
  let line = `{"op":${JSON.stringify(op)},"table":${tableJson(event.table)},"key":${rowJson(event.key)}`;
  if (event.before) line += `,"before":${rowJson(event.before)}`;
  if (event.after) line += `,"after":${rowJson(event.after)}`;
  if (event.unchanged && event.unchanged.length > 0) line += `,"unchanged":${JSON.stringify([...event.unchanged])}`;
  line += `,"position":${JSON.stringify(position)}`;
  if (event.commitTime !== undefined) line += `,"commitTime":${JSON.stringify(event.commitTime)}`;
  if (event.chunk !== undefined) line += `,"chunk":${JSON.stringify(event.chunk)}`;
  if (op === 'truncate')
    line += `,"truncate":{"cascade":${JSON.stringify(event.truncate?.cascade ?? false)},"restartIdentity":${JSON.stringify(event.truncate?.restartIdentity ?? false)}}`;
  return `${line}}\n`;
}

/** `schema.table` as JSON, worked out once per table shape. */
const tableNames = new WeakMap<ChangeEvent['table'], string>();
function tableJson(table: ChangeEvent['table']): string {
  let text = tableNames.get(table);
  if (text === undefined) {
    text = JSON.stringify(`${table.schema}.${table.name}`);
    tableNames.set(table, text);
  }
  return text;
}

/** A row as `JSON.stringify(rowToJson(row))` writes it. */
function rowJson(row: Row): string {
  return JSON.stringify(isPlainObject(row) && isJsonForm(row) ? row : rowToJson(row));
}

/** An object `JSON.stringify` writes key by key: no array, no `toJSON` of a class (a `Date`). */
function isPlainObject(row: unknown): row is Row {
  if (typeof row !== 'object' || row === null) return false;
  const prototype = Object.getPrototypeOf(row);
  return prototype === Object.prototype || prototype === null;
}

/**
 * Whether `rowToJson` would give back the row's own keys in the same order with the same
 * values: no key is `toJSON`, and every value is a string, a boolean, a finite number or null. A key `for…in` lists that
 * is not the row's own (from a polluted `Object.prototype`) is left out by both.
 */
function isJsonForm(row: Row): boolean {
  for (const key in row) {
    const value = row[key];
    switch (typeof value) {
      case 'string':
      case 'boolean':
        break;
      case 'number':
        if (!Number.isFinite(value)) return false;
        break;
      case 'object':
        if (value !== null) return false;
        break;
      default:
        return false;
    }
    if (key === 'toJSON') return false;
  }
  return true;
}

/**
 * The file a table's events go to in directory mode: `<schema>.<table>.jsonl`. Characters
 * that would change the meaning of the name (path separators, `%`, and dots inside either
 * part, so `"a.b"."c"` and `"a"."b.c"` stay apart) and control characters are
 * percent-encoded; everything else, unicode included, is kept as is.
 */
export function tableFileName(table: { schema: string; name: string }): string {
  return `${encodeNamePart(table.schema)}.${encodeNamePart(table.name)}.jsonl`;
}

function encodeNamePart(part: string): string {
  return part.replace(
    /[%/\\.\u0000-\u001f\u007f]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
  );
}
