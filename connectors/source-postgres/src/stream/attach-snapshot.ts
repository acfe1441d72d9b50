import { randomBytes } from 'node:crypto';
import type { ChangeEvent, Row, TableRef, Value } from '@nanosync/core';
import { quoteIdent, quoteLiteral, quoteTable } from '../errors.js';
import type { Queryable, TypeCatalog } from '../types/index.js';
import { insertEvent } from './change-events.js';
import type { RelationMessage, ReplicaIdentity, TupleValue } from './pgoutput.js';
import { buildRelation, readRelationCatalogInfo, type StreamRelation } from './relations.js';

/**
 * Rows of a partition attached while streaming.
 *
 * A partition attached to a captured table brings rows that were never in the WAL under the
 * table's name (they were written before the attach, or into a table that was not a
 * partition then). The stream reads them itself, as one chunk between two logical messages
 * of its own (the watermark algorithm the concurrent snapshot uses, DBLog):
 *
 *   1. write the low message `{"attach":"low","id":…,"table":…,"leaf":…}`;
 *   2. read every row of the leaf (one statement: one snapshot, taken after step 1);
 *   3. write the high message `{"attach":"high","id":…}`.
 *
 * Between the two messages, as the stream decodes them, it notes the key of every change to
 * the table (and a TRUNCATE). At the high message the chunk's rows whose key did not change
 * in between go out as `read` events at the high message's position: each is the row as of
 * that position, and any later change comes after it. Nothing is persisted: the messages are
 * in the WAL, so after a crash the stream decodes a low or high message whose chunk it does
 * not hold and reads the leaf again (once per leaf), and once the chunk's rows are
 * acknowledged the slot is past both messages.
 */

/** The messages' prefix: the pipeline's watermark prefix plus this suffix. */
export const ATTACH_PREFIX_SUFFIX = '.attach';

/**
 * `rekey`: the chunk is the whole table, read again because its key columns changed (see
 * ChangeStream); its low message is also where the table's `truncate` event goes.
 */
export type AttachMessage = {
  attach: 'low' | 'high';
  id: string;
  table: TableRef;
  leaf: TableRef;
  rekey?: true;
};

export function parseAttachMessage(content: Uint8Array): AttachMessage | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(content)) as Partial<AttachMessage>;
    const ref = (t: unknown): t is TableRef =>
      typeof t === 'object' &&
      t !== null &&
      typeof (t as TableRef).schema === 'string' &&
      typeof (t as TableRef).name === 'string';
    if (
      (parsed.attach === 'low' || parsed.attach === 'high') &&
      typeof parsed.id === 'string' &&
      ref(parsed.table) &&
      ref(parsed.leaf)
    )
      return parsed as AttachMessage;
  } catch {
    // not ours after all
  }
  return undefined;
}

export function newChunkId(): string {
  return randomBytes(6).toString('hex');
}

/**
 * One non-transactional logical message, committed with a transaction that takes an xid so
 * that the WAL is flushed up to it (see `PostgresSource.writeWatermark`).
 */
export async function writeAttachMessage(client: Queryable, prefix: string, message: AttachMessage): Promise<void> {
  await client.query(
    `BEGIN; SELECT pg_catalog.pg_logical_emit_message(false, ${quoteLiteral(prefix)}, ${quoteLiteral(JSON.stringify(message))}); SELECT pg_catalog.txid_current(); COMMIT`,
  );
}

/** The identity key of a row as comparable text. */
export function keyText(key: Row): string {
  return JSON.stringify(
    Object.keys(key)
      .sort()
      .map((k) => [k, plain(key[k])]),
  );
}

function plain(value: Value | undefined): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value).toString('hex')}`;
  return value ?? null;
}

/**
 * The table as the stream would announce it (a Relation message built from the catalog:
 * the columns pgoutput sends, i.e. not the generated ones, with their identity flags).
 */
export async function relationOf(client: Queryable, table: TableRef, catalog: TypeCatalog): Promise<StreamRelation> {
  const { rows } = await client.query(
    `SELECT c.oid::text AS oid, c.relreplident::text AS replident, a.attname::text AS name,
            a.atttypid::text AS type_oid, a.atttypmod::text AS typmod,
            (CASE c.relreplident
               WHEN 'f' THEN true
               WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                      WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey::int2[]))
               WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                      WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey::int2[]))
               ELSE false END)::text AS is_key
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      WHERE n.nspname = $1 AND c.relname = $2
      ORDER BY a.attnum`,
    [table.schema, table.name],
  );
  if (rows.length === 0) throw new Error(`table ${quoteTable(table)} not found`);
  const identity: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };
  const message: RelationMessage = {
    tag: 'relation',
    relationId: Number(rows[0]!.oid),
    schema: table.schema,
    name: table.name,
    replicaIdentity: identity[String(rows[0]!.replident)] ?? 'default',
    columns: rows.map((r) => ({
      name: String(r.name),
      typeOid: Number(r.type_oid),
      typeModifier: Number(r.typmod),
      isKey: String(r.is_key) === 'true',
    })),
  };
  await catalog.resolve(
    client,
    message.columns.map((c) => c.typeOid),
  );
  return buildRelation(message, catalog, await readRelationCatalogInfo(client, message.relationId));
}

/**
 * Every row of `leaf` (or, with `leaf` undefined, of the whole table) as the stream would
 * decode it under `relation` (the captured table, from {@link relationOf}): values in the
 * server's text form (what pgoutput sends), decoded by the stream's own code. A leaf is read
 * directly when the role may, else through the table, filtered to the leaf. `position` is
 * set by the caller when the chunk goes out.
 */
export async function readChunkRows(
  client: Queryable,
  relation: StreamRelation,
  table: TableRef,
  leaf: TableRef | undefined,
): Promise<ChangeEvent[]> {
  const list = relation.columns.map((c, i) => `${quoteIdent(c.name)}::text AS c${i}`).join(', ');
  let sql = `SELECT ${list} FROM ${quoteTable(table)}`;
  if (leaf !== undefined) {
    const { rows: may } = await client.query(
      `SELECT c.oid::text AS oid, has_table_privilege(c.oid, 'SELECT')::text AS may
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      [leaf.schema, leaf.name],
    );
    if (may.length === 0) return [];
    sql =
      String(may[0]!.may) === 'true'
        ? `SELECT ${list} FROM ONLY ${quoteTable(leaf)}`
        : `SELECT ${list} FROM ${quoteTable(table)} WHERE tableoid = ${Number(may[0]!.oid)}::oid`;
  }
  const { rows } = await client.query(sql);
  const context = { position: '', commitTime: '' };
  return rows.map((row) => {
    const newTuple: TupleValue[] = relation.columns.map((_, i) => {
      const value = row[`c${i}`];
      return value === null || value === undefined ? null : String(value);
    });
    const event = insertEvent(relation, { tag: 'insert', relationId: relation.relationId, newTuple }, context);
    event.op = 'read';
    delete event.commitTime;
    return event;
  });
}
