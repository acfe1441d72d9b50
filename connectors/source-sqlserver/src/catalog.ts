import type { TableRef, TableSchema } from '@nanosync/core';
import type sql from 'mssql';
import { noKey, tableNotFound } from './errors.js';
import { type Lsn, lsnFromBytes } from './position.js';
import { declaredType, logicalType, type MssqlColumn, type TimePrecision } from './types/mapping.js';

/** Anything that can run a parameterised query: a pool, a transaction's request factory. */
export interface Queryable {
  request(): sql.Request;
}

/** A described table: its columns as SQL Server declares them, its key, its object id. */
export interface MssqlTable {
  schema: string;
  name: string;
  objectId: number;
  columns: MssqlColumn[];
  /** Key columns in index order (primary key, else the narrowest unique index on NOT NULL columns). */
  keyColumns: string[];
  /** `PK_orders`: the index the key comes from, for capture instances (`@index_name`). */
  keyIndex: string;
  keyIsPrimary: boolean;
  /** The index's statistics (same id as the index), for histogram planning. */
  keyStatsId: number;
  /**
   * Computed columns, left out of `columns`: CDC records them as NULL, so streaming them
   * would contradict the snapshot. Their change-table columns are skipped too.
   */
  computedColumns: string[];
}

/**
 * Base type name of a column: the system type for alias types, the CLR type's own name for
 * hierarchyid/geography/geometry (which all share system type 240).
 */
export const COLUMNS_SQL = `SELECT c.column_id, c.name,
       CASE WHEN c.system_type_id = 240 THEN TYPE_NAME(c.user_type_id) ELSE TYPE_NAME(c.system_type_id) END AS type_name,
       c.max_length, c.precision, c.scale, c.is_nullable, c.collation_name, c.is_computed
  FROM sys.columns c WHERE c.object_id = @object_id ORDER BY c.column_id`;

export const TABLE_SQL = `SELECT o.object_id FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id
 WHERE s.name = @schema AND o.name = @name AND o.type = 'U'`;

/** Candidate keys: the primary key, then unique indexes whose columns are all NOT NULL (no filter). */
export const KEYS_SQL = `SELECT i.index_id, i.name AS index_name, i.is_primary_key, c.name AS column_name, ic.key_ordinal
  FROM sys.indexes i
  JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id AND ic.key_ordinal > 0
  JOIN sys.columns c ON c.object_id = i.object_id AND c.column_id = ic.column_id
 WHERE i.object_id = @object_id AND (i.is_primary_key = 1 OR i.is_unique = 1) AND i.has_filter = 0 AND i.is_disabled = 0
   AND NOT EXISTS (SELECT 1 FROM sys.index_columns ic2 JOIN sys.columns c2 ON c2.object_id = ic2.object_id AND c2.column_id = ic2.column_id
                    WHERE ic2.object_id = i.object_id AND ic2.index_id = i.index_id AND ic2.key_ordinal > 0 AND c2.is_nullable = 1)
 ORDER BY i.is_primary_key DESC, i.index_id, ic.key_ordinal`;

interface KeyRow {
  index_id: number;
  index_name: string;
  is_primary_key: boolean;
  column_name: string;
}

/** Primary key first; otherwise the unique index with the fewest columns (lowest id on ties). */
export function chooseKey(
  rows: KeyRow[],
): { indexName: string; indexId: number; primary: boolean; columns: string[] } | undefined {
  const byIndex = new Map<number, { indexName: string; indexId: number; primary: boolean; columns: string[] }>();
  for (const r of rows) {
    let entry = byIndex.get(r.index_id);
    if (!entry) {
      entry = { indexName: r.index_name, indexId: r.index_id, primary: r.is_primary_key, columns: [] };
      byIndex.set(r.index_id, entry);
    }
    entry.columns.push(r.column_name);
  }
  const candidates = [...byIndex.values()];
  return (
    candidates.find((c) => c.primary) ??
    candidates.sort((a, b) => a.columns.length - b.columns.length || a.indexId - b.indexId)[0]
  );
}

export async function findTable(db: Queryable, table: TableRef): Promise<number | undefined> {
  const result = await db
    .request()
    .input('schema', table.schema)
    .input('name', table.name)
    .query<{ object_id: number }>(TABLE_SQL);
  return result.recordset[0]?.object_id;
}

export async function describeTable(db: Queryable, table: TableRef, database: string): Promise<MssqlTable> {
  const objectId = await findTable(db, table);
  if (objectId === undefined) throw tableNotFound(table, database);
  const all = await readColumns(db, objectId, true);
  const columns = all.filter((c) => !c.computed).map(({ computed: _computed, ...c }) => c);
  const keys = await db.request().input('object_id', objectId).query<KeyRow>(KEYS_SQL);
  const key = chooseKey(keys.recordset);
  if (!key) throw noKey(table);
  return {
    schema: table.schema,
    name: table.name,
    objectId,
    columns,
    keyColumns: key.columns,
    keyIndex: key.indexName,
    keyIsPrimary: key.primary,
    keyStatsId: key.indexId,
    computedColumns: all.filter((c) => c.computed).map((c) => c.name),
  };
}

interface ColumnRow {
  name: string;
  type_name: string;
  max_length: number;
  precision: number;
  scale: number;
  is_nullable: boolean;
  collation_name: string | null;
  is_computed: boolean;
}

/** Columns of a table (or of a change table, whose `__$` columns are left out). */
export async function readColumns(db: Queryable, objectId: number): Promise<MssqlColumn[]>;
export async function readColumns(
  db: Queryable,
  objectId: number,
  withComputed: true,
): Promise<(MssqlColumn & { computed: boolean })[]>;
export async function readColumns(
  db: Queryable,
  objectId: number,
  withComputed = false,
): Promise<(MssqlColumn & { computed?: boolean })[]> {
  const result = await db.request().input('object_id', objectId).query<ColumnRow>(COLUMNS_SQL);
  return result.recordset
    .filter((r) => !r.name.startsWith('__$'))
    .map((r) => ({
      name: r.name,
      typeName: r.type_name.toLowerCase(),
      maxLength: r.max_length,
      precision: r.precision,
      scale: r.scale,
      nullable: r.is_nullable,
      collation: r.collation_name,
      ...(withComputed ? { computed: r.is_computed } : {}),
    }));
}

export function toTableSchema(
  table: { schema: string; name: string; keyColumns: string[] },
  columns: MssqlColumn[],
  precision: TimePrecision,
): TableSchema {
  return {
    schema: table.schema,
    name: table.name,
    keyColumns: table.keyColumns,
    columns: columns.map((c) => ({
      name: c.name,
      type: logicalType(c, precision),
      nullable: c.nullable,
      sourceType: declaredType(c),
    })),
  };
}

/** One row of `cdc.change_tables` for a table the pipeline captures. */
export interface CaptureInstance {
  name: string;
  sourceObjectId: number;
  changeTableObjectId: number;
  /** The change table's own name (`dbo_orders_CT`), read from the catalog, never derived. */
  changeTable: string;
  /** Low end of the instance's range (`start_lsn`); null until the capture job established it. */
  startLsn: Lsn | null;
  createDate: Date;
  roleName: string | null;
  indexName: string | null;
}

export const CAPTURE_INSTANCES_SQL = `SELECT ct.capture_instance, ct.source_object_id, ct.object_id AS change_table_id,
       OBJECT_NAME(ct.object_id) AS change_table, ct.start_lsn, ct.create_date, ct.role_name, ct.index_name
  FROM cdc.change_tables ct ORDER BY ct.source_object_id, ct.create_date`;

export async function readCaptureInstances(db: Queryable): Promise<CaptureInstance[]> {
  const result = await db.request().query<{
    capture_instance: string;
    source_object_id: number;
    change_table_id: number;
    change_table: string;
    start_lsn: Buffer | null;
    create_date: Date;
    role_name: string | null;
    index_name: string | null;
  }>(CAPTURE_INSTANCES_SQL);
  return result.recordset.map((r) => ({
    name: r.capture_instance,
    sourceObjectId: r.source_object_id,
    changeTableObjectId: r.change_table_id,
    changeTable: r.change_table,
    startLsn: r.start_lsn ? lsnFromBytes(r.start_lsn) : null,
    createDate: r.create_date,
    roleName: r.role_name,
    indexName: r.index_name,
  }));
}
