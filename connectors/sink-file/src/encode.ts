import type { ChangeEvent, Row } from '@nanosync/core';

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
  for (const column in row) if (Object.hasOwn(row, column)) out[column] = toJsonValue(row[column]);
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

/** The event as one line of JSON, newline included. */
export function toJsonLine(event: ChangeEvent): string {
  return `${JSON.stringify(toRecord(event))}\n`;
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
