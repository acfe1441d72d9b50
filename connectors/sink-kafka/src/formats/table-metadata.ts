import type { ColumnSchema, LogicalType, TableSchema } from '@nanosync/core';

/**
 * What the Avro and Protobuf schemas carry beside the field types, under the key
 * `nanosync`: the table's name and key, and for each column its original name, the
 * field that holds it and its logical type. A reader turns field values back into
 * canonical values with it (days → `YYYY-MM-DD`, microseconds → timestamp text, …).
 */
export interface TableMetadata {
  version: 1;
  table: { schema: string; name: string };
  keyColumns: string[];
  columns: { name: string; field: string; type: LogicalType; nullable: boolean }[];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Names a generated record or message could trip over (JS object members, codec helpers, our envelope). */
const RESERVED = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  'constructor',
  'prototype',
  'toJSON',
  'toObject',
  'toString',
  'toBuffer',
  'encode',
  'decode',
  'fromObject',
  'verify',
  'create',
  'clone',
  'compare',
  'isValid',
  'wrap',
  'getType',
  '$type',
]);

/**
 * Avro and Protobuf field names must be identifiers; column names need not be. A valid,
 * unreserved name is kept; anything else becomes `c_` followed by the name with every
 * non-identifier character replaced by `_`, suffixed `_2`, `_3`, … until unique. Kept
 * names are assigned first (in column order), so adding a column never renames an existing
 * field. `clashKey` says when two names count as the same: exact for Avro; for Protobuf
 * lowercase without underscores, because protoc refuses two fields whose JSON names
 * (`first_name` → `firstName`) coincide.
 */
export function assignFieldNames(
  columns: readonly ColumnSchema[],
  clashKey: (name: string) => string = (n) => n,
): string[] {
  const keep = (name: string) => IDENTIFIER.test(name) && !RESERVED.has(name);
  const used = new Set<string>();
  const names: (string | undefined)[] = columns.map((c) => {
    if (!keep(c.name) || used.has(clashKey(c.name))) return undefined;
    used.add(clashKey(c.name));
    return c.name;
  });
  return columns.map((c, i) => {
    const kept = names[i];
    if (kept !== undefined) return kept;
    const base = `c_${c.name.replace(/[^A-Za-z0-9_]/g, '_')}`;
    let candidate = base;
    for (let n = 2; used.has(clashKey(candidate)); n++) candidate = `${base}_${n}`;
    used.add(clashKey(candidate));
    return candidate;
  });
}

/** protoc's test for clashing field names, made stricter: lowercase, underscores removed. */
export function protobufClashKey(name: string): string {
  return name.replace(/_/g, '').toLowerCase();
}

export function tableMetadata(table: TableSchema, clashKey?: (name: string) => string): TableMetadata {
  const fields = assignFieldNames(table.columns, clashKey);
  return {
    version: 1,
    table: { schema: table.schema, name: table.name },
    keyColumns: [...table.keyColumns],
    columns: table.columns.map((c, i) => ({ name: c.name, field: fields[i]!, type: c.type, nullable: c.nullable })),
  };
}

/** A stable identity for a table schema, used to cache compiled writers. */
export function schemaIdentity(table: TableSchema): string {
  return JSON.stringify([
    table.schema,
    table.name,
    table.keyColumns,
    table.columns.map((c) => [c.name, c.type, c.nullable]),
  ]);
}

/** The innermost element kind of an array type (multi-dimensional arrays nest values, not types). */
export function leafType(type: LogicalType): LogicalType {
  let t = type;
  while (t.kind === 'array') t = t.items;
  return t;
}
