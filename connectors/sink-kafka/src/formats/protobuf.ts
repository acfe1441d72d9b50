import { type ChangeEvent, type LogicalType, type Row, type TableSchema, type Value, qualifiedName } from '@nanosync/core';
import protobuf from 'protobufjs';
import { type DecodeOptions, type DecodedChange, type MessageCodec, OP_NAMES, beforeImage, encodeError, opFromName } from './codec.js';
import { setColumn } from './json-values.js';
import { commitTimeFromMicros, committedAtMicros } from './json.js';
import { BoundedCache, FRAME_PROTOBUF, framePrefix, unframe } from './framing.js';
import { type TableMetadata, leafType, schemaIdentity, tableMetadata } from './table-metadata.js';
import { type ArrayItem, type WireKind, type WireScalar, arrayToWire, scalarFromWire, scalarToWire, wireKind } from './wire-values.js';

/**
 * Protobuf (proto3), generated from the table schema and embedded as a protobufjs JSON
 * descriptor (`protobuf.Root.fromJSON` loads it; `protobufjs`' pbjs can turn it into a
 * `.proto` file). Package `nanosync`:
 *
 *   enum Op { OP_UNSPECIFIED = 0; INSERT = 1; UPDATE = 2; DELETE = 3; READ = 4; }
 *   message Envelope {
 *     Op _ns_op = 1;  string _ns_table = 2;  optional int64 _ns_committed_at = 3;
 *     string _ns_lsn = 4;  repeated string _ns_unchanged = 5;
 *     repeated string _ns_before_absent = 6;  Row before = 7;  Row after = 8;
 *   }
 *   message Row { optional <T> <field> = <column ordinal + 1>; … }
 *
 * Every column field is `optional` (explicit presence: unset = NULL, or absent when named
 * in `_ns_unchanged` / `_ns_before_absent`). T per wire-values.ts: int32, int64, double,
 * bool, bytes, int32 days, int64 microseconds, string. An array column is a message
 * `Array_<field> { repeated Array_<field>_Item items = 1; }` whose item holds a `value`, a
 * `nested` array, or nothing (NULL). The descriptor also carries `nanosync` metadata.
 */

const PROTO_SCALAR: Record<WireKind, string> = {
  int: 'int32',
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

const OPTIONAL = { proto3_optional: true };

function optionalFields(fields: Record<string, { type: string; id: number }>) {
  const withOptions: Record<string, unknown> = {};
  const oneofs: Record<string, { oneof: string[] }> = {};
  for (const [name, field] of Object.entries(fields)) {
    withOptions[name] = { ...field, options: OPTIONAL };
    oneofs[`_${name}`] = { oneof: [name] };
  }
  return { oneofs, fields: withOptions };
}

export function protobufDescriptorFor(table: TableSchema): Record<string, unknown> {
  const meta = tableMetadata(table);
  const nested: Record<string, unknown> = {
    Op: { values: { OP_UNSPECIFIED: 0, INSERT: 1, UPDATE: 2, DELETE: 3, READ: 4 } },
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
      },
    },
  };
  const rowFields: Record<string, { type: string; id: number }> = {};
  meta.columns.forEach((c, i) => {
    if (c.type.kind === 'array') {
      const name = `Array_${c.field}`;
      nested[name] = { fields: { items: { rule: 'repeated', type: `${name}_Item`, id: 1 } } };
      nested[`${name}_Item`] = {
        oneofs: { kind: { oneof: ['value', 'nested'] } },
        fields: { value: { type: PROTO_SCALAR[wireKind(leafType(c.type))], id: 1 }, nested: { type: name, id: 2 } },
      };
      rowFields[c.field] = { type: name, id: i + 1 };
    } else {
      rowFields[c.field] = { type: PROTO_SCALAR[wireKind(c.type)], id: i + 1 };
    }
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
        item.kind === 'null' ? {} : item.kind === 'value' ? { value: toProtoScalar(item.value) } : { nested: { items: item.items } };
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

function rowFromProto(meta: TableMetadata, record: Record<string, unknown> | undefined, absent: readonly string[] = []): Row | undefined {
  if (!record) return undefined;
  const skip = new Set(absent);
  const row: Row = {};
  for (const c of meta.columns) {
    if (skip.has(c.name)) continue;
    const value = record[c.field];
    if (value === null || value === undefined) setColumn(row, c.name, null);
    else if (c.type.kind === 'array') setColumn(row, c.name, arrayFromProto(c.type, (value as { items?: ProtoItem[] }).items, c.name));
    else setColumn(row, c.name, scalarFromWire(c.type, value, c.name));
  }
  return row;
}

interface Compiled {
  envelope: protobuf.Type;
  prefix: Buffer;
  meta: TableMetadata;
}

function compile(descriptor: Record<string, unknown>): { envelope: protobuf.Type; meta: TableMetadata } {
  const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
  return { envelope: root.lookupType('nanosync.Envelope'), meta: descriptor.nanosync as TableMetadata };
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, arrays: false, oneofs: false };

export function createProtobufCodec(): MessageCodec {
  const writers = new WeakMap<TableSchema, Compiled>();
  const writersByIdentity = new BoundedCache<Compiled>(1024);
  const readers = new BoundedCache<{ envelope: protobuf.Type; meta: TableMetadata }>(256);

  function writerFor(table: TableSchema): Compiled {
    let writer = writers.get(table);
    if (!writer) {
      writer = writersByIdentity.get(schemaIdentity(table), () => {
        const descriptor = protobufDescriptorFor(table);
        return { ...compile(descriptor), prefix: framePrefix(FRAME_PROTOBUF, JSON.stringify(descriptor)) };
      });
      writers.set(table, writer);
    }
    return writer;
  }

  return {
    format: 'protobuf',
    encode(event: ChangeEvent) {
      try {
        const writer = writerFor(event.table);
        const before = beforeImage(event);
        const committed = committedAtMicros(event);
        const message: Record<string, unknown> = {
          _ns_op: OP_NAMES[event.op],
          _ns_table: qualifiedName(event.table),
          _ns_lsn: event.position,
          _ns_unchanged: event.unchanged ?? [],
          _ns_before_absent: before ? writer.meta.columns.filter((c) => !Object.hasOwn(before, c.name)).map((c) => c.name) : [],
        };
        if (committed !== null) message._ns_committed_at = String(committed);
        const beforeRow = rowToProto(writer.meta, before);
        const afterRow = rowToProto(writer.meta, event.after);
        if (beforeRow) message.before = beforeRow;
        if (afterRow) message.after = afterRow;
        const payload = writer.envelope.encode(writer.envelope.fromObject(message)).finish();
        return { value: Buffer.concat([writer.prefix, payload]) };
      } catch (err) {
        throw encodeError('protobuf', event, err);
      }
    },
    decode(value: Uint8Array, _options?: DecodeOptions): DecodedChange {
      const framed = unframe(value, FRAME_PROTOBUF);
      const reader = readers.get(framed.fingerprint, () => compile(JSON.parse(framed.schemaText) as Record<string, unknown>));
      const env = reader.envelope.toObject(reader.envelope.decode(framed.payload), TO_OBJECT) as {
        _ns_op: string;
        _ns_table?: string;
        _ns_committed_at?: string;
        _ns_lsn?: string;
        _ns_unchanged?: string[];
        _ns_before_absent?: string[];
        before?: Record<string, unknown>;
        after?: Record<string, unknown>;
      };
      const decoded: DecodedChange = { op: opFromName(env._ns_op), table: env._ns_table ?? '', position: env._ns_lsn ?? '' };
      const commitTime = commitTimeFromMicros(env._ns_committed_at);
      if (commitTime !== undefined) decoded.commitTime = commitTime;
      if (env._ns_unchanged?.length) decoded.unchanged = env._ns_unchanged;
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
