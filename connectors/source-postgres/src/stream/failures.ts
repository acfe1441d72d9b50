import { NanosyncError, redact } from '@nanosync/core';
import { connectClient, type PgConnectionConfig } from '../connection.js';
import {
  describeEndpoint,
  isTransientPgError,
  permissionError,
  quoteIdent,
  slotInvalidated,
  slotMissing,
  sqlState,
  PgErrorCode,
} from '../errors.js';
import { readSlot, serverWalPosition } from '../slot/replication-slot.js';

/** SQLSTATEs of a replication stream that are worth a reconnect besides the generic transient ones. */
const RETRY_STATES = new Set([
  '55006', // object_in_use: the previous walsender still holds the slot (it is shutting down)
  '58P01', // undefined_file: a WAL segment being recycled at the moment of reading
  '58030', // io_error
]);

export interface FailureContext {
  connection: PgConnectionConfig;
  slot: string;
  publication: string;
  /** Last acknowledged position, formatted, for messages about what was lost. */
  checkpoint: string;
}

/**
 * Turns whatever ended a replication session into a NanosyncError whose `retriable` says
 * whether reconnecting may help.
 *
 * The server answers a missing slot with 42704 and an invalidated one with 55000; both are
 * also used for other causes (a missing publication is 42704 too), so the slot is read
 * again to name the real cause: missing or invalidated slots are never retried.
 */
export async function classifySessionFailure(error: unknown, context: FailureContext): Promise<NanosyncError> {
  if (error instanceof NanosyncError) return error;
  const code = sqlState(error);
  const message = redact((error as { message?: string } | undefined)?.message ?? String(error));
  const where = describeEndpoint(context.connection);
  if (code === '42704' || code === '55000') {
    const slotError = await slotProblem(context);
    if (slotError) return slotError;
    return new NanosyncError(
      PgErrorCode.PgCheck,
      `replication of slot "${context.slot}" on ${where} failed: ${message} (${code})`,
      {
        cause: error,
        details: { slot: context.slot, publication: context.publication },
      },
    );
  }
  if (code === '42501' || code === '28000' || code === '28P01') {
    return permissionError(
      `role "${context.connection.user}" may not stream from slot "${context.slot}" on ${where}: ${message}`,
      code === '42501' ? `ALTER ROLE ${quoteIdent(context.connection.user)} REPLICATION;` : undefined,
      error,
    );
  }
  const retriable = isTransientPgError(error) || (code !== undefined && RETRY_STATES.has(code));
  return new NanosyncError(
    PgErrorCode.PgConnection,
    `replication connection to ${where} (slot "${context.slot}") failed: ${message}${code ? ` (${code})` : ''}`,
    {
      cause: error,
      retriable,
      details: { slot: context.slot },
    },
  );
}

/** The slot's state as the reason a stream failed, or undefined when the slot looks fine. */
async function slotProblem(context: FailureContext): Promise<NanosyncError | undefined> {
  let client: Awaited<ReturnType<typeof connectClient>> | undefined;
  try {
    client = await connectClient(context.connection);
    client.on('error', () => {});
    const info = await readSlot(client, context.slot);
    if (!info) return slotMissing(context.slot, context.checkpoint, await serverWalPosition(client));
    if (info.wal_status === 'lost' || info.conflicting === true || (info.invalidation_reason ?? null) !== null) {
      const reason = info.invalidation_reason ? `, invalidation_reason: ${info.invalidation_reason}` : '';
      return slotInvalidated(
        context.slot,
        context.checkpoint,
        info.wal_status ?? 'unknown',
        reason,
        await serverWalPosition(client),
      );
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    await client?.end().catch(() => {});
  }
}
