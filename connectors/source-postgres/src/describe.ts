import type { ColumnSchema, TableRef, TableSchema } from '@nanosync/core';
import { tableNotFound } from './errors.js';
import { logicalTypeOf, type PgTypeInfo, type Queryable, sourceTypeName, type TypeCatalog } from './types/index.js';

/** A column with what the snapshot reader needs to decode it. */
export interface PgColumn {
  name: string;
  type: PgTypeInfo;
  typmod: number;
  notNull: boolean;
}

export interface PgTable {
  oid: number;
  schema: string;
  name: string;
  /** `r` table, `p` partitioned table. */
  kind: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: PgColumn[];
  keyColumns: string[];
  schemaInfo: TableSchema;
}

const REPLICA_IDENTITY = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;

/**
 * Current schema of each table, in the order asked.
 *
 * Columns: every live column (`attnum > 0`, not dropped) in `attnum` order, except
 * generated columns, which logical replication does not send: leaving them out keeps the
 * snapshot's rows and the stream's rows the same shape.
 *
 * Key columns, first match wins (the stream's relations.ts applies the same rule to
 * Relation messages, so snapshot rows and change events key a row identically):
 * 1. under `REPLICA IDENTITY USING INDEX`: that index's columns, in index order (deletes
 *    carry only those, so nothing else could key them);
 * 2. the primary key, in index order;
 * 3. under `REPLICA IDENTITY FULL` without a primary key: every column;
 * 4. none (empty list): `check()` reports such a table as unusable for CDC.
 *
 * A table that does not exist fails with PgTableNotFound naming it.
 */
export async function describeTables(
  client: Queryable,
  tables: TableRef[],
  catalog: TypeCatalog,
  database: string,
): Promise<PgTable[]> {
  const out: PgTable[] = [];
  for (const ref of tables) {
    const rel = await client.query(
      `SELECT c.oid::text AS oid, c.relkind::text AS kind, c.relreplident::text AS replident
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [ref.schema, ref.name],
    );
    const relRow = rel.rows[0];
    if (!relRow) throw tableNotFound(ref, database);
    const oid = Number(relRow.oid);
    const cols = await client.query(
      `SELECT a.attname::text AS name, a.atttypid::text AS type_oid, a.atttypmod::text AS typmod, a.attnotnull::text AS not_null
         FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum`,
      [oid],
    );
    const keys = await client.query(
      `SELECT i.indisprimary::text AS is_primary, a.attname::text AS name
         FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident)
        ORDER BY i.indisprimary DESC, k.ord`,
      [oid],
    );
    const typeOids = cols.rows.map((r) => Number(r.type_oid));
    await catalog.resolve(client, typeOids);
    const columns: PgColumn[] = cols.rows.map((r) => ({
      name: String(r.name),
      type: catalog.get(Number(r.type_oid)),
      typmod: Number(r.typmod),
      notNull: r.not_null === 'true',
    }));
    const replicaIdentity = REPLICA_IDENTITY[String(relRow.replident) as keyof typeof REPLICA_IDENTITY] ?? 'default';
    const primary = keys.rows.filter((r) => r.is_primary === 'true').map((r) => String(r.name));
    const identityIndex = keys.rows.filter((r) => r.is_primary !== 'true').map((r) => String(r.name));
    const keyColumns =
      replicaIdentity === 'index' && identityIndex.length > 0
        ? identityIndex
        : primary.length > 0
          ? primary
          : replicaIdentity === 'full'
            ? columns.map((c) => c.name)
            : [];
    const schemaColumns: ColumnSchema[] = columns.map((c) => ({
      name: c.name,
      type: logicalTypeOf(c.type, c.typmod),
      nullable: !c.notNull,
      sourceType: sourceTypeName(c.type, c.typmod),
    }));
    out.push({
      oid,
      schema: ref.schema,
      name: ref.name,
      kind: String(relRow.kind),
      replicaIdentity,
      columns,
      keyColumns,
      schemaInfo: { schema: ref.schema, name: ref.name, columns: schemaColumns, keyColumns },
    });
  }
  return out;
}

/** The leaf partitions under a partitioned table (any depth), in name order. */
export async function listLeafPartitions(
  client: Queryable,
  oid: number,
): Promise<{ oid: number; schema: string; name: string }[]> {
  const { rows } = await client.query(
    `SELECT c.oid::text AS oid, n.nspname::text AS schema, c.relname::text AS name
       FROM pg_catalog.pg_partition_tree($1::oid) t
       JOIN pg_catalog.pg_class c ON c.oid = t.relid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE t.isleaf AND c.relkind = 'r'
      ORDER BY n.nspname, c.relname`,
    [oid],
  );
  return rows.map((r) => ({ oid: Number(r.oid), schema: String(r.schema), name: String(r.name) }));
}
