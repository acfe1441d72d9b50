/**
 * `JsonRows` (the contract's values of a chunk as JSON text) rewritten as the contract's rows
 * written as objects (`JsonRows.starts`): for the tests of a sink's encoder from JSON text,
 * which must give the same bytes for both forms. Written from the contract's description, not
 * from any source's writer, so a writer and a sink that both got it wrong would still disagree
 * with it.
 */
import type { JsonRows } from '@nanosync/core';

/** `rows` (values back to back, no `starts`) as objects of the column `names`, in column order. */
export function jsonRowsAsObjects(rows: JsonRows, names: readonly string[]): JsonRows {
  if (rows.starts !== undefined) throw new Error('jsonRowsAsObjects: the rows are objects already');
  if (names.length !== rows.columns || rows.columns === 0)
    throw new Error(
      `jsonRowsAsObjects: ${names.length} names for ${rows.columns} columns (a row of none is no object here)`,
    );
  const text = Buffer.from(rows.text.buffer, rows.text.byteOffset, rows.text.byteLength);
  const parts: Buffer[] = [];
  const starts = new Uint32Array(rows.rows * rows.columns);
  const ends = new Uint32Array(rows.rows * rows.columns);
  let at = 0;
  for (let r = 0; r < rows.rows; r++) {
    for (let c = 0; c < rows.columns; c++) {
      const v = r * rows.columns + c;
      const label = Buffer.from(`${c === 0 ? '{' : ','}${JSON.stringify(names[c])}:`, 'utf8');
      const value = text.subarray(v === 0 ? 0 : rows.ends[v - 1], rows.ends[v]);
      parts.push(label, value);
      starts[v] = at + label.length;
      at += label.length + value.length;
      ends[v] = at;
    }
    parts.push(Buffer.from('}'));
    at++;
  }
  return { ...rows, text: Buffer.concat(parts), ends, starts };
}
