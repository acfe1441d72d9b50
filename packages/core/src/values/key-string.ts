import type { Row, Value } from '../model.js';

/**
 * A key's values as one string, equal for equal values whatever path (stream or snapshot,
 * main thread or worker) decoded them. The concurrent snapshot's merge matches chunk rows
 * against the stream's changes by it, and a source reading a chunk raw
 * (`ReadPartitionChunkOptions.raw`) gives each row's key as this string.
 */
export function keyString(keyColumns: readonly string[], row: Row): string {
  if (keyColumns.length === 1) return valueString(row[keyColumns[0]!] ?? null);
  let s = '';
  for (const k of keyColumns) s += `${valueString(row[k] ?? null)}\u0000`;
  return s;
}

/** A row of a table without key columns known by all of its values, whatever order its columns come in. */
export function rowIdentity(row: Row): string {
  return keyString(Object.keys(row).sort(), row);
}

function valueString(v: Value): string {
  if (v === null) return 'n';
  switch (typeof v) {
    case 'string':
      return `s${v}`;
    case 'number':
      return `d${v}`;
    case 'boolean':
      return v ? 'T' : 'F';
    default:
      if (v instanceof Uint8Array) return `b${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
      return `a${JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x))}`;
  }
}
