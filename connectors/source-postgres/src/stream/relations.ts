import type { ColumnSchema, TableSchema } from '@nanosync/core';
import { logicalTypeOf, type PgTypeInfo, type Queryable, sourceTypeName, type TypeCatalog } from '../types/index.js';
import type { RelationMessage, ReplicaIdentity } from './pgoutput.js';

/** A column as the stream decodes it: the Relation message's view plus its resolved type. */
export interface StreamColumn {
  name: string;
  type: PgTypeInfo;
  typeModifier: number;
  /** Sent in key tuples ('K'): part of the replica identity. */
  isIdentity: boolean;
}

/** One relation as announced by the latest Relation message for its OID. */
export interface StreamRelation {
  relationId: number;
  replicaIdentity: ReplicaIdentity;
  columns: StreamColumn[];
  /** Shared by every event of this relation until the next Relation message. */
  table: TableSchema;
}

/** What the catalog says about a relation now: NOT NULL flags and the primary key. */
export interface RelationCatalogInfo {
  notNull: Set<string>;
  /** Primary key columns in index order; empty when there is none. */
  primaryKey: string[];
}

/**
 * The relation's columns as of its Relation message. The message carries names, type OIDs,
 * modifiers and the identity flag, but not nullability or the primary key; those come from
 * the catalog (current state, matched by name: a column the catalog no longer has is
 * reported nullable).
 *
 * Key columns follow `describe()` so snapshot rows and stream events key a row the same way:
 * the primary key; under REPLICA IDENTITY INDEX the identity index instead (deletes only
 * carry those columns); under FULL without a primary key every column; otherwise the
 * columns the server flags as identity (none for REPLICA IDENTITY NOTHING).
 */
export function buildRelation(
  message: RelationMessage,
  catalog: TypeCatalog,
  info: RelationCatalogInfo | undefined,
): StreamRelation {
  const columns: StreamColumn[] = message.columns.map((column) => ({
    name: column.name,
    type: catalog.get(column.typeOid),
    typeModifier: column.typeModifier,
    isIdentity: column.isKey,
  }));
  const names = new Set(columns.map((column) => column.name));
  const identity = columns.filter((column) => column.isIdentity).map((column) => column.name);
  const primaryKey = info?.primaryKey ?? [];
  const primaryKeyUsable = primaryKey.length > 0 && primaryKey.every((name) => names.has(name));
  let keyColumns: string[];
  if (message.replicaIdentity === 'index' && identity.length > 0) keyColumns = identity;
  else if (primaryKeyUsable) keyColumns = [...primaryKey];
  else keyColumns = identity;
  const schemaColumns: ColumnSchema[] = columns.map((column) => ({
    name: column.name,
    type: logicalTypeOf(column.type, column.typeModifier),
    nullable: !(info?.notNull.has(column.name) ?? false),
    sourceType: sourceTypeName(column.type, column.typeModifier),
  }));
  return {
    relationId: message.relationId,
    replicaIdentity: message.replicaIdentity,
    columns,
    table: { schema: message.schema, name: message.name, columns: schemaColumns, keyColumns },
  };
}

/** NOT NULL flags and primary key of a relation by OID (undefined once the relation is gone). */
export async function readRelationCatalogInfo(
  client: Queryable,
  relationId: number,
): Promise<RelationCatalogInfo | undefined> {
  const { rows } = await client.query(
    `SELECT a.attname::text AS name, a.attnotnull::text AS not_null,
            array_position(i.indkey::int2[], a.attnum)::text AS pk_position
       FROM pg_catalog.pg_attribute a
       LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped`,
    [String(relationId)],
  );
  if (rows.length === 0) return undefined;
  const notNull = new Set<string>();
  const keyed: { name: string; position: number }[] = [];
  for (const row of rows) {
    const name = String(row.name);
    if (String(row.not_null) === 'true') notNull.add(name);
    if (row.pk_position !== null && row.pk_position !== undefined)
      keyed.push({ name, position: Number(row.pk_position) });
  }
  keyed.sort((a, b) => a.position - b.position);
  return { notNull, primaryKey: keyed.map((k) => k.name) };
}

/**
 * Relations seen on the current replication connection. The server sends a Relation
 * message before the first change of each relation on a connection and again after its
 * definition changed, so the cache starts empty on every reconnect.
 */
export class RelationCache {
  readonly #relations = new Map<number, StreamRelation>();

  constructor(
    private readonly catalog: TypeCatalog,
    private readonly catalogClient: () => Queryable,
  ) {}

  async apply(message: RelationMessage): Promise<StreamRelation> {
    const client = this.catalogClient();
    await this.catalog.resolve(
      client,
      message.columns.map((column) => column.typeOid),
    );
    const info = await readRelationCatalogInfo(client, message.relationId);
    const relation = buildRelation(message, this.catalog, info);
    this.#relations.set(message.relationId, relation);
    return relation;
  }

  get(relationId: number): StreamRelation | undefined {
    return this.#relations.get(relationId);
  }

  clear(): void {
    this.#relations.clear();
  }
}
