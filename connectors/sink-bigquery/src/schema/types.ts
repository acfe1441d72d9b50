import type { ColumnSchema, LogicalType } from '@nanosync/core';

/**
 * Logical type → BigQuery column type. The choice is made per column (never per value),
 * so one table always has one schema:
 *
 * | logical | BigQuery |
 * |---|---|
 * | int16, int32, int64 | INT64 |
 * | float32, float64 | FLOAT64 (NaN and ±Infinity included) |
 * | decimal(p,s), s ≤ 9 and p − s ≤ 29 | NUMERIC(p,s) |
 * | decimal(p,s), s ≤ 38 and p − s ≤ 38 | BIGNUMERIC(p,s) |
 * | decimal without precision, or wider, or negative scale | STRING (exact text) |
 * | bool | BOOL |
 * | bytes | BYTES |
 * | date | DATE |
 * | time | TIME |
 * | timestamp | DATETIME |
 * | timestamptz | TIMESTAMP |
 * | json | JSON |
 * | timetz, interval, uuid, enum, string, inet, cidr, macaddr, money, other | STRING |
 * | array of a scalar | that type, REPEATED |
 * | array of arrays | JSON (BigQuery has no array of arrays) |
 */
export type BigQueryType =
  | 'INT64'
  | 'FLOAT64'
  | 'NUMERIC'
  | 'BIGNUMERIC'
  | 'BOOL'
  | 'STRING'
  | 'BYTES'
  | 'DATE'
  | 'TIME'
  | 'DATETIME'
  | 'TIMESTAMP'
  | 'JSON';

export type FieldMode = 'NULLABLE' | 'REQUIRED' | 'REPEATED';

export interface BigQueryField {
  name: string;
  type: BigQueryType;
  mode: FieldMode;
  precision?: number;
  scale?: number;
}

/** How a column's values are encoded; follows from its logical type and the chosen BigQuery type. */
export interface ColumnMapping {
  source: ColumnSchema;
  field: BigQueryField;
  /** The logical type of each value written (the item type for REPEATED columns). */
  valueType: LogicalType;
  /** Arrays of arrays written as JSON text. */
  asJsonText: boolean;
}

export function bigQueryTypeOf(type: LogicalType): { type: BigQueryType; precision?: number; scale?: number } {
  switch (type.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
      return { type: 'INT64' };
    case 'float32':
    case 'float64':
      return { type: 'FLOAT64' };
    case 'decimal':
      return decimalType(type.precision, type.scale);
    case 'bool':
      return { type: 'BOOL' };
    case 'bytes':
      return { type: 'BYTES' };
    case 'date':
      return { type: 'DATE' };
    case 'time':
      return { type: 'TIME' };
    case 'timestamp':
      return { type: 'DATETIME' };
    case 'timestamptz':
      return { type: 'TIMESTAMP' };
    case 'json':
      return { type: 'JSON' };
    case 'array':
      return { type: 'JSON' };
    default:
      return { type: 'STRING' };
  }
}

function decimalType(
  precision: number | undefined,
  scale: number | undefined,
): { type: BigQueryType; precision?: number; scale?: number } {
  if (precision === undefined) return { type: 'STRING' };
  const s = scale ?? 0;
  if (s < 0 || s > precision) return { type: 'STRING' };
  if (s <= 9 && precision - s <= 29) return { type: 'NUMERIC', precision, scale: s };
  if (s <= 38 && precision - s <= 38) return { type: 'BIGNUMERIC', precision, scale: s };
  return { type: 'STRING' };
}

export function columnMappingFor(column: ColumnSchema, name: string, isKey: boolean): ColumnMapping {
  if (column.type.kind === 'array') {
    const items = column.type.items;
    if (items.kind === 'array') {
      return {
        source: column,
        field: { name, type: 'JSON', mode: 'NULLABLE' },
        valueType: column.type,
        asJsonText: true,
      };
    }
    const t = bigQueryTypeOf(items);
    return { source: column, field: { name, ...t, mode: 'REPEATED' }, valueType: items, asJsonText: false };
  }
  const t = bigQueryTypeOf(column.type);
  return {
    source: column,
    field: { name, ...t, mode: isKey ? 'REQUIRED' : 'NULLABLE' },
    valueType: column.type,
    asJsonText: false,
  };
}

/** `NUMERIC(12, 2)`, `STRING`, `ARRAY<INT64>`: the DDL spelling. */
export function ddlType(field: Pick<BigQueryField, 'type' | 'mode' | 'precision' | 'scale'>): string {
  const base =
    (field.type === 'NUMERIC' || field.type === 'BIGNUMERIC') && field.precision !== undefined
      ? `${field.type}(${field.precision}, ${field.scale ?? 0})`
      : field.type;
  return field.mode === 'REPEATED' ? `ARRAY<${base}>` : base;
}

/** Types BigQuery can cluster on (FLOAT64, BYTES, TIME, JSON and arrays cannot). */
export function clusterable(field: BigQueryField): boolean {
  if (field.mode === 'REPEATED') return false;
  return ['INT64', 'NUMERIC', 'BIGNUMERIC', 'BOOL', 'STRING', 'DATE', 'DATETIME', 'TIMESTAMP'].includes(field.type);
}

/** Types a primary key column may have. */
export function keyable(field: BigQueryField): boolean {
  return field.mode !== 'REPEATED' && field.type !== 'JSON';
}

/** Names the REST API uses for the same types (older aliases included). */
export function normalizeApiType(type: string | undefined): BigQueryType | string {
  switch ((type ?? '').toUpperCase()) {
    case 'INTEGER':
    case 'INT64':
      return 'INT64';
    case 'FLOAT':
    case 'FLOAT64':
      return 'FLOAT64';
    case 'BOOLEAN':
    case 'BOOL':
      return 'BOOL';
    default:
      return (type ?? '').toUpperCase();
  }
}
