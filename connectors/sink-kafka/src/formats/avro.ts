import {
  type ChangeEvent,
  type LogicalType,
  type Row,
  type TableSchema,
  type Value,
  qualifiedName,
} from '@nanosync/core';
import avro from 'avsc';
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
import { BoundedCache, FRAME_AVRO, framePrefix, unframe } from './framing.js';
import { type TableMetadata, leafType, schemaIdentity, tableMetadata } from './table-metadata.js';
import {
  type ArrayItem,
  type WireKind,
  type WireScalar,
  arrayToWire,
  isTemporal,
  scalarFromWire,
  scalarToWire,
  temporalAsText,
  wireKind,
} from './wire-values.js';

/**
 * Avro: one record `io.nanosync.Envelope` per message, generated from the table schema.
 *
 *   _ns_op            enum Op { INSERT, UPDATE, DELETE, READ, TRUNCATE }
 *   _ns_table         string
 *   _ns_committed_at  null | long (timestamp-micros)
 *   _ns_lsn           string
 *   _ns_unchanged     array<string>   columns the source did not send in `after`
 *   _ns_before_absent array<string>   columns missing from a partial `before` image
 *   before, after     null | Row
 *   _ns_truncate      null | Truncate { cascade: boolean, restart_identity: boolean }
 *                     (only on TRUNCATE; last, with a default, so older readers skip it)
 *
 * `Row` has one field per column, every one `["null", T]` (a partial image may lack even
 * a NOT NULL column), T per wire-values.ts with Avro's logical type annotations
 * (`date`, `time-micros`, `timestamp-micros`, `local-timestamp-micros`, `uuid`). An array
 * column is `array<["null", T, Array_<field>]>` where the record `Array_<field>` holds one
 * nested dimension. Longs are read and written as BigInt, never as doubles.
 * The schema also carries the attribute `nanosync` (table-metadata.ts).
 */

export const NAMESPACE = 'io.nanosync';

/** Avro `long` as BigInt: 8-byte little-endian two's complement, as avsc's `__with` expects. */
const bigintLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(0),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n, 0);
    return buf;
  },
  fromJSON: (value: unknown) => BigInt(value as string),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

/** Every `long`, annotated with a logical type or not, is read and written as BigInt. */
function longAsBigint(schema: unknown): avro.Type | undefined {
  const isLong =
    schema === 'long' ||
    (typeof schema === 'object' && schema !== null && (schema as { type?: unknown }).type === 'long');
  return isLong ? bigintLong : undefined;
}

function forSchema(schema: unknown): avro.Type {
  return avro.Type.forSchema(
    schema as avro.Schema,
    { typeHook: longAsBigint, wrapUnions: true } as unknown as Partial<avro.ForSchemaOptions>,
  );
}

const PRIMITIVE: Record<WireKind, { type: string; logicalType?: string }> = {
  int: { type: 'int' },
  long: { type: 'long' },
  double: { type: 'double' },
  bool: { type: 'boolean' },
  bytes: { type: 'bytes' },
  date: { type: 'int', logicalType: 'date' },
  time: { type: 'long', logicalType: 'time-micros' },
  timestamp: { type: 'long', logicalType: 'local-timestamp-micros' },
  timestamptz: { type: 'long', logicalType: 'timestamp-micros' },
  string: { type: 'string' },
};

/** The union branch name avsc uses for a wrapped value of this wire kind. */
function branchOf(kind: WireKind): string {
  return PRIMITIVE[kind].type;
}

function scalarSchema(type: LogicalType): unknown {
  const p = PRIMITIVE[wireKind(type)];
  if (type.kind === 'uuid') return { type: 'string', logicalType: 'uuid' };
  return p.logicalType ? { ...p } : p.type;
}

/** The value branches of a scalar: temporal kinds add `string` for values their logical type cannot hold. */
function scalarBranches(type: LogicalType): unknown[] {
  return isTemporal(type) ? [scalarSchema(type), 'string'] : [scalarSchema(type)];
}

function columnSchema(type: LogicalType, field: string): unknown {
  if (type.kind !== 'array') return ['null', ...scalarBranches(type)];
  const leaf = scalarBranches(leafType(type));
  const nestedName = `Array_${field}`;
  return [
    'null',
    {
      type: 'array',
      items: [
        'null',
        ...leaf,
        {
          type: 'record',
          name: nestedName,
          fields: [{ name: 'items', type: { type: 'array', items: ['null', ...leaf, nestedName] } }],
        },
      ],
    },
  ];
}

export function avroSchemaFor(table: TableSchema, namespace = NAMESPACE): Record<string, unknown> {
  const meta = tableMetadata(table);
  const row = {
    type: 'record',
    name: 'Row',
    fields: meta.columns.map((c) => ({
      name: c.field,
      ...(c.field === c.name ? {} : { doc: `column ${JSON.stringify(c.name)}` }),
      type: columnSchema(c.type, c.field),
      default: null,
    })),
  };
  return {
    type: 'record',
    name: 'Envelope',
    namespace,
    doc: `nanosync change event for ${qualifiedName(table)}`,
    nanosync: meta,
    fields: [
      {
        name: '_ns_op',
        type: { type: 'enum', name: 'Op', symbols: ['INSERT', 'UPDATE', 'DELETE', 'READ', 'TRUNCATE'] },
      },
      { name: '_ns_table', type: 'string' },
      { name: '_ns_committed_at', type: ['null', { type: 'long', logicalType: 'timestamp-micros' }], default: null },
      { name: '_ns_lsn', type: 'string' },
      { name: '_ns_unchanged', type: { type: 'array', items: 'string' }, default: [] },
      { name: '_ns_before_absent', type: { type: 'array', items: 'string' }, default: [] },
      { name: 'before', type: ['null', row], default: null },
      { name: 'after', type: ['null', 'Row'], default: null },
      {
        name: '_ns_truncate',
        type: [
          'null',
          {
            type: 'record',
            name: 'Truncate',
            fields: [
              { name: 'cascade', type: 'boolean' },
              { name: 'restart_identity', type: 'boolean' },
            ],
          },
        ],
        default: null,
      },
    ],
  };
}

interface Writer {
  type: avro.Type;
  prefix: Buffer;
  meta: TableMetadata;
  namespace: string;
  /** The schema as registered / embedded. */
  text: string;
}

/** avsc writes bytes only from a Buffer; a view over the same memory does. */
function avroScalar(value: WireScalar): WireScalar {
  return value instanceof Uint8Array && !Buffer.isBuffer(value)
    ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    : value;
}

function wrapItem(type: LogicalType, field: string, namespace: string) {
  const branch = branchOf(wireKind(leafType(type)));
  const build = (item: ArrayItem<unknown>): unknown => {
    switch (item.kind) {
      case 'null':
        return null;
      case 'value':
        return { [branch]: avroScalar(item.value) };
      case 'text':
        return { string: item.value };
      case 'nested':
        return { [`${namespace}.Array_${field}`]: { items: item.items } };
    }
  };
  return build;
}

function rowToAvro(meta: TableMetadata, row: Row | undefined, namespace: string): unknown {
  if (!row) return null;
  return { [`${namespace}.Row`]: rowFields(meta.columns, row, namespace) };
}

/** The record fields of a row (or key) image: one wrapped union value per column. */
function rowFields(columns: TableMetadata['columns'], row: Row, namespace: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const value = Object.hasOwn(row, c.name) ? row[c.name] : null;
    if (value === null || value === undefined) {
      out[c.field] = null;
    } else if (c.type.kind === 'array') {
      out[c.field] = {
        array: arrayToWire(c.type, value, c.name, wrapItem(c.type, c.field, namespace), temporalAsText),
      };
    } else if (temporalAsText(c.type, value)) {
      out[c.field] = { string: value };
    } else {
      out[c.field] = { [branchOf(wireKind(c.type))]: avroScalar(scalarToWire(c.type, value, c.name)) };
    }
  }
  return out;
}

function unwrap(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  return (value as Record<string, unknown>)[keys[0]!];
}

/** A wrapped union value of a column: its branch name and the value inside. */
function branchValue(value: unknown): { branch: string; inner: unknown } | null {
  if (value === null || value === undefined || typeof value !== 'object') return null;
  const [branch] = Object.keys(value);
  return { branch: branch!, inner: (value as Record<string, unknown>)[branch!] };
}

function arrayFromAvro(type: LogicalType, items: unknown[], column: string, namespace: string): Value[] {
  const leaf = leafType(type);
  return items.map((item) => {
    if (item === null) return null;
    const [branch] = Object.keys(item as object);
    const inner = (item as Record<string, unknown>)[branch!];
    if (branch!.startsWith(`${namespace}.Array_`))
      return arrayFromAvro(type, (inner as { items: unknown[] }).items, column, namespace);
    if (branch === 'string' && isTemporal(leaf)) return inner as string;
    return scalarFromWire(leaf, inner, column);
  });
}

function rowFromAvro(
  meta: TableMetadata,
  wrapped: unknown,
  absent: readonly string[],
  namespace: string,
): Row | undefined {
  const record = unwrap(wrapped) as Record<string, unknown> | null;
  if (!record) return undefined;
  const skip = new Set(absent);
  const row: Row = {};
  for (const c of meta.columns) {
    if (skip.has(c.name)) continue;
    const wrappedValue = branchValue(record[c.field]);
    if (wrappedValue === null) setColumn(row, c.name, null);
    else if (c.type.kind === 'array')
      setColumn(row, c.name, arrayFromAvro(c.type, wrappedValue.inner as unknown[], c.name, namespace));
    else if (wrappedValue.branch === 'string' && isTemporal(c.type))
      setColumn(row, c.name, wrappedValue.inner as string);
    else setColumn(row, c.name, scalarFromWire(c.type, wrappedValue.inner, c.name));
  }
  return row;
}

function absentColumns(meta: TableMetadata, row: Row | undefined): string[] {
  if (!row) return [];
  return meta.columns.filter((c) => !Object.hasOwn(row, c.name)).map((c) => c.name);
}

interface AvroEnvelope {
  _ns_op: string;
  _ns_table: string;
  _ns_committed_at: { long: bigint } | null;
  _ns_lsn: string;
  _ns_unchanged: string[];
  _ns_before_absent: string[];
  before: unknown;
  after: unknown;
  _ns_truncate: Record<string, { cascade: boolean; restart_identity: boolean }> | null;
}

/**
 * Compiled Avro writers per table schema, in one namespace per table (`namespaceOf`):
 * the embedded format uses `io.nanosync` for every table, the registry format a namespace
 * per table so that record-name subject strategies give each table its own subject.
 */
export function avroWriters(namespaceOf: (table: TableSchema) => string = () => NAMESPACE) {
  const writers = new WeakMap<TableSchema, Writer>();
  const writersByIdentity = new BoundedCache<Writer>(1024);
  return function writerFor(table: TableSchema): Writer {
    let writer = writers.get(table);
    if (!writer) {
      const namespace = namespaceOf(table);
      writer = writersByIdentity.get(`${namespace}\u0000${schemaIdentity(table)}`, () => {
        const schema = avroSchemaFor(table, namespace);
        const text = JSON.stringify(schema);
        return {
          type: forSchema(schema),
          prefix: framePrefix(FRAME_AVRO, text),
          meta: schema.nanosync as TableMetadata,
          namespace,
          text,
        };
      });
      writers.set(table, writer);
    }
    return writer;
  };
}

/** The Avro binary datum of an event's envelope, written with `writer`. */
export function avroPayload(writer: Writer, event: ChangeEvent): Buffer {
  const ns = writer.namespace;
  const before = beforeImage(event);
  const committed = committedAtMicros(event);
  const unchanged = new Set(event.unchanged ?? []);
  const envelope: AvroEnvelope = {
    _ns_op: OP_NAMES[event.op],
    _ns_table: qualifiedName(event.table),
    _ns_committed_at: committed === null ? null : { long: BigInt(committed) },
    _ns_lsn: event.position,
    _ns_unchanged: [...unchanged],
    _ns_before_absent: absentColumns(writer.meta, before),
    before: rowToAvro(writer.meta, before, ns),
    after: rowToAvro(writer.meta, event.after, ns),
    _ns_truncate: null,
  };
  if (event.op === 'truncate') {
    const { cascade, restartIdentity } = truncateFlags(event);
    envelope._ns_truncate = { [`${ns}.Truncate`]: { cascade, restart_identity: restartIdentity } };
  }
  return writer.type.toBuffer(envelope);
}

/**
 * The Avro schema of a table's message key: a record `Key` (in the table's namespace) with
 * the key columns, each typed as in `Row`.
 */
export function avroKeySchemaFor(table: TableSchema, keyColumns: readonly string[], namespace: string) {
  const meta = tableMetadata(table);
  const columns = keyColumns.map((name) => meta.columns.find((c) => c.name === name)!);
  return {
    schema: {
      type: 'record',
      name: 'Key',
      namespace,
      doc: `nanosync message key for ${qualifiedName(table)}`,
      fields: columns.map((c) => ({
        name: c.field,
        ...(c.field === c.name ? {} : { doc: `column ${JSON.stringify(c.name)}` }),
        type: columnSchema(c.type, c.field),
      })),
    },
    columns,
  };
}

/** A key writer: the key columns' values of an event (after, else before, else key image) as an Avro `Key` datum. */
export function avroKeyWriter(table: TableSchema, keyColumns: readonly string[], namespace: string) {
  const { schema, columns } = avroKeySchemaFor(table, keyColumns, namespace);
  const type = forSchema(schema);
  return {
    text: JSON.stringify(schema),
    encode(event: ChangeEvent): Buffer {
      const images: (Row | undefined)[] = [event.after, event.before, event.key];
      const row: Row = {};
      for (const c of columns) {
        const image = images.find((r) => r !== undefined && Object.hasOwn(r, c.name));
        row[c.name] = image ? (image[c.name] ?? null) : null;
      }
      return type.toBuffer(rowFields(columns, row, namespace));
    },
  };
}

/** Decode an Avro envelope datum written with `schemaText` (embedded or fetched from a registry by id). */
export function decodeAvroPayload(
  schemaText: string,
  payload: Uint8Array,
  cache?: BoundedCache<{ type: avro.Type; meta: TableMetadata; namespace: string }>,
  cacheKey?: string,
): DecodedChange {
  const build = () => {
    const schema = JSON.parse(schemaText) as { nanosync: TableMetadata; namespace?: string };
    return { type: forSchema(schema), meta: schema.nanosync, namespace: schema.namespace ?? NAMESPACE };
  };
  const reader = cache && cacheKey !== undefined ? cache.get(cacheKey, build) : build();
  const ns = reader.namespace;
  const env = reader.type.fromBuffer(
    Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
  ) as AvroEnvelope;
  const decoded: DecodedChange = { op: opFromName(env._ns_op), table: env._ns_table, position: env._ns_lsn };
  const commitTime = commitTimeFromMicros(env._ns_committed_at?.long);
  if (commitTime !== undefined) decoded.commitTime = commitTime;
  if (env._ns_unchanged.length) decoded.unchanged = env._ns_unchanged;
  if (decoded.op === 'truncate') {
    const flags = env._ns_truncate?.[`${ns}.Truncate`];
    decoded.truncate = { cascade: flags?.cascade === true, restartIdentity: flags?.restart_identity === true };
  }
  const before = rowFromAvro(reader.meta, env.before, env._ns_before_absent, ns);
  const after = rowFromAvro(reader.meta, env.after, env._ns_unchanged, ns);
  if (before) decoded.before = before;
  if (after) decoded.after = after;
  return decoded;
}

export function createAvroCodec(): MessageCodec {
  const writerFor = avroWriters();
  const readers = new BoundedCache<{ type: avro.Type; meta: TableMetadata; namespace: string }>(256);
  return {
    format: 'avro',
    encode(event: ChangeEvent) {
      try {
        const writer = writerFor(event.table);
        return { value: Buffer.concat([writer.prefix, avroPayload(writer, event)]) };
      } catch (err) {
        throw encodeError('avro', event, err);
      }
    },
    decode(value: Uint8Array, _options?: DecodeOptions): DecodedChange {
      const framed = unframe(value, FRAME_AVRO);
      return decodeAvroPayload(framed.schemaText, framed.payload, readers, framed.fingerprint);
    },
  };
}

export const avroCodec = createAvroCodec();

/** Read an Avro-format record value (schema embedded) back into a change with canonical values. */
export function decodeAvroMessage(value: Uint8Array): DecodedChange {
  return avroCodec.decode(value);
}

/** The Avro schema embedded in a record value, for consumers that want to use their own Avro library. */
export function avroSchemaOf(value: Uint8Array): Record<string, unknown> {
  return JSON.parse(unframe(value, FRAME_AVRO).schemaText) as Record<string, unknown>;
}
