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
  type TableSchema,
} from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { NONE, putU32, READ, STRING } from './encoded.js';
import {
  asBuffer,
  bytesOf,
  FrameStrings,
  keyLength,
  planCache,
  putKey,
  type TablePlan,
  tablePlan,
} from './json-plan.js';
import { HEADER_CHUNK, HEADER_OP, HEADER_POSITION, HEADER_TABLE } from './sink.js';

interface Plan extends TablePlan {
  /** `{"_ns_op":"READ","_ns_table":<table>,"_ns_committed_at":null,"_ns_lsn":` */
  head: Uint8Array;
  /** Per column: `"name":`, with `{` before the first and `,` before the others. */
  labels: Uint8Array[];
}

function newPlan(table: TableSchema, config: KafkaSinkConfig): Plan | null {
  const plan = tablePlan(table, config);
  if (plan === null) return null;
  return {
    ...plan,
    head: bytesOf(`{"_ns_op":"READ","_ns_table":${JSON.stringify(plan.table)},"_ns_committed_at":null,"_ns_lsn":`),
    labels: plan.names.map((n, i) => bytesOf(`${i === 0 ? '{' : ','}${JSON.stringify(n)}:`)),
  };
}

/** The encoder of chunks for a sink's config, or undefined when its records are not plain JSON. */
export function jsonRowsEncoder(config: KafkaSinkConfig): JsonChunkEncoder | undefined {
  if (config.messageFormat !== 'json' || config.schemaRegistry !== undefined) return undefined;
  const planOf = planCache((table) => newPlan(table, config));
  return (table, rows, position, chunk, keep) => {
    const plan = planOf(table);
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
  const { ends, columns, starts } = rows;
  const text = asBuffer(rows.text);
  // Rows as objects: a row is copied whole, from its opening brace to its closing one.
  const objects = starts !== undefined && columns > 0;
  const rowStart = objects
    ? (base: number) => (base === 0 ? 0 : ends[base - 1]! + 1)
    : (base: number) => (base === 0 ? 0 : ends[base - 1]!);
  const { labels, head } = plan;
  // The strings of the frame, in the order `frameRecords` meets them: topic, table, position,
  // chunk, then the headers' names and values.
  const headers: [string, string][] = [
    [HEADER_TABLE, plan.table],
    [HEADER_OP, 'read'],
    [HEADER_POSITION, position],
  ];
  if (chunk !== undefined) headers.push([HEADER_CHUNK, chunk]);
  const strings = new FrameStrings();
  let records = 0;
  for (let r = 0; r < rows.rows; r++) if (keep === undefined || keep[r] === 1) records++;
  if (records > 0) {
    strings.intern(plan.topic);
    strings.intern(plan.table);
    strings.intern(position);
    if (chunk !== undefined) strings.intern(chunk);
    for (const [name, value] of headers) {
      strings.intern(name);
      strings.intern(value);
    }
  }
  let headersSize = 0;
  for (const [name, value] of headers) headersSize += 8 + name.length + Buffer.byteLength(value);
  // The envelope up to the row: `{"_ns_op":"READ",…,"_ns_lsn":"<position>","before":null,"after":`.
  const envelope = Buffer.concat([head, bytesOf(`${JSON.stringify(position)},"before":null,"after":`)]);
  // The two closing braces (the row's own is in its object's bytes).
  let fixedValue = envelope.length + (objects ? 1 : 2);
  if (!objects) for (const n of labels) fixedValue += n.length;
  // Each record: index, topic, table, position, chunk (20), flags (1), key length + key,
  // value length + value, key text length (0), size (4), header count (2) and headers (9 each).
  const perRecord = 20 + 1 + 4 + 4 + 4 + 4 + 2 + headers.length * 9;
  let total = strings.headBytes;
  for (let r = 0; r < rows.rows; r++) {
    if (keep !== undefined && keep[r] !== 1) continue;
    const base = r * columns;
    const key = keyLength(plan, text, ends, base, -1, starts);
    if (key < 0) return undefined;
    total += perRecord + key + fixedValue + (ends[base + columns - 1]! + (objects ? 1 : 0) - rowStart(base));
  }
  const out = Buffer.allocUnsafeSlow(total);
  let at = strings.putHead(out, records);
  const u32 = (n: number) => {
    at = putU32(out, at, n);
  };
  const topic = strings.number(plan.topic);
  const tableString = strings.number(plan.table);
  const positionString = strings.number(position);
  const chunkString = chunk === undefined ? NONE : strings.number(chunk);
  const headerStrings = headers.map(([name, value]) => [strings.number(name), strings.number(value)] as const);
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
    at = putKey(out, at + 4, plan, text, ends, base, -1, starts);
    const keyBytes = at - keyAt - 4;
    putU32(out, keyAt, keyBytes);
    // The value: the envelope.
    const valueAt = at;
    at += 4;
    at = putBytes(out, at, envelope);
    if (objects) at = copyRange(out, at, text, rowStart(base), ends[base + columns - 1]! + 1);
    else {
      for (let c = 0; c < columns; c++) {
        at = putBytes(out, at, labels[c]!);
        at = copyRange(out, at, text, c === 0 ? rowStart(base) : ends[base + c - 1]!, ends[base + c]!);
      }
      out[at++] = 125;
    }
    out[at++] = 125;
    const valueLength = at - valueAt - 4;
    putU32(out, valueAt, valueLength);
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
