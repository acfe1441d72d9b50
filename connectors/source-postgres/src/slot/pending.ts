import type pg from 'pg';

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n;

/**
 * Commit time of the oldest transaction the slot still holds for the publication: the first
 * pgoutput message the slot would send is that transaction's BEGIN ('B', final LSN, commit
 * timestamp in µs since 2000-01-01, xid). `pg_logical_slot_peek_binary_changes` decodes
 * without consuming, stops after the first change, and needs the slot idle (a paused
 * pipeline's). Bounded by `timeoutMs`: a long stretch of WAL without a published change is
 * not worth decoding over and over; the answer is then unknown (`undefined`).
 * `null` = nothing pending.
 */
export async function oldestPendingCommit(
  client: pg.Client,
  slot: string,
  publication: string,
  timeoutMs = 10_000,
): Promise<string | null | undefined> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
    // The first 17 bytes as hex text: the admin connection reads every type as text.
    const { rows } = await client.query<{ head: string }>(
      `SELECT pg_catalog.encode(pg_catalog.substr(data, 1, 17), 'hex') AS head
         FROM pg_catalog.pg_logical_slot_peek_binary_changes($1, NULL, 1,
              'proto_version', '1', 'publication_names', $2)`,
      [slot, publication],
    );
    await client.query('COMMIT');
    for (const { head } of rows) {
      const data = Buffer.from(String(head), 'hex');
      if (data.length >= 17 && data[0] === 0x42) {
        const micros = data.readBigInt64BE(9) + PG_EPOCH_US;
        return new Date(Number(micros / 1000n)).toISOString();
      }
    }
    return null;
  } catch {
    await client.query('ROLLBACK').catch(() => {});
    return undefined;
  }
}
