import { defineErrorArea, NanosyncError, redact } from '@nanosync/core';

/** The PostgreSQL source's error codes (block NS_P4000–NS_P4999). */
export const postgresErrors = defineErrorArea({
  area: 'PostgreSQL source',
  letter: 'P',
  range: [4000, 4999],
  codes: {
    PgConnection: {
      code: 'NS_P4001',
      meaning:
        'PostgreSQL cannot be reached, refused the connection, or dropped it. Retried while the cause looks temporary.',
      fix: 'Check the host, port, database and TLS settings of the connection (`dsn`) and that the server accepts connections from this machine (pg_hba.conf).',
    },
    PgPermission: {
      code: 'NS_P4002',
      meaning:
        'The login failed, or the user lacks a privilege nanosync needs (REPLICATION, SELECT on a table, CREATE on the database for the publication).',
      fix: 'Run the GRANT/ALTER ROLE the message prints, or correct the user and password.',
    },
    PgTableNotFound: {
      code: 'NS_P4003',
      meaning: 'A table the pipeline names does not exist in the database.',
      fix: 'Correct the `tables` entry; names are case-sensitive and the schema part counts (`public.orders`).',
    },
    PgNoReplicaIdentity: {
      code: 'NS_P4004',
      meaning: 'A table has no primary key and no replica identity, so its updates and deletes cannot be identified.',
      fix: 'Add a primary key, or `ALTER TABLE … REPLICA IDENTITY USING INDEX …` (or `FULL`).',
    },
    PgSlotMissing: {
      code: 'NS_P4005',
      meaning:
        "The pipeline's replication slot is gone, so the changes since its checkpoint can no longer be read; the message names the lost range (from the checkpoint up to the server's WAL position when the loss was found).",
      fix: 'Re-snapshot the pipeline (delete it and apply it again); nanosync never creates a new slot silently, as that would skip changes.',
    },
    PgSlotInvalidated: {
      code: 'NS_P4006',
      meaning:
        "PostgreSQL invalidated the pipeline's replication slot (it held back more WAL than max_slot_wal_keep_size allows); the WAL after the checkpoint is gone, and the message names the lost range (from the checkpoint up to the server's WAL position when the loss was found).",
      fix: 'Raise max_slot_wal_keep_size, then re-snapshot the pipeline (delete it and apply it again).',
    },
    PgWalLevel: {
      code: 'NS_P4007',
      meaning: 'The server is not configured for logical replication.',
      fix: 'Set `wal_level = logical` (and enough max_replication_slots / max_wal_senders) and restart PostgreSQL.',
    },
    PgInvalidName: {
      code: 'NS_P4008',
      meaning: 'A slot, publication or table name derived from the config is not a valid PostgreSQL identifier.',
      fix: 'Rename the pipeline or set the `slot_name` / `publication_name` property to a valid name (the message says why).',
    },
    PgProtocol: {
      code: 'NS_P4009',
      meaning:
        "A replication message or a stored position could not be decoded: a message out of order or cut short, or a position that is not this source's.",
      fix: 'Report it with the log lines around it; restarting resumes from the last checkpoint.',
    },
    PgValue: {
      code: 'NS_P4010',
      meaning:
        'A column value could not be converted into the event model; the message names the table, column and key.',
      fix: 'Correct the row, or leave the column out of the pipeline; report it if the value is valid PostgreSQL.',
    },
    PgCheck: {
      code: 'NS_P4011',
      meaning:
        'The source is in a state nanosync will not replicate from: a slot used by another process or of the wrong kind, no free slot, a FOR ALL TABLES publication, a dropped column, a failed query.',
      fix: 'Apply the fix the message prints (drop the slot, raise max_replication_slots, recreate the publication, re-snapshot).',
    },
  },
});
export const PgErrorCode = postgresErrors.code;

/** `"schema"."table"`: how tables appear in our messages (and in SQL). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteTable(table: { schema: string; name: string }): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/** A single-quoted SQL string literal, for the fix SQL we print (never for executed SQL). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

interface PgErrorLike {
  code?: string;
  message?: string;
  severity?: string;
}

function pgError(err: unknown): PgErrorLike {
  return typeof err === 'object' && err !== null ? (err as PgErrorLike) : {};
}

/** SQLSTATE of a server error, or the Node errno code (`ECONNREFUSED`) of a socket error. */
export function sqlState(err: unknown): string | undefined {
  return pgError(err).code;
}

const TRANSIENT_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/**
 * Whether a failure talking to the server may go away by itself: connection loss, server
 * shutting down or starting up, too many connections, serialization conflicts.
 */
export function isTransientPgError(err: unknown): boolean {
  const code = sqlState(err);
  const message = pgError(err).message ?? '';
  if (code && TRANSIENT_NODE_CODES.has(code)) return true;
  if (code && /^(08|53|57P0[1-4]|40001|40P01)/.test(code)) return true;
  return /Connection terminated|connection ended|socket hang up|Client has encountered a connection error/i.test(
    message,
  );
}

export function describeEndpoint(target: { host?: string; port?: number; database?: string }): string {
  return `${target.host ?? 'localhost'}:${target.port ?? 5432}/${target.database ?? ''}`;
}

/** Wrap a driver error from connecting or querying: retriable when transient, message redacted. */
export function connectionError(
  err: unknown,
  target: { host?: string; port?: number; database?: string },
  doing: string,
): NanosyncError {
  if (err instanceof NanosyncError) return err;
  const code = sqlState(err);
  const message = redact(pgError(err).message ?? String(err));
  if (code === '28P01' || code === '28000') {
    return new NanosyncError(PgErrorCode.PgPermission, `${doing} on ${describeEndpoint(target)}: ${message}`, {
      cause: err,
    });
  }
  return new NanosyncError(
    PgErrorCode.PgConnection,
    `${doing} on ${describeEndpoint(target)} failed: ${message}${code ? ` (${code})` : ''}`,
    {
      cause: err,
      retriable: isTransientPgError(err),
    },
  );
}

export function tableNotFound(table: { schema: string; name: string }, database: string): NanosyncError {
  return new NanosyncError(
    PgErrorCode.PgTableNotFound,
    `table ${quoteTable(table)} not found in database "${database}" (names are case-sensitive; check the schema part too)`,
    { details: { table: `${table.schema}.${table.name}`, database } },
  );
}

export function invalidName(kind: string, name: string, reason: string): NanosyncError {
  return new NanosyncError(PgErrorCode.PgInvalidName, `${kind} name "${name}" is invalid: ${reason}`, {
    details: { [kind]: name },
  });
}

/**
 * The range a lost slot can no longer deliver: from the checkpoint to the server's WAL
 * position when the loss was found (`head`; unknown when it could not be read). A new slot
 * would start after `head`, so every change in between reaches the sinks only by a re-snapshot.
 */
export function lostRange(checkpoint: string | undefined, head: string | undefined): string {
  return `the changes from checkpoint ${checkpoint ?? '(none)'} up to ${head ? `the server's WAL position ${head}` : 'now'}`;
}

export function slotMissing(slot: string, checkpoint: string | undefined, head?: string): NanosyncError {
  return new NanosyncError(
    PgErrorCode.PgSlotMissing,
    `replication slot "${slot}" does not exist any more (wal_status: missing); ${lostRange(checkpoint, head)} can no longer be read. ` +
      'nanosync does not create a new slot on its own, because changes made while the slot was gone would be skipped: re-snapshot the pipeline (delete and apply it again) to continue.',
    { details: { slot, checkpoint, walStatus: 'missing', lostTo: head } },
  );
}

export function slotInvalidated(
  slot: string,
  checkpoint: string | undefined,
  walStatus: string,
  detail = '',
  head?: string,
): NanosyncError {
  return new NanosyncError(
    PgErrorCode.PgSlotInvalidated,
    `replication slot "${slot}" was invalidated by the server (wal_status: ${walStatus}${detail}); WAL it still needed was removed, so ${lostRange(checkpoint, head)} can no longer be read. ` +
      'Raise max_slot_wal_keep_size to keep this from happening again, and re-snapshot the pipeline (delete and apply it again) to continue.',
    { details: { slot, checkpoint, walStatus, lostTo: head } },
  );
}

export function valueError(err: unknown, where: { table: string; column: string; key?: string }): NanosyncError {
  const message = err instanceof Error ? err.message : String(err);
  return new NanosyncError(
    PgErrorCode.PgValue,
    `table "${where.table}" column "${where.column}"${where.key ? ` key ${where.key}` : ''}: ${message}`,
    { cause: err, details: { table: where.table, column: where.column, key: where.key } },
  );
}

export function permissionError(message: string, fix: string | undefined, cause?: unknown): NanosyncError {
  return new NanosyncError(PgErrorCode.PgPermission, fix ? `${message}. Fix: ${fix}` : message, { cause });
}
