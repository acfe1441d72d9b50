import type { Logger } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import type pg from 'pg';
import { connectClient, type PgConnectionConfig } from '../connection.js';
import { quoteIdent, slotInvalidated, slotMissing, sqlState, PgErrorCode } from '../errors.js';
import { parseLsn } from '../position.js';
import type { Queryable } from '../types/index.js';

export interface SlotInfo {
  slot_name: string;
  plugin: string | null;
  slot_type: string;
  database: string | null;
  active: boolean;
  active_pid: number | null;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  wal_status: string | null;
  safe_wal_size: number | null;
  /** PostgreSQL 16+: a logical slot invalidated by a recovery conflict. */
  conflicting?: boolean | null;
  /** PostgreSQL 17+: why the slot was invalidated. */
  invalidation_reason?: string | null;
}

/** The slot's row of pg_replication_slots as JSON, so columns that only newer versions have are simply absent. */
export async function readSlot(client: Queryable, slot: string): Promise<SlotInfo | undefined> {
  const { rows } = await client.query(
    'SELECT to_jsonb(s)::text AS info FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1',
    [slot],
  );
  const row = rows[0];
  return row ? (JSON.parse(String(row.info)) as SlotInfo) : undefined;
}

/**
 * The server's WAL position now (replayed position on a standby) as `X/Y` text, for the end
 * of the range a lost slot can no longer deliver; undefined when it cannot be read.
 */
export async function serverWalPosition(client: Queryable): Promise<string | undefined> {
  try {
    const { rows } = await client.query(
      'SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END)::text AS head',
    );
    return rows[0]?.head == null ? undefined : String(rows[0].head);
  } catch {
    return undefined;
  }
}

/**
 * A later run: the slot must still be there and usable. Missing or invalidated is an error
 * naming the slot, the checkpoint and wal_status; we never create a replacement here.
 */
export async function verifySlot(
  client: Queryable,
  slot: string,
  opts: { checkpoint?: string; database: string },
): Promise<SlotInfo> {
  const info = await readSlot(client, slot);
  if (!info) throw slotMissing(slot, opts.checkpoint, await serverWalPosition(client));
  const reason = info.invalidation_reason ? `, invalidation_reason: ${info.invalidation_reason}` : '';
  if (info.wal_status === 'lost' || info.conflicting === true || (info.invalidation_reason ?? null) !== null) {
    throw slotInvalidated(slot, opts.checkpoint, info.wal_status ?? 'unknown', reason, await serverWalPosition(client));
  }
  if (info.slot_type !== 'logical' || info.plugin !== 'pgoutput' || info.database !== opts.database) {
    throw new NanosyncError(
      PgErrorCode.PgCheck,
      `replication slot "${slot}" is not a pgoutput logical slot of database "${opts.database}" (type ${info.slot_type}, plugin ${info.plugin}, database ${info.database}); drop it or rename the pipeline`,
    );
  }
  return info;
}

export interface CreatedSlot {
  /** The slot's consistent point: changes committed from here on are in the stream. */
  consistentPoint: bigint;
  /** Exported snapshot name, valid while {@link release} was not called. */
  snapshotName?: string;
  /** Close the replication connection that keeps the exported snapshot alive. */
  release(): Promise<void>;
}

/**
 * Create the logical slot through the replication protocol. With `exportSnapshot` the
 * walsender exports a snapshot showing exactly the data as of the consistent point; it stays
 * importable (`SET TRANSACTION SNAPSHOT`) only while this connection stays open and idle,
 * so the connection is kept until `release()`.
 *
 * Creation waits until every transaction that already had a transaction id when it began
 * has finished: a long-running writer delays `open()`.
 */
export async function createSlot(
  conn: PgConnectionConfig,
  slot: string,
  opts: { exportSnapshot: boolean; logger: Logger },
): Promise<CreatedSlot> {
  const client = await connectClient(conn, { replication: true });
  let released = false;
  client.on('error', (err) => {
    if (!released)
      opts.logger.warn('replication connection holding the exported snapshot failed', { slot, error: err.message });
  });
  const release = async () => {
    if (released) return;
    released = true;
    await client.end().catch(() => {});
  };
  try {
    const mode = opts.exportSnapshot ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT';
    const result = await client.query(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${mode}`);
    const row = result.rows[0] as { consistent_point: string; snapshot_name: string | null } | undefined;
    if (!row) throw new NanosyncError(PgErrorCode.PgProtocol, `CREATE_REPLICATION_SLOT "${slot}" returned no row`);
    const created: CreatedSlot = { consistentPoint: parseLsn(row.consistent_point), release };
    if (opts.exportSnapshot && row.snapshot_name) created.snapshotName = row.snapshot_name;
    if (!opts.exportSnapshot) await release();
    return created;
  } catch (err) {
    await release();
    if (sqlState(err) === '42501') {
      throw new NanosyncError(
        PgErrorCode.PgPermission,
        `role "${conn.user}" may not create replication slot "${slot}": it needs the REPLICATION attribute. Fix: ALTER ROLE ${quoteIdent(conn.user)} REPLICATION;`,
        { cause: err },
      );
    }
    if (sqlState(err) === '53400') {
      throw new NanosyncError(
        PgErrorCode.PgCheck,
        `no free replication slot for "${slot}" (max_replication_slots reached). Fix: drop unused slots (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active AND …) or raise max_replication_slots and restart PostgreSQL`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Drop the slot if it exists. An active slot (a walsender still attached, e.g. a stream that
 * is shutting down) is retried for a few seconds, then its walsender is terminated.
 */
export async function dropSlot(
  client: pg.Client | Queryable,
  slot: string,
  opts: { waitMs?: number } = {},
): Promise<boolean> {
  const deadline = Date.now() + (opts.waitMs ?? 5000);
  for (let attempt = 0; ; attempt++) {
    const info = await readSlot(client, slot);
    if (!info) return false;
    try {
      await client.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [slot]);
      return true;
    } catch (err) {
      const code = sqlState(err);
      if (code === '42704') return false;
      if (code !== '55006') throw err;
      if (Date.now() > deadline && info.active_pid !== null) {
        await client.query('SELECT pg_catalog.pg_terminate_backend($1)', [info.active_pid]).catch(() => {});
      }
      if (Date.now() > deadline + 10_000) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
    }
  }
}
