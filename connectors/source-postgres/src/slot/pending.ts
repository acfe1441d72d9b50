import type pg from 'pg';
import { sqlState } from '../errors.js';
import { decodePgOutput, formatPgTimestamp } from '../stream/pgoutput.js';

/** SQLSTATE of a statement cancelled by `statement_timeout`. */
const QUERY_CANCELED = '57014';

/** pgoutput tags of the messages the scan looks at. */
const TAG_BEGIN = 0x42; // 'B'
const TAG_RELATION = 0x52; // 'R'
const TAG_TRUNCATE = 0x54; // 'T'
const TAG_INSERT = 0x49; // 'I'
const TAG_UPDATE = 0x55; // 'U'
const TAG_DELETE = 0x44; // 'D'

/** Peek sizes tried in turn: most paused slots answer with the first. */
const PEEK_LIMITS = [16, 256, 4096, 65_536];

/** Remembers the last answer for one `confirmed_flush_lsn` of the slot. */
export interface PendingCommitCache {
  confirmedFlush?: string;
  commitAt?: string;
}

export interface OldestPendingOptions {
  /** Captured tables as `schema\u0000name`; a change to another relation does not count. */
  tables?: ReadonlySet<string>;
  /** Bound on the whole peek (default 10 s); past it the answer is unknown. */
  timeoutMs?: number;
  /**
   * The slot's `confirmed_flush_lsn` now, with a cache kept by the caller: while it has not
   * moved, the oldest pending commit cannot have changed (new WAL only adds later
   * transactions), so a found commit time is answered without decoding again.
   */
  confirmedFlush?: string;
  cache?: PendingCommitCache;
}

/**
 * Commit time (ISO 8601, microseconds) of the first transaction in `messages` (pgoutput
 * payloads in slot order) with a change to a captured table; `undefined` when there is none.
 *
 * PostgreSQL 14's pgoutput sends Begin and Commit for every transaction, also for those that
 * change no published table (15 and later skip them), and a published table may not be
 * captured any more: so the first Begin is not the answer, the first Begin followed by an
 * Insert, Update, Delete or Truncate of a captured relation is. Relation messages (full) say
 * which relation an oid is; a change message may be cut after its relation oid (the peek
 * reads only its head), which sits at the same place in Insert, Update and Delete.
 */
export function firstCapturedCommit(messages: Iterable<Buffer>, tables?: ReadonlySet<string>): string | undefined {
  const names = new Map<number, string>();
  const captured = (oid: number) => {
    if (tables === undefined) return true;
    const name = names.get(oid);
    return name !== undefined && tables.has(name);
  };
  let commitTime: bigint | undefined;
  for (const data of messages) {
    const tag = data[0];
    if (tag === TAG_BEGIN || tag === TAG_RELATION || tag === TAG_TRUNCATE) {
      const message = decodePgOutput(data);
      if (message.tag === 'begin') commitTime = message.commitTime;
      else if (message.tag === 'relation') names.set(message.relationId, `${message.schema}\u0000${message.name}`);
      else if (message.tag === 'truncate' && commitTime !== undefined && message.relationIds.some(captured))
        return formatPgTimestamp(commitTime);
    } else if ((tag === TAG_INSERT || tag === TAG_UPDATE || tag === TAG_DELETE) && data.length >= 5) {
      if (commitTime !== undefined && captured(data.readUInt32BE(1))) return formatPgTimestamp(commitTime);
    }
  }
  return undefined;
}

/**
 * Commit time of the oldest transaction the slot still holds with a change to a captured
 * table. `pg_logical_slot_peek_binary_changes` decodes without consuming and needs the slot
 * idle (a paused pipeline's); it stops once it has returned `upto_nchanges` messages (at a
 * transaction's end), so the peek asks for a few messages first and more only when those
 * hold no captured change. Bounded by `timeoutMs`: a long stretch of WAL without a captured
 * change is not worth decoding over and over; the answer is then unknown (`undefined`).
 * `null` = nothing pending. Errors other than the timeout are thrown.
 */
export async function oldestPendingCommit(
  client: pg.Client,
  slot: string,
  publication: string,
  options: OldestPendingOptions = {},
): Promise<string | null | undefined> {
  const { cache, confirmedFlush } = options;
  if (cache !== undefined && confirmedFlush !== undefined && cache.confirmedFlush === confirmedFlush)
    return cache.commitAt;
  const timeoutMs = Math.max(1, Math.floor(options.timeoutMs ?? 10_000));
  await client.query('BEGIN');
  try {
    // statement_timeout is in milliseconds; SET LOCAL ends with the transaction.
    await client.query(`SET LOCAL statement_timeout = ${timeoutMs}`);
    let found: string | undefined;
    let exhausted = false;
    for (const limit of PEEK_LIMITS) {
      // Relation, Begin and Truncate messages whole, the others' first 5 bytes (tag and
      // relation oid), as hex text: the admin connection reads every type as text.
      const { rows } = await client.query<{ data: string }>(
        `SELECT pg_catalog.encode(CASE WHEN pg_catalog.get_byte(data, 0) IN (${TAG_BEGIN}, ${TAG_RELATION}, ${TAG_TRUNCATE})
                                       THEN data ELSE pg_catalog.substr(data, 1, 5) END, 'hex') AS data
           FROM pg_catalog.pg_logical_slot_peek_binary_changes($1, NULL, ${limit},
                'proto_version', '1', 'publication_names', $2)`,
        [slot, publication],
      );
      found = firstCapturedCommit(
        rows.map((r) => Buffer.from(String(r.data), 'hex')),
        options.tables,
      );
      if (found !== undefined || rows.length < limit) {
        exhausted = found === undefined;
        break;
      }
    }
    await client.query('COMMIT');
    if (found !== undefined) {
      if (cache !== undefined && confirmedFlush !== undefined) {
        cache.confirmedFlush = confirmedFlush;
        cache.commitAt = found;
      }
      return found;
    }
    // Every peek size filled without a captured change: too far to look.
    return exhausted ? null : undefined;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    if (sqlState(err) === QUERY_CANCELED) return undefined;
    throw err;
  }
}
