import { NanosyncError, type TableSchema, qualifiedName } from '@nanosync/core';
import { columnNamesFor, quoteIdentifier, quoteTablePath } from '../naming.js';
import {
  type BigQueryField,
  type ColumnMapping,
  clusterable,
  columnMappingFor,
  ddlType,
  keyable,
  normalizeApiType,
} from './types.js';
import { BigQueryErrorCode } from '../errors.js';

/** The changelog columns of append mode. `_ns_event_id` is the changelog's primary key. */
export const CHANGELOG_FIELDS: BigQueryField[] = [
  { name: '_ns_event_id', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_op', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_position', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_committed_at', type: 'TIMESTAMP', mode: 'NULLABLE' },
  { name: '_ns_unchanged', type: 'STRING', mode: 'REPEATED' },
];

/** BigQuery allows at most 16 primary key columns for CDC and at most 4 clustering columns. */
const MAX_KEY_COLUMNS = 16;
const MAX_CLUSTERING_COLUMNS = 4;

export type TableKind = 'mirror' | 'changelog';

/** What the sink creates for one source table. */
export interface TargetTable {
  source: TableSchema;
  kind: TableKind;
  /** Source column → mapping (BigQuery name, type, value encoding), in source order. */
  columns: Map<string, ColumnMapping>;
  fields: BigQueryField[];
  primaryKey: string[];
  clustering: string[];
  partitionBy?: string;
}

/**
 * The BigQuery table for a source table. A mirror (upsert mode) has the source columns,
 * key columns REQUIRED and declared as the primary key, clustered on the key. A changelog
 * (append mode) has the changelog fields first, every source column NULLABLE (a delete
 * carries only the key), the event id as primary key, and is partitioned by commit day.
 */
export function targetTableFor(source: TableSchema, kind: TableKind): TargetTable {
  const table = qualifiedName(source);
  const reserved = kind === 'changelog' ? CHANGELOG_FIELDS.map((f) => f.name) : [];
  const names = columnNamesFor(source, reserved);
  const columns = new Map<string, ColumnMapping>();
  for (const column of source.columns) {
    const isKey = kind === 'mirror' && source.keyColumns.includes(column.name);
    columns.set(column.name, columnMappingFor(column, names.get(column.name) as string, isKey));
  }
  const fields = [...(kind === 'changelog' ? CHANGELOG_FIELDS : []), ...[...columns.values()].map((c) => c.field)];

  if (kind === 'changelog') {
    return {
      source,
      kind,
      columns,
      fields,
      primaryKey: ['_ns_event_id'],
      clustering: ['_ns_event_id'],
      partitionBy: '_ns_committed_at',
    };
  }
  if (source.keyColumns.length === 0) {
    throw new NanosyncError(
      BigQueryErrorCode.BigQuerySchema,
      `table ${table} has no primary key (and no replica identity columns): write_mode upsert needs a key to apply updates and deletes. ` +
        'Add a primary key at the source, or use write_mode: append',
      { retriable: false, details: { table } },
    );
  }
  if (source.keyColumns.length > MAX_KEY_COLUMNS) {
    throw new NanosyncError(
      BigQueryErrorCode.BigQuerySchema,
      `table ${table} has ${source.keyColumns.length} key columns; BigQuery primary keys allow at most ${MAX_KEY_COLUMNS}. Use write_mode: append for this table`,
      { retriable: false, details: { table } },
    );
  }
  const primaryKey: string[] = [];
  const clustering: string[] = [];
  let clusteringOpen = true;
  for (const key of source.keyColumns) {
    const mapping = columns.get(key);
    if (!mapping) {
      throw new NanosyncError(
        BigQueryErrorCode.BigQuerySchema,
        `table ${table}: key column "${key}" is not among its columns`,
        { retriable: false, details: { table, column: key } },
      );
    }
    if (!keyable(mapping.field)) {
      throw new NanosyncError(
        BigQueryErrorCode.BigQuerySchema,
        `table ${table}: key column "${key}" maps to BigQuery ${ddlType(mapping.field)}, which cannot be part of a primary key`,
        { retriable: false, details: { table, column: key } },
      );
    }
    primaryKey.push(mapping.field.name);
    // Clustering keeps a prefix of the key: a column that cannot cluster ends it.
    if (clusteringOpen && clusterable(mapping.field) && clustering.length < MAX_CLUSTERING_COLUMNS)
      clustering.push(mapping.field.name);
    else clusteringOpen = false;
  }
  return { source, kind, columns, fields, primaryKey, clustering };
}

export interface CreateTableOptions {
  projectId: string;
  datasetId: string;
  tableId: string;
  /** CDC tables: `max_staleness` in seconds; 0 leaves the option unset. */
  maxStalenessSeconds: number;
}

/** `CREATE TABLE IF NOT EXISTS …` for a target table. */
export function createTableSql(target: TargetTable, options: CreateTableOptions): string {
  const lines = target.fields.map(
    (f) => `  ${quoteIdentifier(f.name)} ${ddlType(f)}${f.mode === 'REQUIRED' ? ' NOT NULL' : ''}`,
  );
  lines.push(`  PRIMARY KEY (${target.primaryKey.map(quoteIdentifier).join(', ')}) NOT ENFORCED`);
  let sql = `CREATE TABLE IF NOT EXISTS ${quoteTablePath(options.projectId, options.datasetId, options.tableId)} (\n${lines.join(',\n')}\n)`;
  if (target.partitionBy) sql += `\nPARTITION BY DATE(${quoteIdentifier(target.partitionBy)})`;
  if (target.clustering.length > 0) sql += `\nCLUSTER BY ${target.clustering.map(quoteIdentifier).join(', ')}`;
  if (options.maxStalenessSeconds > 0)
    sql += `\nOPTIONS (max_staleness = ${intervalLiteral(options.maxStalenessSeconds)})`;
  return sql;
}

/** `INTERVAL '0-0 0 0:15:0' YEAR TO SECOND` for 900 seconds. */
export function intervalLiteral(seconds: number): string {
  const days = Math.floor(seconds / 86_400);
  const rest = seconds % 86_400;
  const h = Math.floor(rest / 3600);
  const m = Math.floor((rest % 3600) / 60);
  const s = rest % 60;
  return `INTERVAL '0-0 ${days} ${h}:${m}:${s}' YEAR TO SECOND`;
}

/** A column as the tables.get API reports it. */
export interface ExistingField {
  name: string;
  type?: string;
  mode?: string;
  precision?: string | number;
  scale?: string | number;
}

export interface SchemaChange {
  /** DDL statements that bring the table to the wanted schema, in order. */
  statements: string[];
  added: string[];
  relaxed: string[];
  widened: string[];
  /** Columns the table has and the source no longer sends (kept, nullable). */
  kept: string[];
}

/**
 * What to do with an existing table: add columns the source gained, relax columns the
 * source dropped (kept, NULL from now on), widen a NUMERIC or an INT64 when the new type
 * holds every old value. Anything else is an incompatible change: an error naming the
 * table, the column and both types, never a silent cast.
 */
export function planSchemaChange(
  target: TargetTable,
  existing: readonly ExistingField[],
  tablePath: string,
): SchemaChange {
  const table = qualifiedName(target.source);
  const change: SchemaChange = { statements: [], added: [], relaxed: [], widened: [], kept: [] };
  const byName = new Map(existing.map((f) => [f.name.toLowerCase(), f]));
  const wantedNames = new Set(target.fields.map((f) => f.name.toLowerCase()));
  const sourceOf = new Map([...target.columns.values()].map((c) => [c.field.name, c.source.name]));

  for (const wanted of target.fields) {
    const have = byName.get(wanted.name.toLowerCase());
    if (!have) {
      // Added columns are always NULLABLE (or REPEATED): rows already there have no value.
      const mode = wanted.mode === 'REPEATED' ? 'REPEATED' : 'NULLABLE';
      change.statements.push(
        `ALTER TABLE ${tablePath} ADD COLUMN IF NOT EXISTS ${quoteIdentifier(wanted.name)} ${ddlType({ ...wanted, mode })}`,
      );
      change.added.push(wanted.name);
      continue;
    }
    const haveType = normalizeApiType(have.type);
    const haveMode = (have.mode ?? 'NULLABLE').toUpperCase();
    const havePrecision = have.precision === undefined ? undefined : Number(have.precision);
    const haveScale = have.scale === undefined ? undefined : Number(have.scale);
    const haveText = ddlType({
      type: haveType as BigQueryField['type'],
      mode: haveMode as BigQueryField['mode'],
      precision: havePrecision,
      scale: haveScale,
    });
    const wantText = ddlType(wanted);
    if ((haveMode === 'REPEATED') !== (wanted.mode === 'REPEATED'))
      throw incompatible(table, sourceOf.get(wanted.name) ?? wanted.name, haveText, wantText);
    if (haveType === wanted.type && samePrecision(havePrecision, haveScale, wanted)) continue;
    if (widens(haveType, havePrecision, haveScale, wanted)) {
      if (wanted.mode !== 'REPEATED') {
        change.statements.push(
          `ALTER TABLE ${tablePath} ALTER COLUMN ${quoteIdentifier(have.name)} SET DATA TYPE ${ddlType({ ...wanted, mode: 'NULLABLE' })}`,
        );
        change.widened.push(have.name);
        continue;
      }
    }
    if (haveType === wanted.type && wanted.precision === undefined) continue;
    throw incompatible(table, sourceOf.get(wanted.name) ?? wanted.name, haveText, wantText);
  }
  for (const have of existing) {
    if (wantedNames.has(have.name.toLowerCase())) continue;
    change.kept.push(have.name);
    if ((have.mode ?? '').toUpperCase() === 'REQUIRED') {
      change.statements.push(`ALTER TABLE ${tablePath} ALTER COLUMN ${quoteIdentifier(have.name)} DROP NOT NULL`);
      change.relaxed.push(have.name);
    }
  }
  return change;
}

function samePrecision(precision: number | undefined, scale: number | undefined, wanted: BigQueryField): boolean {
  if (wanted.precision === undefined) return true;
  return precision === wanted.precision && (scale ?? 0) === (wanted.scale ?? 0);
}

/** True when every value of the existing type fits the wanted one exactly. */
function widens(
  haveType: string,
  precision: number | undefined,
  scale: number | undefined,
  wanted: BigQueryField,
): boolean {
  const digits = (
    type: string,
    p: number | undefined,
    s: number | undefined,
  ): { int: number; frac: number } | undefined => {
    if (type === 'INT64') return { int: 19, frac: 0 };
    if (type === 'NUMERIC') return p === undefined ? { int: 29, frac: 9 } : { int: p - (s ?? 0), frac: s ?? 0 };
    if (type === 'BIGNUMERIC') return p === undefined ? { int: 38, frac: 38 } : { int: p - (s ?? 0), frac: s ?? 0 };
    return undefined;
  };
  if (wanted.type !== 'NUMERIC' && wanted.type !== 'BIGNUMERIC') return false;
  const from = digits(haveType, precision, scale);
  const to = digits(wanted.type, wanted.precision, wanted.scale);
  if (!from || !to) return false;
  if (haveType === 'BIGNUMERIC' && wanted.type === 'NUMERIC') return false;
  return to.int >= from.int && to.frac >= from.frac;
}

function incompatible(table: string, column: string, have: string, want: string): NanosyncError {
  return new NanosyncError(
    BigQueryErrorCode.BigQuerySchema,
    `table ${table}: column "${column}" is ${have} in BigQuery but the source now has a type that maps to ${want}; ` +
      'BigQuery cannot change it without a cast that may lose values. Create a new table (table_names) or convert the column yourself, then resume',
    { retriable: false, details: { table, column, bigqueryType: have, sourceType: want } },
  );
}
