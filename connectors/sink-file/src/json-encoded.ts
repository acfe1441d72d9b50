/**
 * A snapshot chunk's lines from its values' JSON text (`JsonRows`, written by the source's
 * `createJsonRowWriter`), framed as `encodeLines` frames them (encoded.ts): the very bytes
 * `encodeLines` gives for the chunk's `read` events, without rows, events or strings. Used by
 * the worker module's `createJsonEncoder`.
 *
 * `jsonValueText` and this sink's `toJsonValue` write every value alike but a float `-0`
 * (`"-0"` there, `0` here), and JSON.stringify writes an object's keys in order but those
 * that look like array indexes, which come first, ascending. So a chunk holding a `-0`, or a
 * table with such a column name (or `__proto__`, `toJSON`), is left to `encodeLines`
 * (undefined).
 */
import { copyRange, type EncodedBatch, type JsonRows, type Position, putBytes, type TableSchema } from '@nanosync/core';

interface Plan {
  /** `{"op":"read","table":"<schema.table>","key":{` */
  head: Uint8Array;
  /** Per key column: its index in the row, and `"name":` (with a leading comma after the first). */
  keyColumns: number[];
  keyNames: Uint8Array[];
  /** `},"after":{` */
  after: Uint8Array;
  /** `},"after":`, before a row written as an object (`JsonRows.starts`). */
  afterObject: Uint8Array;
  /** Per column: `"name":`, with a leading comma after the first. */
  names: Uint8Array[];
  schema: Buffer;
  name: Buffer;
}

const plans = new WeakMap<TableSchema, Plan | null>();
const bytesOf = (text: string) => Uint8Array.from(Buffer.from(text, 'utf8'));
/** A name JSON.stringify would move ahead of the others (an array index), or one it treats apart. */
const UNORDERED = /^(0|[1-9]\d*)$/;

function planOf(table: TableSchema): Plan | undefined {
  let plan = plans.get(table);
  if (plan === undefined) {
    plan = newPlan(table);
    plans.set(table, plan);
  }
  return plan ?? undefined;
}

function newPlan(table: TableSchema): Plan | null {
  const names = table.columns.map((c) => c.name);
  for (const name of names)
    if (typeof name !== 'string' || UNORDERED.test(name) || name === '__proto__' || name === 'toJSON') return null;
  const keyColumns = table.keyColumns.map((k) => names.indexOf(k));
  if (keyColumns.some((i) => i < 0) || new Set(table.keyColumns).size !== table.keyColumns.length) return null;
  return {
    head: bytesOf(`{"op":"read","table":${JSON.stringify(`${table.schema}.${table.name}`)},"key":{`),
    keyColumns,
    keyNames: table.keyColumns.map((k, i) => bytesOf(`${i === 0 ? '' : ','}${JSON.stringify(k)}:`)),
    after: bytesOf('},"after":{'),
    afterObject: bytesOf('},"after":'),
    names: names.map((n, i) => bytesOf(`${i === 0 ? '' : ','}${JSON.stringify(n)}:`)),
    schema: Buffer.from(table.schema, 'utf8'),
    name: Buffer.from(table.name, 'utf8'),
  };
}

/** The framed lines of the chunk's kept rows, or undefined where `encodeLines` must write them. */
export function encodeJsonRows(
  table: TableSchema,
  rows: JsonRows,
  position: Position,
  chunk: string | undefined,
  keep: Uint8Array | undefined,
): EncodedBatch | undefined {
  const plan = planOf(table);
  if (plan === undefined || rows.negativeZero || rows.columns !== table.columns.length) return undefined;
  const { head, keyColumns, keyNames, after, afterObject, names } = plan;
  const { ends, columns, starts } = rows;
  // Rows as objects: a row is copied whole, from its opening brace to its closing one.
  const objects = starts !== undefined && columns > 0;
  const tail = bytesOf(
    `${objects ? '' : '}'},"position":${JSON.stringify(position)}${chunk === undefined ? '' : `,"chunk":${JSON.stringify(chunk)}`}}\n`,
  );
  const text = Buffer.isBuffer(rows.text)
    ? rows.text
    : Buffer.from(rows.text.buffer, rows.text.byteOffset, rows.text.byteLength);
  const start = objects ? (v: number) => starts[v]! : (v: number) => (v === 0 ? 0 : ends[v - 1]!);
  const rowStart = objects ? (base: number) => (base === 0 ? 0 : ends[base - 1]! + 1) : start;
  // The row's own bytes: its values, or its object with the closing brace.
  const rowEnd = objects ? 1 : 0;
  let fixed = head.length + (objects ? afterObject.length : after.length) + tail.length;
  for (const k of keyNames) fixed += k.length;
  if (!objects) for (const n of names) fixed += n.length;
  let lines = 0;
  let size = 0;
  for (let r = 0; r < rows.rows; r++) {
    if (keep !== undefined && keep[r] !== 1) continue;
    const base = r * columns;
    let line = fixed + ends[base + columns - 1]! + rowEnd - rowStart(base);
    for (const c of keyColumns) line += ends[base + c]! - start(base + c);
    size += line;
    lines++;
  }
  if (lines === 0) {
    const out = Buffer.allocUnsafeSlow(4);
    out.writeUInt32LE(0, 0);
    return { bytes: out.buffer as ArrayBuffer, records: 0, size: 0 };
  }
  const total = 4 + 16 + plan.schema.length + plan.name.length + size;
  // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so it can be moved.
  const out = Buffer.allocUnsafeSlow(total);
  out.writeUInt32LE(1, 0);
  let at = 4;
  out.writeUInt32LE(plan.schema.length, at);
  at = putBytes(out, at + 4, plan.schema);
  out.writeUInt32LE(plan.name.length, at);
  at = putBytes(out, at + 4, plan.name);
  out.writeUInt32LE(lines, at);
  out.writeUInt32LE(size, at + 4);
  at += 8;
  for (let r = 0; r < rows.rows; r++) {
    if (keep !== undefined && keep[r] !== 1) continue;
    const base = r * columns;
    at = putBytes(out, at, head);
    for (let j = 0; j < keyColumns.length; j++) {
      at = putBytes(out, at, keyNames[j]!);
      const v = base + keyColumns[j]!;
      at = copyRange(out, at, text, start(v), ends[v]!);
    }
    if (objects) {
      at = putBytes(out, at, afterObject);
      at = copyRange(out, at, text, rowStart(base), ends[base + columns - 1]! + 1);
    } else {
      at = putBytes(out, at, after);
      for (let c = 0; c < columns; c++) {
        at = putBytes(out, at, names[c]!);
        at = copyRange(out, at, text, start(base + c), ends[base + c]!);
      }
    }
    at = putBytes(out, at, tail);
  }
  if (at !== total) throw new Error(`file sink framing: wrote ${at} bytes, expected ${total}`);
  return { bytes: out.buffer as ArrayBuffer, records: lines, size };
}
