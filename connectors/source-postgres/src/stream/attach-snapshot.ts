import { randomBytes } from 'node:crypto';
import type { ChangeEvent, Logger, Row, TableRef, Value } from '@nanosync/core';
import { quoteLiteral, quoteTable } from '../errors.js';
import type pg from 'pg';
import { type CtidChunkCursor, readCtidRows } from '../snapshot/read-chunk.js';
import type { RecentCommits } from '../snapshot/visibility.js';
import type { Queryable, TypeCatalog } from '../types/index.js';
import { insertEvent } from './change-events.js';
import type { RelationMessage, ReplicaIdentity, TupleValue } from './pgoutput.js';
import { buildRelation, readRelationCatalogInfo, type StreamRelation } from './relations.js';

/**
 * Rows of a partition attached while streaming (and of a table whose key was redefined).
 *
 * A partition attached to a captured table brings rows that were never in the WAL under the
 * table's name (they were written before the attach, or into a table that was not a
 * partition then). The stream reads them itself with the watermark algorithm the concurrent
 * snapshot uses (DBLog), in bounded chunks (`snapshot.chunk_rows` / `snapshot.chunk_bytes`,
 * read in ctid order by the snapshot's own chunk reader, snapshot/read-chunk.ts), each
 * chunk between a low and a high logical message of its own:
 *
 *   low₀ · read₀ · [high₀ low₁] · read₁ · [high₁ low₂] · … · high_last
 *
 * Every message names the chunk: `id` (fresh per chunk), the table, the leaf, the chunk's
 * index and its start (`after`, a ctid; absent: the leaf's first row). `readₖ` is one
 * statement, so one snapshot taken after lowₖ. Between lowₖ and highₖ, as the stream decodes
 * them, it notes the key of every change to the table (and a TRUNCATE); at highₖ the chunk's
 * rows whose key did not change in between go out as `read` events at highₖ's position, one
 * committed unit: each is the row as of that position, any later change comes after it.
 *
 * Crash safety. Nothing is persisted outside the WAL; what remains to read is known from
 * the messages after the acknowledged position:
 *
 * - highₖ and lowₖ₊₁ (which carries where chunk k+1 starts) are written by one transaction,
 *   highₖ first, and the stream delivers chunk k's rows only once the reader has seen that
 *   transaction commit (the messages are flushed with it). So lowₖ₊₁ lies in the WAL after
 *   chunk k's rows and is durable before any of them can be acknowledged: whatever the crash
 *   point, the first message of the leaf after the acknowledged position names the first
 *   chunk not yet acknowledged (a lowₖ₊₁, or a highₖ₊₁ when a later transaction was
 *   acknowledged in between; a high carries its chunk's start too).
 * - Other changes keep flowing while a chunk is read, and may be acknowledged before the
 *   chunk's high message is even written. So from the decoding of a leaf's low message
 *   until a chunk of it is delivered, the stream caps the flush LSN it registers for the
 *   slot at the last boundary before that low message: the slot never passes the first
 *   message of a chunk whose rows are not acknowledged, and a restart decodes it again,
 *   even when it lies at or before the acknowledged position (`from`).
 * - A process that decodes a chunk message it does not hold (written before a restart)
 *   reads the leaf again from that chunk's start, with new messages, to the leaf's end;
 *   the chunks before it were acknowledged and are not read again. Messages at or before
 *   `from` are history: a high there went out with its rows (acknowledged), the last low
 *   there names the chunk to resume at; the read starts once the stream passes `from`.
 *   Further messages of the dead process for that leaf are ignored while it is read again.
 * - The whole leaf is read again only where the WAL holds no message of it: an attach the
 *   stream never saw (made while no stream ran, or just before a crash) is found at start
 *   by its `pg_inherits` row being newer than the slot's catalog_xmin (see ChangeStream);
 *   that check also fires for a leaf attached shortly before a restart whose chunks were
 *   under way, and whichever read starts first is the one made (one read per leaf at a
 *   time).
 * - The last chunk's high says `last`; nothing follows it.
 * - A failed write or read (connection lost) drops the chunk being read and the reader
 *   starts it again under a new id; a message of the dropped chunk is ignored like one of a
 *   dead process.
 *
 * The reader starts chunk k+1's read only after the stream handled highₖ, so at most one
 * chunk's rows are held per leaf. A ctid cursor is exact only while rows stay where they are:
 * a row an UPDATE moves behind the cursor is in the WAL as that update, one moved ahead of
 * it is read again as it is then (current, never older than what went out before).
 *
 * A redefined key (`rekey`, see ChangeStream) reads every leaf of the table (sorted by
 * name, or the table itself) this way; the first chunk's low message is also where the
 * table's `truncate` event goes. A read again from a later chunk does not truncate again.
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
  /** The chunk's index in this read of the leaf (0 when absent). */
  chunk?: number;
  /** Where the chunk starts (`ctid >= (page,offset)`); absent: at the leaf's first row. */
  after?: { page: number; offset: number };
  /** High message of the leaf's last chunk. */
  last?: true;
  /** Low message of a rekey's first chunk: the table's `truncate` goes here. */
  truncate?: true;
};

/** A message's start as a cursor for the chunk reader (the span is a first guess). */
export function cursorOf(after: AttachMessage['after'], bound: { rows: number }): CtidChunkCursor | undefined {
  if (after === undefined) return undefined;
  return { page: after.page, offset: after.offset, span: Math.max(1, Math.min(1 << 22, Math.ceil(bound.rows / 60))) };
}

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
      ref(parsed.leaf) &&
      (parsed.after === undefined ||
        (typeof parsed.after === 'object' &&
          parsed.after !== null &&
          Number.isSafeInteger(parsed.after.page) &&
          parsed.after.page >= 0 &&
          Number.isSafeInteger(parsed.after.offset) &&
          parsed.after.offset >= 0))
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
 * Non-transactional logical messages, in this order, committed with a transaction that takes an xid so
 * that the WAL is flushed up to it (see `PostgresSource.writeWatermark`).
 */
export async function writeAttachMessages(client: Queryable, prefix: string, messages: AttachMessage[]): Promise<void> {
  const emit = messages
    .map(
      (m) =>
        `SELECT pg_catalog.pg_logical_emit_message(false, ${quoteLiteral(prefix)}, ${quoteLiteral(JSON.stringify(m))});`,
    )
    .join(' ');
  await client.query(`BEGIN; ${emit} SELECT pg_catalog.txid_current(); COMMIT`);
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
 * One bounded chunk of `leaf` (a leaf partition of `table`, or `table` itself when it is not
 * partitioned), in ctid order from `after` on (its start without), by the concurrent
 * snapshot's reader (snapshot/read-chunk.ts): at most `maxRows` rows and about `maxBytes`
 * bytes, in one statement (one snapshot, taken after the chunk's low message). The rows are
 * decoded as the stream would decode them under `relation` (the captured table, from
 * {@link relationOf}): values in the server's text form (what pgoutput sends), through the
 * stream's own code. A leaf is read directly when the role may, else through the table.
 * `next`: where the following chunk starts; undefined once the leaf is read to its end.
 * Positions are set by the caller when the chunk goes out.
 */
export async function readAttachChunk(
  client: pg.Client,
  relation: StreamRelation,
  table: TableRef,
  leaf: TableRef,
  after: CtidChunkCursor | undefined,
  bound: { rows: number; bytes: number },
  signal: AbortSignal,
  visibility: { commits: RecentCommits; logger: Logger },
): Promise<{ rows: ChangeEvent[]; next: CtidChunkCursor | undefined; missing?: true }> {
  const { rows: may } = await client.query(
    `SELECT has_table_privilege(c.oid, 'SELECT')::text AS may
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [leaf.schema, leaf.name],
  );
  // Dropped since: nothing left to read.
  if (may.length === 0) return { rows: [], next: undefined, missing: true };
  const through = String(may[0]!.may) === 'true' || sameRef(leaf, table) ? {} : { through: table };
  const context = { position: '', commitTime: '' };
  const state = { clientReusable: false };
  const read = await readCtidRows(
    {
      client,
      table: leaf,
      ...through,
      columnNames: relation.columns.map((c) => c.name),
      bounds: { startPage: 0, endPage: null },
      after,
      maxRows: bound.rows,
      maxBytes: bound.bytes,
      signal,
      ...visibility,
    },
    (fields) => {
      const newTuple: TupleValue[] = relation.columns.map((_, i) => fields[i] ?? null);
      const event = insertEvent(relation, { tag: 'insert', relationId: relation.relationId, newTuple }, context);
      event.op = 'read';
      delete event.commitTime;
      return event;
    },
    state,
  );
  return { rows: read.rows, next: read.next };
}

/**
 * What a (re)key read covers, in the order it reads them: the table's leaf partitions
 * sorted by name, or the table itself when it is not partitioned. `from`: start at this
 * leaf (or at the first one sorting after it, when it is gone).
 */
export async function leavesToRead(client: Queryable, table: TableRef, from?: TableRef): Promise<TableRef[]> {
  const { rows } = await client.query(
    `SELECT n.nspname::text AS schema, c.relname::text AS name
       FROM pg_catalog.pg_class p JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
       CROSS JOIN LATERAL pg_catalog.pg_partition_tree(p.oid) t
       JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE pn.nspname = $1 AND p.relname = $2 AND t.isleaf`,
    [table.schema, table.name],
  );
  const all = rows.map((r) => ({ schema: String(r.schema), name: String(r.name) })).sort((a, b) => compareRefs(a, b));
  if (all.length === 0) all.push(table);
  if (from === undefined || sameRef(from, table)) return all;
  return all.filter((leaf) => compareRefs(leaf, from) >= 0);
}

function compareRefs(a: TableRef, b: TableRef): number {
  if (a.schema !== b.schema) return a.schema < b.schema ? -1 : 1;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return 0;
}

function sameRef(a: TableRef, b: TableRef): boolean {
  return a.schema === b.schema && a.name === b.name;
}
