/**
 * A snapshot chunk's records from its values' JSON text (`JsonRows`, written by the source's
 * `createJsonRowWriter`), for `message_format: json` without a schema registry: the very
 * framed batch (encoded.ts) the worker encoder gives for the chunk's `read` events — topic,
 * key, envelope, headers, size, byte for byte — without rows, events or strings per record.
 *
 * The envelope's `after` is the row as `jsonEnvelopeText` writes it: each value's JSON text
 * is what `rowToJson` gives for it (json-values.ts: int64 and decimal as strings, bytes as
 * base64, float specials and `-0` as words), which is `jsonValueText`'s form. The key is the
 * JSON array of the key columns' canonical values (formats/key.ts); a key column whose
 * canonical text differs from its JSON text (decimal, float, array) leaves the table to the
 * worker encoder, and so does a column name `JSON.stringify` would move ahead of the others
 * (an array index) or treats apart (`__proto__`, `toJSON`), and a chunk whose int64 key text
 * is not already canonical. Those return undefined: core decodes the chunk and encodes its
 * events as before.
 */
import {
  copyRange,
  type EncodedBatch,
  type JsonChunkEncoder,
  type JsonRows,
  type Position,
  putBytes,
  qualifiedName,
  type TableSchema,
} from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { keyColumnsFor, topicFor } from './routing.js';
import { HEADER_CHUNK, HEADER_OP, HEADER_POSITION, HEADER_TABLE } from './sink.js';

const MAGIC = 0x314b534e; // "NSK1", as encoded.ts
const NONE = 0xffffffff;
/** The record's flags: a snapshot row (`READ`), with a key and a value and no key text of its own. */
const READ = 1;
const STRING = 1;

/**
 * How a key column's JSON text becomes its canonical key text: `Same`, the same text
 * (integers, strings, booleans, bytes, null); `Unquoted`, int64's digits inside the quotes,
 * when they are canonical (no leading zero, not `-0`).
 */
const KeyText = { Same: 0, Unquoted: 1 } as const;
type KeyText = (typeof KeyText)[keyof typeof KeyText];

interface Plan {
  topic: string;
  table: string;
  /** Index in the row of each key column, in key order, and how its text is written. */
  keys: number[];
  keyTexts: KeyText[];
  /** `{"_ns_op":"READ","_ns_table":<table>,"_ns_committed_at":null,"_ns_lsn":` */
  head: Uint8Array;
  /** Per column: `"name":`, with `{` before the first and `,` before the others. */
  names: Uint8Array[];
}

const UNORDERED = /^(0|[1-9]\d*)$/;
const bytesOf = (text: string) => Uint8Array.from(Buffer.from(text, 'utf8'));

function newPlan(table: TableSchema, config: KafkaSinkConfig): Plan | null {
  const names = table.columns.map((c) => c.name);
  for (const name of names)
    if (typeof name !== 'string' || UNORDERED.test(name) || name === '__proto__' || name === 'toJSON') return null;
  const keyColumns = keyColumnsFor(table, config);
  // Without key columns the record has no key and names the row by its event key; left to the worker encoder.
  if (keyColumns.length === 0) return null;
  const keys: number[] = [];
  const keyTexts: KeyText[] = [];
  for (const name of keyColumns) {
    const index = names.indexOf(name);
    if (index < 0) return null;
    const kind = table.columns[index]!.type.kind;
    if (kind === 'int64') keyTexts.push(KeyText.Unquoted);
    else if (kind === 'decimal' || kind === 'float32' || kind === 'float64' || kind === 'array') return null;
    else keyTexts.push(KeyText.Same);
    keys.push(index);
  }
  const qualified = qualifiedName(table);
  return {
    topic: topicFor(table, config),
    table: qualified,
    keys,
    keyTexts,
    head: bytesOf(`{"_ns_op":"READ","_ns_table":${JSON.stringify(qualified)},"_ns_committed_at":null,"_ns_lsn":`),
    names: names.map((n, i) => bytesOf(`${i === 0 ? '{' : ','}${JSON.stringify(n)}:`)),
  };
}

/** The encoder of chunks for a sink's config, or undefined when its records are not plain JSON. */
export function jsonRowsEncoder(config: KafkaSinkConfig): JsonChunkEncoder | undefined {
  if (config.messageFormat !== 'json' || config.schemaRegistry !== undefined) return undefined;
  const plans = new WeakMap<TableSchema, Plan | null>();
  return (table, rows, position, chunk, keep) => {
    let plan = plans.get(table);
    if (plan === undefined) {
      plan = newPlan(table, config);
      plans.set(table, plan);
    }
    if (plan === null || rows.columns !== table.columns.length) return undefined;
    return encode(plan, rows, position, chunk, keep);
  };
}

function encode(
  plan: Plan,
  rows: JsonRows,
  position: Position,
  chunk: string | undefined,
  keep: Uint8Array | undefined,
): EncodedBatch | undefined {
  const { ends, columns } = rows;
  const text = Buffer.isBuffer(rows.text)
    ? rows.text
    : Buffer.from(rows.text.buffer, rows.text.byteOffset, rows.text.byteLength);
  const start = (v: number) => (v === 0 ? 0 : ends[v - 1]!);
  const { keys, keyTexts, names, head } = plan;
  // The strings of the frame, in the order `frameRecords` meets them: topic, table, position,
  // chunk, then the headers' names and values.
  const headers: [string, string][] = [
    [HEADER_TABLE, plan.table],
    [HEADER_OP, 'read'],
    [HEADER_POSITION, position],
  ];
  if (chunk !== undefined) headers.push([HEADER_CHUNK, chunk]);
  const strings = new Map<string, number>();
  const intern = (s: string) => {
    if (!strings.has(s)) strings.set(s, strings.size);
  };
  let records = 0;
  for (let r = 0; r < rows.rows; r++) if (keep === undefined || keep[r] === 1) records++;
  if (records > 0) {
    intern(plan.topic);
    intern(plan.table);
    intern(position);
    if (chunk !== undefined) intern(chunk);
    for (const [name, value] of headers) {
      intern(name);
      intern(value);
    }
  }
  let headersSize = 0;
  for (const [name, value] of headers) headersSize += 8 + name.length + Buffer.byteLength(value);
  // The envelope up to the row: `{"_ns_op":"READ",…,"_ns_lsn":"<position>","before":null,"after":`.
  const envelope = Buffer.concat([head, bytesOf(`${JSON.stringify(position)},"before":null,"after":`)]);
  let fixedValue = envelope.length + 2; // and the two closing braces
  for (const n of names) fixedValue += n.length;
  // Each record: index, topic, table, position, chunk (20), flags (1), key length + key,
  // value length + value, key text length (0), size (4), header count (2) and headers (9 each).
  const perRecord = 20 + 1 + 4 + 4 + 4 + 4 + 2 + headers.length * 9;
  let total = 12;
  for (const s of strings.keys()) total += 4 + Buffer.byteLength(s);
  for (let r = 0; r < rows.rows; r++) {
    if (keep !== undefined && keep[r] !== 1) continue;
    const base = r * columns;
    const key = keyLength(plan, text, ends, base);
    if (key < 0) return undefined;
    total += perRecord + key + fixedValue + (ends[base + columns - 1]! - start(base));
  }
  const out = Buffer.allocUnsafeSlow(total);
  let at = 0;
  const u32 = (n: number) => {
    out.writeUInt32LE(n, at);
    at += 4;
  };
  u32(MAGIC);
  u32(strings.size);
  for (const s of strings.keys()) {
    const length = out.write(s, at + 4, 'utf8');
    u32(length);
    at += length;
  }
  u32(records);
  const topic = strings.get(plan.topic)!;
  const tableString = strings.get(plan.table)!;
  const positionString = strings.get(position)!;
  const chunkString = chunk === undefined ? NONE : strings.get(chunk)!;
  const headerStrings = headers.map(([name, value]) => [strings.get(name)!, strings.get(value)!] as const);
  let size = 0;
  let index = 0;
  for (let r = 0; r < rows.rows; r++) {
    if (keep !== undefined && keep[r] !== 1) continue;
    const base = r * columns;
    u32(index++);
    u32(topic);
    u32(tableString);
    u32(positionString);
    u32(chunkString);
    out[at++] = READ;
    // The key: `[v1,v2]`.
    const keyAt = at;
    at += 4;
    out[at++] = 91;
    for (let j = 0; j < keys.length; j++) {
      if (j > 0) out[at++] = 44;
      const v = base + keys[j]!;
      let from = start(v);
      let to = ends[v]!;
      if (keyTexts[j] === KeyText.Unquoted && text[from] === 34) {
        from++;
        to--;
      }
      at = copyRange(out, at, text, from, to);
    }
    out[at++] = 93;
    const keyBytes = at - keyAt - 4;
    out.writeUInt32LE(keyBytes, keyAt);
    // The value: the envelope.
    const valueAt = at;
    at += 4;
    at = putBytes(out, at, envelope);
    for (let c = 0; c < columns; c++) {
      at = putBytes(out, at, names[c]!);
      at = copyRange(out, at, text, start(base + c), ends[base + c]!);
    }
    out[at++] = 125;
    out[at++] = 125;
    const valueLength = at - valueAt - 4;
    out.writeUInt32LE(valueLength, valueAt);
    u32(0); // no key text: the key's own bytes name the record
    const recordSize = 24 + keyBytes + valueLength + headersSize;
    size += recordSize;
    u32(recordSize);
    out.writeUInt16LE(headers.length, at);
    at += 2;
    for (const [name, value] of headerStrings) {
      u32(name);
      out[at++] = STRING;
      u32(value);
    }
  }
  if (at !== total) throw new Error(`kafka framing: wrote ${at} bytes, expected ${total}`);
  return { bytes: out.buffer as ArrayBuffer, records, size };
}

/** The key's length (`[`, the values, commas, `]`), or -1 when an int64 key text is not canonical. */
function keyLength(plan: Plan, text: Uint8Array, ends: Uint32Array, base: number): number {
  let length = 1 + plan.keys.length;
  for (let j = 0; j < plan.keys.length; j++) {
    const v = base + plan.keys[j]!;
    const from = v === 0 ? 0 : ends[v - 1]!;
    const to = ends[v]!;
    if (plan.keyTexts[j] === KeyText.Unquoted && text[from] === 34) {
      if (!canonicalDigits(text, from + 1, to - 1)) return -1;
      length += to - from - 2;
    } else length += to - from;
  }
  return length;
}

/** `0` or `-`? and digits without a leading zero: what `numberText` keeps as it is. */
function canonicalDigits(text: Uint8Array, from: number, to: number): boolean {
  const first = text[from] === 45 ? from + 1 : from;
  if (first >= to) return false;
  for (let k = first; k < to; k++) if (text[k]! < 48 || text[k]! > 57) return false;
  return text[first] !== 48 || (to - first === 1 && first === from);
}
