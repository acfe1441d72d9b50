import type { LogicalType, Row, Value } from '@nanosync/core';
import { quoteIdentifier } from '../naming.js';
import type { TargetTable } from '../schema/target-table.js';
import type { ColumnMapping } from '../schema/types.js';

/**
 * Reading key values back out of BigQuery (to delete every row of a CDC table on TRUNCATE):
 * each key column is selected as text in the canonical form core uses for its logical type,
 * so the values go through the same encoder as the stream's own keys.
 */
export function keySelectSql(target: TargetTable, tablePath: string): string {
  const parts = keyMappings(target).map((m, i) => `${projection(m)} AS k${i}`);
  return `SELECT ${parts.join(', ')} FROM ${tablePath}`;
}

export function keyMappings(target: TargetTable): ColumnMapping[] {
  const bySourceKey = target.source.keyColumns.map((k) => target.columns.get(k));
  return bySourceKey.filter((m): m is ColumnMapping => m !== undefined);
}

function projection(mapping: ColumnMapping): string {
  const c = quoteIdentifier(mapping.field.name);
  switch (mapping.field.type) {
    case 'DATE':
      return `FORMAT_DATE('%Y-%m-%d', ${c})`;
    case 'DATETIME':
      return `FORMAT_DATETIME('%Y-%m-%dT%H:%M:%E6S', ${c})`;
    case 'TIMESTAMP':
      return `FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6SZ', ${c}, 'UTC')`;
    case 'TIME':
      return `FORMAT_TIME('%H:%M:%E6S', ${c})`;
    case 'BYTES':
      return `TO_BASE64(${c})`;
    default:
      return `CAST(${c} AS STRING)`;
  }
}

/** One result row of {@link keySelectSql} → the key as core values. */
export function keyFromResult(target: TargetTable, result: Record<string, unknown>): Row {
  const key: Row = {};
  keyMappings(target).forEach((mapping, i) => {
    const text = result[`k${i}`];
    key[mapping.source.name] =
      text === null || text === undefined ? null : valueFromText(mapping.valueType, String(text));
  });
  return key;
}

function valueFromText(type: LogicalType, text: string): Value {
  switch (type.kind) {
    case 'int16':
    case 'int32':
      return Number(text);
    case 'float32':
    case 'float64':
      return text === 'nan'
        ? Number.NaN
        : text === 'inf'
          ? Number.POSITIVE_INFINITY
          : text === '-inf'
            ? Number.NEGATIVE_INFINITY
            : Number(text);
    case 'bool':
      return text === 'true';
    case 'bytes':
      return new Uint8Array(Buffer.from(text, 'base64'));
    default:
      return text;
  }
}
