import type { TableRef } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import { permissionError, quoteIdent, quoteTable, sqlState, PgErrorCode } from '../errors.js';
import type { Queryable } from '../types/index.js';

export interface PublicationState {
  exists: boolean;
  allTables: boolean;
  tables: TableRef[];
  /**
   * It publishes inserts, updates, deletes and truncates, and changes of partitions under
   * their root's name (`publish_via_partition_root`): what nanosync needs.
   */
  optionsOk: boolean;
  /** Its comment says nanosync created it (so a failed first start may remove it again). */
  createdByNanosync: boolean;
  /** The connection's role owns it (or is a member of its owner): it may change it. */
  owned: boolean;
}

/** Marks a publication nanosync created itself (see {@link PublicationState.createdByNanosync}). */
const CREATED_COMMENT = 'created by nanosync';

/**
 * What nanosync asks of a publication: every operation, TRUNCATE included, and partitions
 * published as their root, so a partitioned table's changes carry the table's own name.
 */
export const PUBLICATION_OPTIONS = "publish = 'insert, update, delete, truncate', publish_via_partition_root = true";

export async function readPublication(client: Queryable, publication: string): Promise<PublicationState> {
  const pub = await client.query(
    `SELECT puballtables::text AS all_tables,
            (pubinsert AND pubupdate AND pubdelete AND pubtruncate AND pubviaroot)::text AS options_ok,
            coalesce(pg_catalog.obj_description(oid, 'pg_publication'), '') AS comment,
            pg_catalog.pg_has_role(pubowner, 'USAGE')::text AS owned
       FROM pg_catalog.pg_publication WHERE pubname = $1`,
    [publication],
  );
  const row = pub.rows[0];
  if (!row)
    return { exists: false, allTables: false, tables: [], optionsOk: false, createdByNanosync: false, owned: false };
  const rel = await client.query(
    `SELECT n.nspname::text AS schema, c.relname::text AS name
       FROM pg_catalog.pg_publication p
       JOIN pg_catalog.pg_publication_rel pr ON pr.prpubid = p.oid
       JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE p.pubname = $1`,
    [publication],
  );
  return {
    exists: true,
    allTables: row.all_tables === 'true',
    tables: rel.rows.map((r) => ({ schema: String(r.schema), name: String(r.name) })),
    optionsOk: row.options_ok === 'true',
    createdByNanosync: String(row.comment).startsWith(CREATED_COMMENT),
    owned: row.owned === 'true',
  };
}

function tableList(tables: TableRef[]): string {
  return tables.map(quoteTable).join(', ');
}

export function createPublicationSql(publication: string, tables: TableRef[]): string {
  return `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${tableList(tables)} WITH (${PUBLICATION_OPTIONS})`;
}

export function alterPublicationSql(publication: string, tables: TableRef[]): string {
  return `ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${tableList(tables)}`;
}

export function alterPublicationOptionsSql(publication: string): string {
  return `ALTER PUBLICATION ${quoteIdent(publication)} SET (${PUBLICATION_OPTIONS})`;
}

/** The statements that turn `state` into the publication nanosync needs (none when it already is). */
export function publicationChanges(publication: string, tables: TableRef[], state: PublicationState): string[] {
  if (!state.exists) return [createPublicationSql(publication, tables)];
  const statements: string[] = [];
  const want = new Set(tables.map(key));
  const have = new Set(state.tables.map(key));
  if (want.size !== have.size || [...want].some((k) => !have.has(k)))
    statements.push(alterPublicationSql(publication, tables));
  if (!state.optionsOk) statements.push(alterPublicationOptionsSql(publication));
  return statements;
}

const key = (t: TableRef) => `${t.schema}\u0000${t.name}`;

/**
 * Make the publication contain exactly `tables`: create it, or `ALTER … SET TABLE` when the
 * membership differs. Never `FOR ALL TABLES`: a publication that is one is refused, since
 * it would stream every table of the database.
 *
 * Adding a table to a publication needs ownership of the table; a least-privilege role
 * therefore gets the publication prepared by an owner (the error says the SQL to run).
 */
export async function ensurePublication(
  client: Queryable,
  publication: string,
  tables: TableRef[],
): Promise<'created' | 'altered' | 'unchanged'> {
  const state = await readPublication(client, publication);
  if (state.allTables) {
    throw new NanosyncError(
      PgErrorCode.PgCheck,
      `publication "${publication}" exists and is FOR ALL TABLES; nanosync only uses FOR TABLE publications. Fix: DROP PUBLICATION ${quoteIdent(publication)}; ${createPublicationSql(publication, tables)};`,
    );
  }
  const statements = publicationChanges(publication, tables, state);
  if (statements.length === 0) return 'unchanged';
  const sql = statements.join('; ');
  try {
    await client.query('BEGIN');
    for (const statement of statements) await client.query(statement);
    if (!state.exists) await client.query(`COMMENT ON PUBLICATION ${quoteIdent(publication)} IS '${CREATED_COMMENT}'`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    const code = sqlState(err);
    if (code === '42501') {
      throw permissionError(
        `the connection's role may not ${state.exists ? 'change' : 'create'} publication "${publication}" (${(err as Error).message}); a role that owns the tables must run it`,
        `${sql};${state.exists ? '' : ` ALTER PUBLICATION ${quoteIdent(publication)} OWNER TO <the nanosync role>;`}`,
        err,
      );
    }
    throw err;
  }
  return state.exists ? 'altered' : 'created';
}

export async function dropPublication(client: Queryable, publication: string): Promise<void> {
  await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(publication)}`);
}

/** Drop the publication only if nanosync created it (an owner-prepared one stays). */
export async function dropOwnPublication(client: Queryable, publication: string): Promise<boolean> {
  const state = await readPublication(client, publication);
  if (!state.exists || !state.createdByNanosync) return false;
  await dropPublication(client, publication);
  return true;
}
