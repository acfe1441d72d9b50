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
  /** Set when the relation is a partition whose changes are carried as its captured ancestor (`table`). */
  partition?: { schema: string; name: string };
}

/** The nearest ancestor of a partition that the pipeline captures, if any. */
async function capturedAncestor(
  client: Queryable,
  relationId: number,
  captured: ReadonlySet<string>,
): Promise<{ schema: string; name: string } | undefined> {
  const { rows } = await client.query(
    `SELECT n.nspname::text AS schema, c.relname::text AS name
       FROM pg_catalog.pg_partition_ancestors($1::oid) WITH ORDINALITY a(relid, depth)
       JOIN pg_catalog.pg_class c ON c.oid = a.relid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      ORDER BY a.depth`,
    [String(relationId)],
  );
  for (const row of rows) {
    const name = { schema: String(row.schema), name: String(row.name) };
    if (captured.has(`${name.schema}\u0000${name.name}`)) return name;
  }
  return undefined;
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
 * Key columns are the key *as it was when the change was made*: the message is decoded
 * with the catalog of its WAL position, so under REPLICA IDENTITY DEFAULT its identity
 * flags are the primary key of that time (and under USING INDEX that index's columns),
 * which is also what the old-key image ('K') of an update or delete carries. A key changed
 * later (column renamed, key redefined) therefore never re-keys older changes. Only under
 * REPLICA IDENTITY FULL, where every column is flagged, the catalog's primary key is used
 * when the table has one (else every column); the same rules as `describe()`, so snapshot
 * rows and stream events key a row alike.
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
  if (message.replicaIdentity !== 'full' && identity.length > 0) keyColumns = identity;
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

  /**
   * `captured`: `schema NUL name` of the pipeline's tables. A relation outside it that is a
   * partition of a captured table (its changes were decoded before the publication
   * published partitions via their root) is renamed to that table, so no change is lost to
   * the stream's table filter.
   */
  constructor(
    private readonly catalog: TypeCatalog,
    private readonly catalogClient: () => Queryable,
    private readonly captured?: ReadonlySet<string>,
  ) {}

  async apply(message: RelationMessage): Promise<StreamRelation> {
    const client = this.catalogClient();
    await this.catalog.resolve(
      client,
      message.columns.map((column) => column.typeOid),
    );
    const info = await readRelationCatalogInfo(client, message.relationId);
    let named = message;
    let partitionOf: { schema: string; name: string } | undefined;
    if (this.captured && !this.captured.has(`${message.schema}\u0000${message.name}`)) {
      partitionOf = await capturedAncestor(client, message.relationId, this.captured);
      if (partitionOf) named = { ...message, schema: partitionOf.schema, name: partitionOf.name };
    }
    const relation = buildRelation(named, this.catalog, info);
    if (partitionOf) relation.partition = { schema: message.schema, name: message.name };
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
