import { ErrorCode, NanosyncError, redact } from '@nanosync/core';

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
    return new NanosyncError(ErrorCode.PgPermission, `${doing} on ${describeEndpoint(target)}: ${message}`, {
      cause: err,
    });
  }
  return new NanosyncError(
    ErrorCode.PgConnection,
    `${doing} on ${describeEndpoint(target)} failed: ${message}${code ? ` (${code})` : ''}`,
    {
      cause: err,
      retriable: isTransientPgError(err),
    },
  );
}

export function tableNotFound(table: { schema: string; name: string }, database: string): NanosyncError {
  return new NanosyncError(
    ErrorCode.PgTableNotFound,
    `table ${quoteTable(table)} not found in database "${database}" (names are case-sensitive; check the schema part too)`,
    { details: { table: `${table.schema}.${table.name}`, database } },
  );
}

export function invalidName(kind: string, name: string, reason: string): NanosyncError {
  return new NanosyncError(ErrorCode.PgInvalidName, `${kind} name "${name}" is invalid: ${reason}`, {
    details: { [kind]: name },
  });
}

export function slotMissing(slot: string, checkpoint: string | undefined): NanosyncError {
  return new NanosyncError(
    ErrorCode.PgSlotMissing,
    `replication slot "${slot}" does not exist any more (wal_status: missing); changes after checkpoint ${checkpoint ?? '(none)'} can no longer be read. ` +
      'nanosync does not create a new slot on its own, because changes made while the slot was gone would be skipped: re-snapshot the pipeline (delete and apply it again) to continue.',
    { details: { slot, checkpoint, walStatus: 'missing' } },
  );
}

export function slotInvalidated(
  slot: string,
  checkpoint: string | undefined,
  walStatus: string,
  detail = '',
): NanosyncError {
  return new NanosyncError(
    ErrorCode.PgSlotInvalidated,
    `replication slot "${slot}" was invalidated by the server (wal_status: ${walStatus}${detail}); the WAL after checkpoint ${checkpoint ?? '(none)'} was removed. ` +
      'Raise max_slot_wal_keep_size to keep this from happening again, and re-snapshot the pipeline (delete and apply it again) to continue.',
    { details: { slot, checkpoint, walStatus } },
  );
}

export function valueError(err: unknown, where: { table: string; column: string; key?: string }): NanosyncError {
  const message = err instanceof Error ? err.message.replace(/^\[NS_P4010\] /, '') : String(err);
  return new NanosyncError(
    ErrorCode.PgValue,
    `table "${where.table}" column "${where.column}"${where.key ? ` key ${where.key}` : ''}: ${message}`,
    { cause: err, details: { table: where.table, column: where.column, key: where.key } },
  );
}

export function permissionError(message: string, fix: string | undefined, cause?: unknown): NanosyncError {
  return new NanosyncError(ErrorCode.PgPermission, fix ? `${message}. Fix: ${fix}` : message, { cause });
}
