/**
 * Raw snapshot chunks (`readPartitionChunk` with `raw`): the COPY text lines of
 * `SELECT ctid, <columns>`, each ending in LF, in one buffer. The worker decodes them with
 * {@link rawRowsDecoder} into exactly the rows the decoded read gives; the main thread only
 * computes each row's key from the key columns' fields when core asks ({@link rawRowKeys}).
 */
import { keyString, type Row, rowIdentity, type TableSchema } from '@nanosync/core';
import type { PgColumn } from '../describe.js';
import { decodeValue } from '../types/index.js';
import { parseCopyTextRow, unescapeCopyField } from './copy-out.js';
import { rowDecoder } from './read-partition.js';
import { valueError } from '../errors.js';

/** What `decoderSetup(table)` hands a worker: the catalog details of the table's columns, in `table.columns` order. */
export interface RawDecoderSetup {
  columns: PgColumn[];
}

function asBuffer(raw: Uint8Array): Buffer {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
}

/** Calls `each(line)` for every line of `raw` (without its LF). */
function forEachLine(raw: Uint8Array, each: (bytes: Buffer, start: number, end: number) => void): void {
  const bytes = asBuffer(raw);
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(10, start);
    if (end < 0) end = bytes.length;
    each(bytes, start, end);
    start = end + 1;
  }
}

/**
 * The decoder of raw chunks of one table: the rows `readPartitionChunk` without `raw` would
 * give, value for value, and the same error for a value that cannot be decoded.
 */
export function rawRowsDecoder(table: TableSchema, setup: RawDecoderSetup): (raw: Uint8Array) => Row[] {
  const columns = setup.columns;
  if (!Array.isArray(columns) || columns.length !== table.columns.length)
    throw new Error(
      `raw row decoder for ${table.schema}.${table.name}: the setup has ${Array.isArray(columns) ? columns.length : 'no'} columns, the table ${table.columns.length}`,
    );
  const decode = rowDecoder({ table, columns, keyColumns: table.keyColumns });
  const width = columns.length + 1;
  return (raw) => {
    const rows: Row[] = [];
    forEachLine(raw, (bytes, start, end) => {
      // As the decoded read does: the ctid (first field) is skipped, not parsed.
      const line = bytes.toString('utf8', start, end);
      const tab = line.indexOf('\t');
      rows.push(
        decode(tab < 0 ? parseCopyTextRow(line, width).slice(1) : parseCopyTextRow(line.slice(tab + 1), width - 1)),
      );
    });
    return rows;
  };
}

/**
 * Each row's key in a raw chunk, as `keyString(table.keyColumns, row)` gives it for the
 * decoded row (`rowIdentity(row)` for a table without key columns, which decodes whole rows).
 * Only the key columns' fields are decoded.
 */
export function rawRowKeys(raw: Uint8Array, table: TableSchema, columns: PgColumn[]): string[] {
  const keys: string[] = [];
  const width = columns.length + 1;
  if (table.keyColumns.length === 0) {
    const decode = rowDecoder({ table, columns, keyColumns: [] });
    forEachLine(raw, (bytes, start, end) => {
      keys.push(rowIdentity(decode(parseCopyTextRow(bytes.toString('utf8', start, end), width).slice(1))));
    });
    return keys;
  }
  // Field numbers in the line (0 is the ctid) of the key columns, and the last one needed.
  const wanted = table.keyColumns.map((name) => {
    const index = columns.findIndex((c) => c.name === name);
    if (index < 0) throw new Error(`key column "${name}" is not a column of ${table.schema}.${table.name}`);
    return index;
  });
  const lastField = Math.max(...wanted) + 1;
  // Line field number → slot in `texts` (-1: not a key column).
  const slotOf = new Int32Array(lastField + 1).fill(-1);
  wanted.forEach((index, i) => {
    slotOf[index + 1] = i;
  });
  const texts: (string | null)[] = new Array(wanted.length);
  // One object for every row: keyString only reads the key columns of it.
  const key: Row = {};
  forEachLine(raw, (bytes, start, end) => {
    let field = 0;
    let from = start;
    while (field <= lastField) {
      let to = bytes.indexOf(9, from);
      if (to < 0 || to > end) to = end;
      const slot = slotOf[field]!;
      if (slot >= 0) {
        const text = bytes.toString('utf8', from, to);
        texts[slot] = text === '\\N' ? null : text.includes('\\') ? unescapeCopyField(text) : text;
      }
      if (to === end && field < lastField)
        throw new Error(`COPY row has ${field + 1} columns, expected at least ${lastField + 1}`);
      from = to + 1;
      field++;
    }
    for (let i = 0; i < wanted.length; i++) {
      const column = columns[wanted[i]!]!;
      const text = texts[i];
      if (text === null || text === undefined) key[column.name] = null;
      else {
        try {
          key[column.name] = decodeValue(column.type, text);
        } catch (err) {
          throw valueError(err, {
            table: `${table.schema}.${table.name}`,
            column: column.name,
            key: table.keyColumns.map((k, j) => `${k}=${texts[j] ?? 'NULL'}`).join(','),
          });
        }
      }
    }
    keys.push(keyString(table.keyColumns, key));
  });
  return keys;
}
