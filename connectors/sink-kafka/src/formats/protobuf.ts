import {
  type ChangeEvent,
  type LogicalType,
  type Row,
  type TableSchema,
  type Value,
  qualifiedName,
} from '@nanosync/core';
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import {
  type DecodeOptions,
  type DecodedChange,
  type MessageCodec,
  OP_NAMES,
  beforeImage,
  encodeError,
  opFromName,
  truncateFlags,
} from './codec.js';
import { setColumn } from './json-values.js';
import { commitTimeFromMicros, committedAtMicros } from './json.js';
import { BoundedCache, FRAME_PROTOBUF, framePrefix, unframe } from './framing.js';
import { type TableMetadata, leafType, protobufClashKey, schemaIdentity, tableMetadata } from './table-metadata.js';
import {
  type ArrayItem,
  type WireKind,
  type WireScalar,
  arrayToWire,
  scalarFromWire,
  scalarToWire,
  wireKind,
} from './wire-values.js';

/**
 * Protobuf (proto3), generated from the table schema and embedded as a protobufjs JSON
 * descriptor (`protobuf.Root.fromJSON` loads it; `protobufSchemaText` prints it as a
 * `.proto` file for protoc). Package `nanosync`:
 *
 *   enum Op { OP_UNSPECIFIED = 0; INSERT = 1; UPDATE = 2; DELETE = 3; READ = 4; TRUNCATE = 5; }
 *   message Truncate { bool cascade = 1; bool restart_identity = 2; }
 *   message Envelope {
 *     Op _ns_op = 1;  string _ns_table = 2;  optional int64 _ns_committed_at = 3;
 *     string _ns_lsn = 4;  repeated string _ns_unchanged = 5;
 *     repeated string _ns_before_absent = 6;  Row before = 7;  Row after = 8;
 *     Truncate _ns_truncate = 9;
 *   }
 *   message Row { optional <T> <field> = <columnFieldNumber(column)>; … }
 *
 * Every column field is `optional` (explicit presence: unset = NULL, or absent when named
 * in `_ns_unchanged` / `_ns_before_absent`). T per wire-values.ts, except that every
 * integer column is `int64` (int16/int32 values have the same varint bytes, so a column
 * retyped from `int` to `bigint` keeps its field and its type). An array column is a
 * message `Array_<scalar> { repeated Array_<scalar>_Item items = 1; }` whose item holds a
 * `value`, a `nested` array, or nothing (NULL); these names come from the fixed set of
 * scalar types, never from column names, so they cannot collide. The descriptor also
 * carries `nanosync` metadata (field → column, logical types, key).
 *
 * Field numbers are derived, not counted: see `columnFieldNumber`.
 */

const PROTO_SCALAR: Record<WireKind, string> = {
  int: 'int64',
  long: 'int64',
  double: 'double',
  bool: 'bool',
  bytes: 'bytes',
  date: 'int32',
  time: 'int64',
  timestamp: 'int64',
  timestamptz: 'int64',
  string: 'string',
};

/** Protobuf's field numbers: 1 … 2^29 − 1, without 19000–19999 (reserved for the implementation). */
const MAX_FIELD_NUMBER = 536_870_911;
const RESERVED_FROM = 19_000;
const RESERVED_COUNT = 1_000;

/**
 * What a column's field number depends on besides its name: the meaning of its wire value.
 * All integers share one family (int16 → int32 → int64 keep their number), as do all
 * string-carried kinds; a change to another family (`int` → `text`, `date` → `timestamp`)
 * gives a new number, so a reader compiled earlier sees the old field absent instead of
 * misreading the new bytes.
 */
export function fieldFamily(type: LogicalType): string {
  if (type.kind === 'array') return `array<${fieldFamily(leafType(type))}>`;
  const kind = wireKind(type);
  return kind === 'int' || kind === 'long' ? 'integer' : kind;
}

function hashedNumber(text: string): number {
  const word = createHash('sha256').update(text, 'utf8').digest().readUInt32BE(0);
  const n = 1 + (word % (MAX_FIELD_NUMBER - RESERVED_COUNT));
  return n >= RESERVED_FROM ? n + RESERVED_COUNT : n;
}

function nextNumber(n: number): number {
  const next = n >= MAX_FIELD_NUMBER ? 1 : n + 1;
  return next >= RESERVED_FROM && next < RESERVED_FROM + RESERVED_COUNT ? RESERVED_FROM + RESERVED_COUNT : next;
}

/**
 * Field numbers of a table's columns, stable for the life of the table without any stored
 * state: each is a hash (SHA-256, into protobuf's whole number range) of the column name
 * and its `fieldFamily`. Dropping a column frees nothing that another column could take
 * (a different name hashes elsewhere), adding one never moves another, and the numbers are
 * the same whichever process, pipeline or state store produced the message. Two columns
 * whose hashes coincide (about one table in a million with 30 columns) are resolved in
 * column order: the later one takes the next free number.
 */
export function columnFieldNumbers(columns: readonly { name: string; type: LogicalType }[]): number[] {
  const used = new Set<number>();
  return columns.map((c) => {
    let n = hashedNumber(`${c.name}\u0000${fieldFamily(c.type)}`);
    while (used.has(n)) n = nextNumber(n);
    used.add(n);
    return n;
  });
}

const OPTIONAL = { proto3_optional: true };

interface RowField {
  type: string;
  id: number;
  comment?: string;
}

function optionalFields(fields: Record<string, RowField>) {
  const withOptions: Record<string, unknown> = {};
  const oneofs: Record<string, { oneof: string[] }> = {};
  for (const [name, field] of Object.entries(fields)) {
    withOptions[name] = { ...field, options: OPTIONAL };
    oneofs[`_${name}`] = { oneof: [name] };
  }
  return { oneofs, fields: withOptions };
}

export function protobufDescriptorFor(table: TableSchema): Record<string, unknown> {
  const meta = tableMetadata(table, protobufClashKey);
  const numbers = columnFieldNumbers(table.columns);
  const nested: Record<string, unknown> = {
    Op: { values: { OP_UNSPECIFIED: 0, INSERT: 1, UPDATE: 2, DELETE: 3, READ: 4, TRUNCATE: 5 } },
    Truncate: { fields: { cascade: { type: 'bool', id: 1 }, restart_identity: { type: 'bool', id: 2 } } },
    Envelope: {
      oneofs: { __ns_committed_at: { oneof: ['_ns_committed_at'] } },
      fields: {
        _ns_op: { type: 'Op', id: 1 },
        _ns_table: { type: 'string', id: 2 },
        _ns_committed_at: { type: 'int64', id: 3, options: OPTIONAL },
        _ns_lsn: { type: 'string', id: 4 },
        _ns_unchanged: { rule: 'repeated', type: 'string', id: 5 },
        _ns_before_absent: { rule: 'repeated', type: 'string', id: 6 },
        before: { type: 'Row', id: 7 },
        after: { type: 'Row', id: 8 },
        _ns_truncate: { type: 'Truncate', id: 9 },
      },
    },
  };
  const rowFields: Record<string, RowField> = {};
  meta.columns.forEach((c, i) => {
    let type: string;
    if (c.type.kind === 'array') {
      const scalar = PROTO_SCALAR[wireKind(leafType(c.type))];
      type = `Array_${scalar}`;
      nested[type] = { fields: { items: { rule: 'repeated', type: `${type}_Item`, id: 1 } } };
      nested[`${type}_Item`] = {
        oneofs: { kind: { oneof: ['value', 'nested'] } },
        fields: { value: { type: scalar, id: 1 }, nested: { type, id: 2 } },
      };
    } else {
      type = PROTO_SCALAR[wireKind(c.type)];
    }
    rowFields[c.field] = {
      type,
      id: numbers[i]!,
      ...(c.field === c.name ? {} : { comment: `column ${JSON.stringify(c.name)}` }),
    };
  });
  nested.Row = optionalFields(rowFields);
  return { nanosync: meta, nested: { nanosync: { nested } } };
}

/** protobufjs takes 64-bit integers as decimal text (through Long) and bytes as Uint8Array. */
function toProtoScalar(value: WireScalar): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function rowToProto(meta: TableMetadata, row: Row | undefined): Record<string, unknown> | undefined {
  if (!row) return undefined;
  const out: Record<string, unknown> = {};
  for (const c of meta.columns) {
    const value = Object.hasOwn(row, c.name) ? row[c.name] : null;
    if (value === null || value === undefined) continue;
    if (c.type.kind === 'array') {
      const build = (item: ArrayItem<unknown>): unknown =>
        item.kind === 'null'
          ? {}
          : item.kind === 'nested'
            ? { nested: { items: item.items } }
            : { value: toProtoScalar(item.value) };
      out[c.field] = { items: arrayToWire(c.type, value, c.name, build) };
    } else {
      out[c.field] = toProtoScalar(scalarToWire(c.type, value, c.name));
    }
  }
  return out;
}

interface ProtoItem {
  value?: unknown;
  nested?: { items?: ProtoItem[] };
}

function arrayFromProto(type: LogicalType, items: ProtoItem[] | undefined, column: string): Value[] {
  const leaf = leafType(type);
  return (items ?? []).map((item) => {
    if (item.nested) return arrayFromProto(type, item.nested.items, column);
    if (item.value === undefined || item.value === null) return null;
    return scalarFromWire(leaf, item.value, column);
  });
}

function rowFromProto(
  meta: TableMetadata,
  record: Record<string, unknown> | undefined,
  absent: readonly string[] = [],
): Row | undefined {
  if (!record) return undefined;
  const skip = new Set(absent);
  const row: Row = {};
  for (const c of meta.columns) {
    if (skip.has(c.name)) continue;
    const value = record[c.field];
    if (value === null || value === undefined) setColumn(row, c.name, null);
    else if (c.type.kind === 'array')
      setColumn(row, c.name, arrayFromProto(c.type, (value as { items?: ProtoItem[] }).items, c.name));
    else setColumn(row, c.name, scalarFromWire(c.type, value, c.name));
  }
  return row;
}

interface Compiled {
  envelope: protobuf.Type;
  prefix: Buffer;
  meta: TableMetadata;
  descriptor: Record<string, unknown>;
}

function compile(descriptor: Record<string, unknown>): { envelope: protobuf.Type; meta: TableMetadata } {
  const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
  return { envelope: root.lookupType('nanosync.Envelope'), meta: descriptor.nanosync as TableMetadata };
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  defaults: false,
  arrays: false,
  oneofs: false,
};

/** Compiled Protobuf writers per table schema (the descriptor is kept for the registry's `.proto` text). */
export function protobufWriters() {
  const writers = new WeakMap<TableSchema, Compiled>();
  const writersByIdentity = new BoundedCache<Compiled>(1024);
  return function writerFor(table: TableSchema): Compiled {
    let writer = writers.get(table);
    if (!writer) {
      writer = writersByIdentity.get(schemaIdentity(table), () => {
        const descriptor = protobufDescriptorFor(table);
        return {
          ...compile(descriptor),
          prefix: framePrefix(FRAME_PROTOBUF, JSON.stringify(descriptor)),
          descriptor,
        };
      });
      writers.set(table, writer);
    }
    return writer;
  };
}

/** The Protobuf encoding of an event's envelope, written with `writer`. */
export function protobufPayload(writer: Compiled, event: ChangeEvent): Uint8Array {
  const before = beforeImage(event);
  const committed = committedAtMicros(event);
  const message: Record<string, unknown> = {
    _ns_op: OP_NAMES[event.op],
    _ns_table: qualifiedName(event.table),
    _ns_lsn: event.position,
    _ns_unchanged: event.unchanged ?? [],
    _ns_before_absent: before
      ? writer.meta.columns.filter((c) => !Object.hasOwn(before, c.name)).map((c) => c.name)
      : [],
  };
  if (committed !== null) message._ns_committed_at = String(committed);
  if (event.op === 'truncate') {
    const { cascade, restartIdentity } = truncateFlags(event);
    message._ns_truncate = { cascade, restart_identity: restartIdentity };
  }
  const beforeRow = rowToProto(writer.meta, before);
  const afterRow = rowToProto(writer.meta, event.after);
  if (beforeRow) message.before = beforeRow;
  if (afterRow) message.after = afterRow;
  return writer.envelope.encode(writer.envelope.fromObject(message)).finish();
}

/**
 * The message key as Protobuf: a `.proto` of its own with one message `Key` holding the key
 * columns, typed and numbered as in `Row`.
 */
export function protobufKeyWriter(table: TableSchema, keyColumns: readonly string[], packageName: string) {
  const columns = keyColumns.map((name) => table.columns.find((c) => c.name === name)!);
  const descriptor = protobufDescriptorFor({ ...table, columns, keyColumns: [...keyColumns] });
  const nested = (descriptor as { nested: { nanosync: { nested: Record<string, unknown> } } }).nested.nanosync.nested;
  const { Row: row, Envelope: _e, Op: _o, Truncate: _t, ...arrays } = nested;
  const keyDescriptor = { nanosync: descriptor.nanosync, nested: { nanosync: { nested: { ...arrays, Key: row } } } };
  const root = protobuf.Root.fromJSON(keyDescriptor as protobuf.INamespace);
  const type = root.lookupType('nanosync.Key');
  const meta = descriptor.nanosync as TableMetadata;
  return {
    text: protobufSchemaText(keyDescriptor, packageName),
    messageIndex: protobufMessageIndex(keyDescriptor, 'Key'),
    encode(event: ChangeEvent): Uint8Array {
      const images: (Row | undefined)[] = [event.after, event.before, event.key];
      const keyRow: Row = {};
      for (const c of columns) {
        const image = images.find((r) => r !== undefined && Object.hasOwn(r, c.name));
        keyRow[c.name] = image ? (image[c.name] ?? null) : null;
      }
      return type.encode(type.fromObject(rowToProto(meta, keyRow) ?? {})).finish();
    },
  };
}

/** The position of a top-level message among the messages (not enums) of a descriptor's `.proto` text. */
export function protobufMessageIndex(descriptor: Record<string, unknown>, message: string): number {
  const types = (descriptor as { nested: { nanosync: { nested: Record<string, DescriptorMessage> } } }).nested.nanosync
    .nested;
  let index = 0;
  for (const [name, type] of Object.entries(types)) {
    if (name === message) return index;
    if (!type.values) index++;
  }
  throw new Error(`message ${message} not in descriptor`);
}

export function createProtobufCodec(): MessageCodec {
  const writerFor = protobufWriters();
  const readers = new BoundedCache<{ envelope: protobuf.Type; meta: TableMetadata }>(256);
  return {
    format: 'protobuf',
    encode(event: ChangeEvent) {
      try {
        const writer = writerFor(event.table);
        return { value: Buffer.concat([writer.prefix, protobufPayload(writer, event)]) };
      } catch (err) {
        throw encodeError('protobuf', event, err);
      }
    },
    decode(value: Uint8Array, _options?: DecodeOptions): DecodedChange {
      const framed = unframe(value, FRAME_PROTOBUF);
      const reader = readers.get(framed.fingerprint, () =>
        compile(JSON.parse(framed.schemaText) as Record<string, unknown>),
      );
      const env = reader.envelope.toObject(reader.envelope.decode(framed.payload), TO_OBJECT) as {
        _ns_op: string;
        _ns_table?: string;
        _ns_committed_at?: string;
        _ns_lsn?: string;
        _ns_unchanged?: string[];
        _ns_before_absent?: string[];
        before?: Record<string, unknown>;
        after?: Record<string, unknown>;
        _ns_truncate?: { cascade?: boolean; restart_identity?: boolean };
      };
      const decoded: DecodedChange = {
        op: opFromName(env._ns_op),
        table: env._ns_table ?? '',
        position: env._ns_lsn ?? '',
      };
      const commitTime = commitTimeFromMicros(env._ns_committed_at);
      if (commitTime !== undefined) decoded.commitTime = commitTime;
      if (env._ns_unchanged?.length) decoded.unchanged = env._ns_unchanged;
      if (decoded.op === 'truncate') {
        decoded.truncate = {
          cascade: env._ns_truncate?.cascade === true,
          restartIdentity: env._ns_truncate?.restart_identity === true,
        };
      }
      const before = rowFromProto(reader.meta, env.before, env._ns_before_absent);
      const after = rowFromProto(reader.meta, env.after, env._ns_unchanged);
      if (before) decoded.before = before;
      if (after) decoded.after = after;
      return decoded;
    },
  };
}

export const protobufCodec = createProtobufCodec();

/** Read a Protobuf-format record value (descriptor embedded) back into a change with canonical values. */
export function decodeProtobufMessage(value: Uint8Array): DecodedChange {
  return protobufCodec.decode(value);
}

/** The protobufjs JSON descriptor embedded in a record value (`protobuf.Root.fromJSON(d)` loads it). */
export function protobufDescriptorOf(value: Uint8Array): Record<string, unknown> {
  return JSON.parse(unframe(value, FRAME_PROTOBUF).schemaText) as Record<string, unknown>;
}

interface DescriptorField {
  type: string;
  id: number;
  rule?: string;
  options?: { proto3_optional?: boolean };
  comment?: string;
}
interface DescriptorMessage {
  fields?: Record<string, DescriptorField>;
  oneofs?: Record<string, { oneof: string[] }>;
  values?: Record<string, number>;
}

/**
 * The embedded descriptor as `.proto` source (proto3), for protoc and the code generators
 * of other languages: `protoc --decode nanosync.Envelope schema.proto < payload`. Escaped
 * field names carry the column they stand for in a comment.
 */
export function protobufSchemaText(descriptor: Record<string, unknown>, packageName = 'nanosync'): string {
  const types = (descriptor as { nested: { nanosync: { nested: Record<string, DescriptorMessage> } } }).nested.nanosync
    .nested;
  const lines = ['syntax = "proto3";', '', `package ${packageName};`, ''];
  for (const [name, type] of Object.entries(types)) {
    if (type.values) {
      lines.push(`enum ${name} {`);
      for (const [value, id] of Object.entries(type.values)) lines.push(`  ${value} = ${id};`);
      lines.push('}', '');
      continue;
    }
    lines.push(`message ${name} {`);
    const fields = type.fields ?? {};
    const inOneof = new Map<string, string>();
    for (const [group, { oneof }] of Object.entries(type.oneofs ?? {})) {
      for (const member of oneof) if (!fields[member]?.options?.proto3_optional) inOneof.set(member, group);
    }
    const fieldLine = (fieldName: string, field: DescriptorField, indent: string) => {
      if (field.comment) lines.push(`${indent}// ${field.comment}`);
      const label = field.rule === 'repeated' ? 'repeated ' : field.options?.proto3_optional ? 'optional ' : '';
      lines.push(`${indent}${label}${field.type} ${fieldName} = ${field.id};`);
    };
    for (const [fieldName, field] of Object.entries(fields))
      if (!inOneof.has(fieldName)) fieldLine(fieldName, field, '  ');
    for (const group of new Set(inOneof.values())) {
      lines.push(`  oneof ${group} {`);
      for (const [member, g] of inOneof) if (g === group) fieldLine(member, fields[member]!, '    ');
      lines.push('  }');
    }
    lines.push('}', '');
  }
  return lines.join('\n');
}
