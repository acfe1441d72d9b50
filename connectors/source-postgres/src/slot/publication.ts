import type { TableRef } from '@nanosync/core';
import { ErrorCode, NanosyncError } from '@nanosync/core';
import { permissionError, quoteIdent, quoteTable, sqlState } from '../errors.js';
import type { Queryable } from '../types/index.js';

export interface PublicationState {
  exists: boolean;
  allTables: boolean;
  tables: TableRef[];
}

export async function readPublication(client: Queryable, publication: string): Promise<PublicationState> {
  const pub = await client.query(
    'SELECT puballtables::text AS all_tables FROM pg_catalog.pg_publication WHERE pubname = $1',
    [publication],
  );
  const row = pub.rows[0];
  if (!row) return { exists: false, allTables: false, tables: [] };
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
  };
}

function tableList(tables: TableRef[]): string {
  return tables.map(quoteTable).join(', ');
}

export function createPublicationSql(publication: string, tables: TableRef[]): string {
  return `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${tableList(tables)}`;
}

export function alterPublicationSql(publication: string, tables: TableRef[]): string {
  return `ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${tableList(tables)}`;
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
      ErrorCode.PgCheck,
      `publication "${publication}" exists and is FOR ALL TABLES; nanosync only uses FOR TABLE publications. Fix: DROP PUBLICATION ${quoteIdent(publication)}; ${createPublicationSql(publication, tables)};`,
    );
  }
  if (state.exists) {
    const want = new Set(tables.map(key));
    const have = new Set(state.tables.map(key));
    if (want.size === have.size && [...want].every((k) => have.has(k))) return 'unchanged';
  }
  const sql = state.exists ? alterPublicationSql(publication, tables) : createPublicationSql(publication, tables);
  try {
    await client.query(sql);
  } catch (err) {
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
