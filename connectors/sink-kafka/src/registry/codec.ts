import { type ChangeEvent, NanosyncError, type TableSchema, qualifiedName } from '@nanosync/core';
import protobuf from 'protobufjs';
import { KafkaErrorCode } from '../errors.js';
import { avroKeyWriter, avroPayload, avroWriters } from '../formats/avro.js';
import { encodeError } from '../formats/codec.js';
import { schemaIdentity } from '../formats/table-metadata.js';
import {
  protobufKeyWriter,
  protobufMessageIndex,
  protobufPayload,
  protobufSchemaText,
  protobufWriters,
} from '../formats/protobuf.js';
import { RegistryHttpError, type SchemaRegistryClient, type SchemaType, registryError } from './client.js';

export const SUBJECT_STRATEGIES = ['topic_name', 'record_name', 'topic_record_name'] as const;
export type SubjectStrategy = (typeof SUBJECT_STRATEGIES)[number];

/** Byte 0 of the Confluent wire format. */
export const WIRE_MAGIC = 0x00;

/** One table on one topic, registered: the header every record starts with and the key encoder. */
interface Registered {
  valueSubject: string;
  valueId: number;
  valueHeader: Buffer;
  encodeValue: (event: ChangeEvent) => Uint8Array;
  keySubject?: string;
  keyId?: number;
  keyHeader?: Buffer;
  encodeKey?: (event: ChangeEvent) => Uint8Array;
}

/** An identifier segment for an Avro namespace or Protobuf package: letters, digits, `_`, not starting with a digit. */
function segment(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(s) || s === '' ? `_${s}` : s;
}

/** Avro namespace / Protobuf package of a table in registry mode: one per table, so record names differ. */
export function registryNamespace(format: 'avro' | 'protobuf', table: TableSchema): string {
  return `${format === 'avro' ? 'io.nanosync' : 'nanosync'}.${segment(table.schema)}.${segment(table.name)}`;
}

/** The subject a schema is registered under, per the Confluent subject name strategies. */
export function subjectName(strategy: SubjectStrategy, topic: string, recordName: string, isKey: boolean): string {
  switch (strategy) {
    case 'topic_name':
      return `${topic}-${isKey ? 'key' : 'value'}`;
    case 'record_name':
      return recordName;
    case 'topic_record_name':
      return `${topic}-${recordName}`;
  }
}

/** The Confluent header: magic 0, the schema id (32-bit big-endian), and for Protobuf the message indexes. */
export function wireHeader(id: number, messageIndexes?: number[]): Buffer {
  const head = Buffer.alloc(5);
  head[0] = WIRE_MAGIC;
  head.writeUInt32BE(id, 1);
  if (!messageIndexes) return head;
  // Protobuf: zigzag varints, the count first; the common [0] is written as a single 0.
  if (messageIndexes.length === 1 && messageIndexes[0] === 0) return Buffer.concat([head, Buffer.from([0])]);
  const bytes: number[] = [];
  const varint = (n: number) => {
    let z = (n << 1) ^ (n >> 31);
    while (z > 0x7f) {
      bytes.push((z & 0x7f) | 0x80);
      z >>>= 7;
    }
    bytes.push(z);
  };
  varint(messageIndexes.length);
  for (const i of messageIndexes) varint(i);
  return Buffer.concat([head, Buffer.from(bytes)]);
}

/** Split a Confluent wire-format value into schema id, Protobuf message indexes (when asked) and payload. */
export function readWireHeader(
  value: Uint8Array,
  protobufIndexes = false,
): { id: number; indexes: number[]; payload: Uint8Array } {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length < 5 || buf[0] !== WIRE_MAGIC)
    throw new NanosyncError(KafkaErrorCode.KafkaEncode, 'not a Schema Registry wire-format message: byte 0 is not 0');
  const id = buf.readUInt32BE(1);
  let at = 5;
  const indexes: number[] = [];
  if (protobufIndexes) {
    const varint = () => {
      let result = 0;
      let shift = 0;
      for (;;) {
        const b = buf[at++]!;
        result |= (b & 0x7f) << shift;
        if (!(b & 0x80)) break;
        shift += 7;
      }
      return (result >>> 1) ^ -(result & 1);
    };
    const count = varint();
    if (count === 0) indexes.push(0);
    for (let i = 0; i < count; i++) indexes.push(varint());
  }
  return { id, indexes, payload: buf.subarray(at) };
}

/**
 * Avro and Protobuf in the Confluent wire format: each table's value schema (and key
 * schema) is registered under the subject the strategy names, once per table schema and
 * topic, and every record is `0x00`, the 4-byte schema id, (Protobuf: the message
 * indexes), then the payload. A new table schema (DDL) registers a new version; when the
 * subject's compatibility rule refuses it, the pipeline stops with an error naming the
 * subject, the rule and the columns that changed.
 */
export class RegistryCodec {
  private readonly avroWriter = avroWriters((t) => registryNamespace('avro', t));
  private readonly protobufWriter = protobufWriters();
  private readonly registered = new WeakMap<TableSchema, Map<string, Registered>>();
  /** In-flight and finished registrations by schema identity, topic and key columns. */
  private readonly byIdentity = new Map<string, Promise<Registered>>();

  constructor(
    readonly format: 'avro' | 'protobuf',
    private readonly client: SchemaRegistryClient,
    private readonly strategy: SubjectStrategy,
  ) {}

  /** Whether `prepare` already ran for this table schema object and topic (the hot path's check). */
  isReady(table: TableSchema, topic: string): boolean {
    return this.registered.get(table)?.has(topic) === true;
  }

  /** Register the table's schemas for `topic` (cached: a table schema seen before costs nothing). */
  async prepare(table: TableSchema, topic: string, keyColumns: readonly string[]): Promise<void> {
    let perTopic = this.registered.get(table);
    if (perTopic?.has(topic)) return;
    const identity = JSON.stringify([schemaIdentity(table), topic, keyColumns]);
    let pending = this.byIdentity.get(identity);
    if (!pending) {
      pending = this.register(table, topic, keyColumns);
      this.byIdentity.set(identity, pending);
      pending.catch(() => this.byIdentity.delete(identity));
      if (this.byIdentity.size > 4096) this.byIdentity.delete(this.byIdentity.keys().next().value as string);
    }
    const done = await pending;
    if (!perTopic) {
      perTopic = new Map();
      this.registered.set(table, perTopic);
    }
    perTopic.set(topic, done);
  }

  encodeValue(event: ChangeEvent, topic: string): Buffer {
    const r = this.require(event.table, topic);
    try {
      return Buffer.concat([r.valueHeader, r.encodeValue(event)]);
    } catch (err) {
      throw encodeError(this.format, event, err);
    }
  }

  /** The key in the key schema, or null when the table has no key columns. */
  encodeKey(event: ChangeEvent, topic: string): Buffer | null {
    const r = this.require(event.table, topic);
    if (!r.encodeKey || !r.keyHeader) return null;
    try {
      return Buffer.concat([r.keyHeader, r.encodeKey(event)]);
    } catch (err) {
      throw encodeError(this.format, event, err);
    }
  }

  private require(table: TableSchema, topic: string): Registered {
    const r = this.registered.get(table)?.get(topic);
    if (!r)
      throw new NanosyncError(
        KafkaErrorCode.KafkaSchemaRegistry,
        `internal: schema of "${qualifiedName(table)}" not registered for topic "${topic}" before encoding`,
      );
    return r;
  }

  private async register(table: TableSchema, topic: string, keyColumns: readonly string[]): Promise<Registered> {
    const ns = registryNamespace(this.format, table);
    const schemaType: SchemaType = this.format === 'avro' ? 'AVRO' : 'PROTOBUF';
    let valueText: string;
    let encodeValue: (event: ChangeEvent) => Uint8Array;
    let valueIndexes: number[] | undefined;
    if (this.format === 'avro') {
      const writer = this.avroWriter(table);
      valueText = writer.text;
      encodeValue = (event) => avroPayload(writer, event);
    } else {
      const writer = this.protobufWriter(table);
      valueText = protobufSchemaText(writer.descriptor, ns);
      valueIndexes = [protobufMessageIndex(writer.descriptor, 'Envelope')];
      encodeValue = (event) => protobufPayload(writer, event);
    }
    const valueSubject = subjectName(this.strategy, topic, `${ns}.Envelope`, false);
    const valueId = await this.registerOne(table, valueSubject, valueText, schemaType);
    const registered: Registered = {
      valueSubject,
      valueId,
      valueHeader: wireHeader(valueId, valueIndexes),
      encodeValue,
    };
    if (keyColumns.length > 0) {
      const keySubject = subjectName(this.strategy, topic, `${ns}.Key`, true);
      if (this.format === 'avro') {
        const key = avroKeyWriter(table, keyColumns, ns);
        registered.keyId = await this.registerOne(table, keySubject, key.text, schemaType);
        registered.keyHeader = wireHeader(registered.keyId);
        registered.encodeKey = key.encode;
      } else {
        const key = protobufKeyWriter(table, keyColumns, ns);
        registered.keyId = await this.registerOne(table, keySubject, key.text, schemaType);
        registered.keyHeader = wireHeader(registered.keyId, [key.messageIndex]);
        registered.encodeKey = key.encode;
      }
      registered.keySubject = keySubject;
    }
    return registered;
  }

  private async registerOne(table: TableSchema, subject: string, text: string, type: SchemaType): Promise<number> {
    try {
      return await this.client.register(subject, text, type);
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status === 409)
        throw await this.incompatible(table, subject, text, err);
      if (err instanceof RegistryHttpError && err.status === 422) {
        throw new NanosyncError(
          KafkaErrorCode.KafkaSchemaRegistry,
          `Schema Registry at ${this.client.url} refused the ${type} schema of table "${qualifiedName(table)}" for subject "${subject}" as invalid: ${err.message}`,
          { cause: err, retriable: false, details: { subject, table: qualifiedName(table) } },
        );
      }
      throw registryError(err, this.client, `register subject "${subject}"`);
    }
  }

  /** The refusal as the pipeline's error: subject, rule, and the columns whose fields differ from the latest version. */
  private async incompatible(
    table: TableSchema,
    subject: string,
    text: string,
    err: RegistryHttpError,
  ): Promise<NanosyncError> {
    const name = qualifiedName(table);
    let rule = 'its compatibility rule';
    let columns: string[] = [];
    let version = '';
    try {
      rule = await this.client.compatibility(subject);
      const latest = await this.client.latest(subject);
      if (latest) {
        version = ` (latest version ${latest.version}, id ${latest.id})`;
        columns = changedColumns(this.format, latest.schema, text);
      }
    } catch {
      // the refusal itself is what matters; details are best effort
    }
    const what = columns.length ? `column${columns.length > 1 ? 's' : ''} ${columns.join(', ')}` : 'the new schema';
    return new NanosyncError(
      KafkaErrorCode.KafkaSchemaIncompatible,
      `schema change of table "${name}" refused by the Schema Registry: subject "${subject}"${version} has compatibility ${rule}, and ${what} of the new schema break${columns.length === 1 ? 's' : ''} it (${err.message})`,
      { cause: err, retriable: false, details: { subject, rule, table: name, columns: columns.join(',') } },
    );
  }
}

/** Columns whose field was added, dropped or retyped between two schemas (Avro JSON or `.proto` text). */
export function changedColumns(format: 'avro' | 'protobuf', oldText: string, newText: string): string[] {
  const before = rowFields(format, oldText);
  const after = rowFields(format, newText);
  const out: string[] = [];
  for (const [column, sig] of after) {
    const old = before.get(column);
    if (old === undefined) out.push(`"${column}" (added)`);
    else if (old !== sig) out.push(`"${column}" (type changed)`);
  }
  for (const column of before.keys()) if (!after.has(column)) out.push(`"${column}" (dropped)`);
  return out;
}

/** Column name → field type signature of a schema's `Row` (or `Key`) record/message. */
function rowFields(format: 'avro' | 'protobuf', text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (format === 'avro') {
    const schema = JSON.parse(text) as {
      name?: string;
      fields?: { name: string; doc?: string; type: unknown }[];
      nanosync?: { columns?: { name: string; field: string }[] };
    };
    const rowType = schema.fields?.find((f) => f.name === 'before')?.type;
    const record = Array.isArray(rowType)
      ? (rowType.find((t) => typeof t === 'object') as { fields?: { name: string; type: unknown }[] } | undefined)
      : schema;
    const columnOf = new Map(schema.nanosync?.columns?.map((c) => [c.field, c.name]) ?? []);
    for (const f of record?.fields ?? []) out.set(columnOf.get(f.name) ?? f.name, JSON.stringify(f.type));
    return out;
  }
  const root = protobuf.parse(text, { keepCase: true, alternateCommentMode: true }).root;
  const type = (root.lookupTypeOrEnum('Row') ?? root.lookupTypeOrEnum('Key')) as protobuf.Type | undefined;
  for (const f of Object.values(type?.fields ?? {})) {
    const comment = /column "(.*)"/.exec(f.comment ?? '')?.[1];
    out.set(comment ?? f.name, `${f.type}:${f.id}`);
  }
  return out;
}
