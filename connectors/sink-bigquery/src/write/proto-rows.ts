import { type Row, type Value, qualifiedName } from '@nanosync/core';
import protobuf from 'protobufjs';
import type { BigQueryField, BigQueryType, ColumnMapping } from '../schema/types.js';
import type { TargetTable } from '../schema/target-table.js';
import { type ProtoValue, ValueRejected, protoValueOf } from './values.js';

/**
 * Rows for the Storage Write API: a proto2 message per table, described to BigQuery by a
 * DescriptorProto sent with the first request of a connection, and encoded here with
 * protobufjs. Field names are the BigQuery column names when they are protobuf
 * identifiers; other columns get `f<number>` and carry their real name in the
 * `google.cloud.bigquery.storage.v1.column_name` field option, which is how the API maps
 * a field onto a column with any name.
 */

// FieldDescriptorProto.Type
const TYPE_DOUBLE = 1;
const TYPE_INT64 = 3;
const TYPE_INT32 = 5;
const TYPE_BOOL = 8;
const TYPE_STRING = 9;
const TYPE_BYTES = 12;
// FieldDescriptorProto.Label
const LABEL_OPTIONAL = 1;
const LABEL_REPEATED = 3;

const PROTO_TYPE: Record<BigQueryType, { descriptor: number; protobufjs: string }> = {
  INT64: { descriptor: TYPE_INT64, protobufjs: 'int64' },
  FLOAT64: { descriptor: TYPE_DOUBLE, protobufjs: 'double' },
  NUMERIC: { descriptor: TYPE_STRING, protobufjs: 'string' },
  BIGNUMERIC: { descriptor: TYPE_STRING, protobufjs: 'string' },
  BOOL: { descriptor: TYPE_BOOL, protobufjs: 'bool' },
  STRING: { descriptor: TYPE_STRING, protobufjs: 'string' },
  BYTES: { descriptor: TYPE_BYTES, protobufjs: 'bytes' },
  DATE: { descriptor: TYPE_INT32, protobufjs: 'int32' },
  TIME: { descriptor: TYPE_STRING, protobufjs: 'string' },
  DATETIME: { descriptor: TYPE_STRING, protobufjs: 'string' },
  TIMESTAMP: { descriptor: TYPE_INT64, protobufjs: 'int64' },
  JSON: { descriptor: TYPE_STRING, protobufjs: 'string' },
};

/** Pseudo-columns of CDC writes. */
export const CHANGE_TYPE = '_CHANGE_TYPE';
export const CHANGE_SEQUENCE_NUMBER = '_CHANGE_SEQUENCE_NUMBER';

export interface ProtoField {
  /** Name in the message. */
  protoName: string;
  number: number;
  /** BigQuery column (or pseudo-column) it fills. */
  column: string;
  field: BigQueryField;
  /** Present for fields that carry a source column. */
  mapping?: ColumnMapping;
}

export interface FieldDescriptor {
  name: string;
  number: number;
  label: number;
  type: number;
  options?: Record<string, unknown>;
}

export interface RowDescriptor {
  name: string;
  field: FieldDescriptor[];
}

export interface RowLayout {
  fields: ProtoField[];
  /** Source column → its field. */
  bySource: Map<string, ProtoField>;
  /** Extra (non-source) fields by BigQuery name. */
  extras: Map<string, ProtoField>;
  descriptor: RowDescriptor;
  type: protobuf.Type;
}

const PROTO_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The message layout for a target table: its fields in table order (extras the table
 * already has, like the changelog fields, are among `target.fields`), then `extras` —
 * columns that are not in the table schema, such as the CDC pseudo-columns.
 */
export function rowLayoutFor(target: TargetTable, extras: readonly BigQueryField[] = []): RowLayout {
  const bySourceName = new Map([...target.columns.values()].map((m) => [m.field.name, m]));
  const fields: ProtoField[] = [];
  const used = new Set<string>();
  let number = 0;
  for (const field of [...target.fields, ...extras]) {
    number += 1;
    let protoName =
      PROTO_IDENTIFIER.test(field.name) && !used.has(field.name.toLowerCase()) ? field.name : `f${number}`;
    while (used.has(protoName.toLowerCase())) protoName = `f${number}_${used.size}`;
    used.add(protoName.toLowerCase());
    const mapping = bySourceName.get(field.name);
    fields.push(
      mapping
        ? { protoName, number, column: field.name, field, mapping }
        : { protoName, number, column: field.name, field },
    );
  }

  const descriptor: RowDescriptor = {
    name: messageName(qualifiedName(target.source)),
    field: fields.map((f) => {
      const d: FieldDescriptor = {
        name: f.protoName,
        number: f.number,
        label: f.field.mode === 'REPEATED' ? LABEL_REPEATED : LABEL_OPTIONAL,
        type: PROTO_TYPE[f.field.type].descriptor,
      };
      if (f.protoName !== f.column) d.options = { '.google.cloud.bigquery.storage.v1.columnName': f.column };
      return d;
    }),
  };
  const type = new protobuf.Type(descriptor.name);
  for (const f of fields) {
    type.add(
      new protobuf.Field(
        f.protoName,
        f.number,
        PROTO_TYPE[f.field.type].protobufjs,
        f.field.mode === 'REPEATED' ? 'repeated' : 'optional',
      ),
    );
  }
  // A root resolves the field types; the type is used for encoding only.
  new protobuf.Root().add(type);
  type.resolveAll();

  const bySource = new Map<string, ProtoField>();
  const extraFields = new Map<string, ProtoField>();
  for (const f of fields) {
    if (f.mapping) bySource.set(f.mapping.source.name, f);
    else extraFields.set(f.column, f);
  }
  return { fields, bySource, extras: extraFields, descriptor, type };
}

function messageName(table: string): string {
  const name = table.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(name) ? name : `t_${name}`;
}

/** A column value BigQuery cannot take; `column` is the source column. */
export class RowRejected extends Error {
  override readonly name = 'RowRejected';
  constructor(
    readonly column: string,
    readonly reason: string,
  ) {
    super(`column "${column}": ${reason}`);
  }
}

/**
 * Encodes one row: `image` holds source column values (a missing column or NULL writes no
 * field: NULL, or an empty array for REPEATED), `extras` the values of extra fields by
 * BigQuery name, already in protobuf form.
 */
export function encodeRow(
  layout: RowLayout,
  image: Row,
  extras: Record<string, ProtoValue | undefined> = {},
): Uint8Array {
  const message: Record<string, unknown> = {};
  for (const [sourceName, value] of Object.entries(image)) {
    const field = layout.bySource.get(sourceName);
    if (!field || value === null || value === undefined) continue;
    message[field.protoName] = convert(field, sourceName, value);
  }
  for (const [name, value] of Object.entries(extras)) {
    if (value === undefined) continue;
    const field = layout.extras.get(name);
    if (!field) throw new Error(`row layout has no field ${name}`);
    message[field.protoName] = value;
  }
  return layout.type.encode(message).finish();
}

function convert(field: ProtoField, sourceName: string, value: Value): ProtoValue {
  try {
    return protoValueOf(field.mapping as ColumnMapping, value);
  } catch (err) {
    if (err instanceof ValueRejected) throw new RowRejected(sourceName, err.message);
    throw err;
  }
}

/** Reads an encoded row back (tests and diagnostics): field name → protobufjs value. */
export function decodeRow(layout: RowLayout, bytes: Uint8Array): Record<string, unknown> {
  return layout.type.toObject(layout.type.decode(bytes), { longs: String, bytes: Array, defaults: false });
}
