/**
 * S0's rows and the work done on them, shared by the main thread and the S0 workers: S1-shaped
 * rows as PostgreSQL's COPY text (what a snapshot read receives), decoded by the PostgreSQL
 * source's own row decoder, encoded by the Kafka sink's own key and message codecs, and
 * framed into one buffer per chunk that a null sink walks.
 *
 * Frame: per record `u32 key length, key, u32 value length, value, u32 position length,
 * position` (little-endian lengths); the main thread needs the positions to checkpoint.
 */
import type { ChangeEvent, Row, TableSchema } from '@nanosync/core';
import { codecFor, type MessageFormat, messageKey } from '@nanosync/sink-kafka';
import {
  builtinType,
  decodePgOutput,
  insertEvent,
  logicalTypeOf,
  type PgColumn,
  parseCopyTextRow,
  rowDecoder,
  type StreamRelation,
  sourceTypeName,
} from '@nanosync/source-postgres/internal';

/** The S1 table's 16 columns (`pg.ts`): name and type oid (int8 20, int4 23, float8 701, date 1082, varchar 1043). */
const S1_COLUMNS: readonly [string, number][] = [
  ['id', 20],
  ['b1', 20],
  ['b2', 20],
  ['i1', 23],
  ['f1', 701],
  ['f2', 701],
  ['f3', 701],
  ['f4', 701],
  ['d1', 1082],
  ['d2', 1082],
  ['d3', 1082],
  ['s1', 1043],
  ['s2', 1043],
  ['s3', 1043],
  ['s4', 1043],
  ['s5', 1043],
];

export interface S1Table {
  columns: PgColumn[];
  schema: TableSchema;
  decodeRow: (fields: (string | null)[]) => Row;
}

/**
 * The S1 table, or with `width` above 16 a wider one: S1's columns again and again (`b1_2`,
 * `b1_3`, …) up to `width` columns, whose rows are {@link widen}ed S1 rows.
 */
export function s1Table(width = S1_COLUMNS.length): S1Table {
  const columns: PgColumn[] = Array.from({ length: width }, (_, i) => {
    const [base, oid] = S1_COLUMNS[i % S1_COLUMNS.length]!;
    const round = Math.floor(i / S1_COLUMNS.length);
    const name = round === 0 ? base : `${base}_${round + 1}`;
    const type = builtinType(oid);
    if (!type) throw new Error(`S0: no built-in PostgreSQL type ${oid}`);
    return { name, type, typmod: oid === 1043 ? 32 + 4 : -1, notNull: name === 'id' };
  });
  const schema: TableSchema = {
    schema: 'public',
    name: 'bench_s1',
    columns: columns.map((c) => ({
      name: c.name,
      type: logicalTypeOf(c.type, c.typmod),
      nullable: !c.notNull,
      sourceType: sourceTypeName(c.type, c.typmod),
    })),
    keyColumns: ['id'],
  };
  const decodeRow = rowDecoder({ table: schema, columns, keyColumns: schema.keyColumns });
  return { columns, schema, decodeRow };
}

/** `rows` S1 rows from `firstId` on as COPY text lines, deterministic for a given `firstId`. */
export function copyChunk(firstId: number, rows: number): Buffer {
  let state = (firstId * 2654435761) >>> 0 || 1;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const text = () => {
    const length = 10 + Math.floor(next() * 23);
    let out = '';
    while (out.length < length) out += Math.floor(next() * 2 ** 32).toString(36);
    return out.slice(0, length);
  };
  const date = () => new Date(Date.UTC(2000, 0, 1) + Math.floor(next() * 9000) * 86_400_000).toISOString().slice(0, 10);
  const lines: string[] = new Array(rows);
  for (let i = 0; i < rows; i++) {
    const id = firstId + i;
    const fields = [
      String(id),
      String(id * 7),
      String(Math.floor(next() * 1e12)),
      String(Math.floor(next() * 2e9 - 1e9)),
      String(next()),
      String(next() * 1000),
      String(next() * 1e6),
      String(Math.round(next() * 10000) / 100),
      date(),
      date(),
      date(),
      text(),
      text(),
      text(),
      text(),
      text(),
    ];
    lines[i] = `${fields.join('\t')}\n`;
  }
  return Buffer.from(lines.join(''), 'utf8');
}

/** S1 COPY lines widened to `width` fields: each line's fields again and again, as `s1Table(width)` lays out its columns. */
export function widen(chunk: Buffer, width: number): Buffer {
  const lines = chunk.toString('utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return Buffer.from(
    lines
      .map((line) => {
        const fields = line.split('\t');
        return `${Array.from({ length: width }, (_, i) => fields[i % fields.length]).join('\t')}\n`;
      })
      .join(''),
    'utf8',
  );
}

/** The events a snapshot read makes of one chunk of COPY text (as core's snapshot coordinator builds them). */
export function decodeChunk(chunk: Uint8Array, table: S1Table, position: string): ChangeEvent[] {
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const events: ChangeEvent[] = [];
  const width = table.columns.length;
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(10, start);
    if (end < 0) end = bytes.length;
    const row = table.decodeRow(parseCopyTextRow(bytes.subarray(start, end), width));
    events.push({ op: 'read', table: table.schema, key: { id: row.id ?? null }, after: row, position });
    start = end + 1;
  }
  return events;
}

/** The S1 table as a Relation message announces it to the stream (replica identity default: the key is `id`). */
export function s1Relation(table: S1Table): StreamRelation {
  return {
    relationId: 16_384,
    replicaIdentity: 'default',
    columns: table.columns.map((c) => ({
      name: c.name,
      type: c.type,
      typeModifier: c.typmod,
      isIdentity: c.name === 'id',
    })),
    table: table.schema,
  };
}

/**
 * The pgoutput Insert messages that carry the rows of a COPY text chunk, each its own
 * buffer as the replication connection hands them over: `'I'`, relation oid, `'N'`, column
 * count, then per column `'t'`, length, text.
 */
export function insertMessages(chunk: Buffer, relationId: number, width: number): Buffer[] {
  const messages: Buffer[] = [];
  let start = 0;
  while (start < chunk.length) {
    let end = chunk.indexOf(10, start);
    if (end < 0) end = chunk.length;
    const fields = parseCopyTextRow(chunk.subarray(start, end), width).map((f) => Buffer.from(f ?? '', 'utf8'));
    const message = Buffer.allocUnsafe(8 + fields.reduce((sum, f) => sum + 5 + f.length, 0));
    let offset = message.writeUInt8(0x49, 0); // 'I' Insert
    offset = message.writeUInt32BE(relationId, offset);
    offset = message.writeUInt8(0x4e, offset); // 'N' new tuple
    offset = message.writeUInt16BE(width, offset);
    for (const field of fields) {
      offset = message.writeUInt8(0x74, offset); // 't' text value
      offset = message.writeUInt32BE(field.length, offset);
      offset += field.copy(message, offset);
    }
    messages.push(message);
    start = end + 1;
  }
  return messages;
}

/** What a stream shard is handed: the messages of one batch, length-prefixed in one buffer of its own (movable). */
export function packMessages(messages: readonly Buffer[]): ArrayBuffer {
  const packed = new ArrayBuffer(messages.reduce((sum, m) => sum + 4 + m.length, 0));
  const bytes = Buffer.from(packed);
  let offset = 0;
  for (const message of messages) {
    offset = bytes.writeUInt32LE(message.length, offset);
    offset += message.copy(bytes, offset);
  }
  return packed;
}

/** The messages of a buffer made by `packMessages`, as views into it. */
export function unpackMessages(packed: Uint8Array): Buffer[] {
  const bytes = Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength);
  const messages: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const length = bytes.readUInt32LE(offset);
    messages.push(bytes.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return messages;
}

/** The events the stream makes of Insert messages (one transaction, committed at a fixed time). */
export function decodeMessages(messages: readonly Buffer[], relation: StreamRelation, position: string): ChangeEvent[] {
  const context = { position, commitTime: '2026-12-05T01:00:00.000000Z' };
  const events: ChangeEvent[] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const message = decodePgOutput(messages[i]!);
    if (message.tag !== 'insert') throw new Error(`S0: expected an Insert message, got ${message.tag}`);
    events[i] = insertEvent(relation, message, context);
  }
  return events;
}

/** Key and value of every event as the Kafka sink encodes them, framed into one buffer of its own (transferable). */
export function encodeFramed(events: readonly ChangeEvent[], format: MessageFormat): Buffer {
  const codec = codecFor(format);
  const parts: Buffer[] = [];
  let total = 0;
  for (const event of events) {
    const key = messageKey(event, event.table.keyColumns) ?? Buffer.alloc(0);
    const value = codec.encode(event).value;
    const position = Buffer.from(event.position, 'latin1');
    parts.push(key, value, position);
    total += 12 + key.length + value.length + position.length;
  }
  // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so it can be transferred.
  const out = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  for (const part of parts) {
    out.writeUInt32LE(part.length, offset);
    part.copy(out, offset + 4);
    offset += 4 + part.length;
  }
  return out;
}

/** The null sink: walks every record of a framed buffer as a producer would (views, no copies). */
export function consumeFramed(framed: Uint8Array): { records: number; bytes: number } {
  const view = Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength);
  let records = 0;
  let offset = 0;
  while (offset < view.length) {
    for (let field = 0; field < 3; field++) {
      if (offset + 4 > view.length) throw new Error(`S0: framed buffer ends inside record ${records + 1}`);
      offset += 4 + view.readUInt32LE(offset);
    }
    if (offset > view.length) throw new Error(`S0: framed buffer ends inside record ${records + 1}`);
    records++;
  }
  return { records, bytes: view.length };
}

/** A snapshot event without its table schema: what the clone design sends a worker (which knows the table). */
export interface BareEvent {
  op: ChangeEvent['op'];
  key: Row;
  after?: Row;
  position: string;
}

export type S0Design = 'clone' | 'transfer' | 'own' | 'stream';

/**
 * One S0 task: a chunk as its design hands it over (decoded events; COPY bytes; the number
 * of a chunk the worker has), or `prepare`, which makes a worker build its own chunks (those
 * whose number modulo the pool size is its index) for the `own` design.
 */
export type S0Task =
  | { format: MessageFormat; events: BareEvent[] }
  | { format: MessageFormat; copy: ArrayBuffer; position: string }
  | { format: MessageFormat; chunk: number }
  | { format: MessageFormat; messages: ArrayBuffer; position: string }
  | { prepare: { chunks: number; rowsPerChunk: number } };

/** The position every row of a chunk carries (a concurrent snapshot chunk's high watermark). */
export function s0Position(chunk: number): string {
  return `00000000016B3C40:${chunk.toString(16).padStart(8, '0')}`;
}
