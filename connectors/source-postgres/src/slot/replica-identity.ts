import type { TableRef } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import { quoteTable, PgErrorCode } from '../errors.js';
import type { Queryable } from '../types/index.js';

/**
 * A relation PostgreSQL cannot identify rows of in a publication: once it is published
 * with `publish = 'update, delete'`, the server refuses the application's own UPDATE and
 * DELETE on it ("cannot update table … because it does not have a replica identity and
 * publishes updates"). For a partitioned table every leaf counts: the leaf is what the
 * UPDATE touches.
 */
export interface MissingIdentity {
  /** The table as the pipeline lists it. */
  table: TableRef;
  /** The relation without identity: the table itself or one of its partitions. */
  relation: TableRef;
  /** `DEFAULT` (no primary key), `NOTHING`, or `INDEX` whose index is gone. */
  replicaIdentity: 'DEFAULT' | 'NOTHING' | 'INDEX';
}

/**
 * Every listed table (and every partition under a partitioned one) without a usable replica
 * identity: REPLICA IDENTITY FULL, a primary key under DEFAULT, or an existing identity
 * index. Tables that do not exist are left to the callers' own "not found" errors.
 */
export async function findMissingIdentity(client: Queryable, tables: TableRef[]): Promise<MissingIdentity[]> {
  const missing: MissingIdentity[] = [];
  for (const table of tables) {
    const { rows } = await client.query(
      `WITH root AS (
         SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))
       SELECT n.nspname::text AS schema, c.relname::text AS name, c.relreplident::text AS replident
         FROM root
         CROSS JOIN LATERAL (SELECT root.oid AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(root.oid) t) tree
         JOIN pg_catalog.pg_class c ON c.oid = tree.relid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND (c.relreplident = 'n'
               OR (c.relreplident = 'd' AND NOT EXISTS (
                     SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
               OR (c.relreplident = 'i' AND NOT EXISTS (
                     SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
        ORDER BY c.relkind, n.nspname, c.relname`,
      [table.schema, table.name],
    );
    for (const row of rows) {
      const replident = String(row.replident);
      missing.push({
        table,
        relation: { schema: String(row.schema), name: String(row.name) },
        replicaIdentity: replident === 'n' ? 'NOTHING' : replident === 'i' ? 'INDEX' : 'DEFAULT',
      });
    }
  }
  return missing;
}

/** One sentence per relation: what is missing, why it matters, both fixes. */
export function describeMissingIdentity(m: MissingIdentity): { message: string; fix: string } {
  const relation = quoteTable(m.relation);
  const of =
    m.relation.schema === m.table.schema && m.relation.name === m.table.name
      ? `table ${relation}`
      : `partition ${relation} of table ${quoteTable(m.table)}`;
  const why =
    m.replicaIdentity === 'NOTHING'
      ? 'REPLICA IDENTITY NOTHING'
      : m.replicaIdentity === 'INDEX'
        ? 'REPLICA IDENTITY USING INDEX, but the index is gone'
        : 'no primary key and REPLICA IDENTITY DEFAULT';
  return {
    message: `${of} has no usable replica identity (${why}); in a publication PostgreSQL would refuse the application's UPDATE and DELETE on it, so nanosync does not publish it`,
    fix: `ALTER TABLE ${relation} ADD PRIMARY KEY (<key columns>); -- or: ALTER TABLE ${relation} REPLICA IDENTITY FULL; (every column becomes the key; every UPDATE and DELETE then writes the whole old row to the WAL)`,
  };
}

/** The error for tables found by {@link findMissingIdentity}, naming each one and both fixes. */
export function missingIdentityError(missing: MissingIdentity[], context: string): NanosyncError {
  const parts = missing.map((m) => {
    const { message, fix } = describeMissingIdentity(m);
    return `${message}. Fix: ${fix}`;
  });
  return new NanosyncError(PgErrorCode.PgNoReplicaIdentity, `${context}: ${parts.join(' | ')}`, {
    details: { tables: missing.map((m) => `${m.relation.schema}.${m.relation.name}`).join(',') },
  });
}
