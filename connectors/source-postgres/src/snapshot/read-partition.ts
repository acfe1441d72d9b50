import type { Logger, Row, Value } from '@nanosync/core';
import { ErrorCode, NanosyncError, rowMaker } from '@nanosync/core';
import type pg from 'pg';
import type { PgColumn } from '../describe.js';
import { quoteIdent, quoteTable, valueError } from '../errors.js';
import { decodeValue } from '../types/index.js';
import { CopyOutQuery, parseCopyTextRow } from './copy-out.js';
import { type CtidBounds, ctidPredicate } from './ctid-partitions.js';

/**
 * How partition rows travel. Both paths were measured on this project's test machine
 * (2 shared cores, PostgreSQL 15 on loopback; one 300 000-row partition of 8 columns: bigint,
 * text, numeric, float8, bool, timestamptz, text[], jsonb; decoding included; median of 3;
 * `pnpm exec tsx --conditions=@nanosync/source connectors/source-postgres/bench/read-path.ts`):
 *
 *   copy    COPY (SELECT …) TO STDOUT, text format, parsed here   1413 ms   ~212 000 rows/s
 *   cursor  DECLARE … CURSOR + FETCH 5000, text results           2552 ms   ~118 000 rows/s
 *
 * COPY is the default: the server streams rows without a round trip per batch, and one
 * text line per row is cheaper to split than DataRow messages are to parse. The cursor path
 * stays for comparison (`PostgresSourceOptions.readPath`).
 */
export type ReadPath = 'copy' | 'cursor';
export const DEFAULT_READ_PATH: ReadPath = 'copy';

const SNAPSHOT_TOKEN = /^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+$/;

export interface ReadCtidPartitionOptions {
  client: pg.Client;
  table: { schema: string; name: string };
  /** Read the leaf `table` through this partitioned table (see {@link partitionSelect}). */
  through?: { schema: string; name: string };
  columns: PgColumn[];
  keyColumns: string[];
  bounds: CtidBounds;
  snapshotToken?: string;
  maxRowsPerChunk: number;
  signal: AbortSignal;
  path?: ReadPath;
  logger?: Logger;
  /** Exported snapshots already found gone: later partitions skip the attempt and the warning. */
  deadSnapshots?: Set<string>;
}

/**
 * `SELECT "a", "b" FROM "s"."t" WHERE ctid …`; every identifier quoted. With `through`
 * (the partitioned table of the leaf `table`, for a role that may read the partitioned
 * table but not its partitions directly) the leaf's rows are selected through it by
 * `tableoid`.
 */
export function partitionSelect(
  table: { schema: string; name: string },
  columns: PgColumn[],
  bounds: CtidBounds,
  through?: { schema: string; name: string },
): string {
  const list = columns.map((c) => quoteIdent(c.name)).join(', ');
  if (through === undefined) return `SELECT ${list} FROM ${quoteTable(table)}${ctidPredicate(bounds)}`;
  const where = ctidPredicate(bounds);
  const leaf = `tableoid = '${quoteTable(table).replace(/'/g, "''")}'::regclass`;
  return `SELECT ${list} FROM ${quoteTable(through)} WHERE ${leaf}${where === '' ? '' : ` AND ${where.slice(' WHERE '.length)}`}`;
}

/**
 * `BEGIN` of a snapshot read: REPEATABLE READ, READ ONLY, importing `snapshotToken` when given
 * (and not already found gone). An exported snapshot that died with the connection that
 * exported it (server restart, connection loss) is noted in `deadSnapshots` and the read
 * takes the current state instead, which is what a restarted pipeline does anyway: the
 * stream's replay from the start position covers the difference.
 */
export async function beginSnapshotRead(
  client: pg.Client,
  opts: {
    table: { schema: string; name: string };
    snapshotToken?: string;
    deadSnapshots?: Set<string>;
    logger?: Logger;
  },
): Promise<void> {
  if (opts.snapshotToken !== undefined && !SNAPSHOT_TOKEN.test(opts.snapshotToken)) {
    throw new NanosyncError(
      ErrorCode.Internal,
      `malformed snapshot token ${JSON.stringify(opts.snapshotToken.slice(0, 40))}`,
    );
  }
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  if (opts.snapshotToken && !opts.deadSnapshots?.has(opts.snapshotToken)) {
    try {
      await client.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotToken}'`);
    } catch (err) {
      if ((err as { code?: string }).code !== '22023') throw err;
      opts.deadSnapshots?.add(opts.snapshotToken);
      opts.logger?.warn(
        'exported snapshot no longer available; the remaining partitions are read from fresh snapshots',
        {
          table: `${opts.table.schema}.${opts.table.name}`,
        },
      );
      await client.query('ROLLBACK');
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    }
  }
}

/**
 * Reads one CTID page range inside a REPEATABLE READ, READ ONLY transaction that imports
 * `snapshotToken` when given (the exported snapshot of slot creation), so every partition
 * sees the data exactly as of the start position. Yields chunks of at most
 * `maxRowsPerChunk` rows. If the caller stops early or an error occurs the client is left
 * mid-protocol: the caller must discard it (`clientReusable` tells).
 */
export async function* readCtidPartition(
  opts: ReadCtidPartitionOptions,
  state: { clientReusable: boolean },
): AsyncGenerator<Row[]> {
  const { client, signal } = opts;
  state.clientReusable = false;
  const maxRows = Math.max(1, Math.floor(opts.maxRowsPerChunk));
  await beginSnapshotRead(client, opts);
  await client.query('SET LOCAL statement_timeout = 0');
  const select = partitionSelect(opts.table, opts.columns, opts.bounds, opts.through);
  const decodeRow = rowDecoder(opts);
  if ((opts.path ?? DEFAULT_READ_PATH) === 'copy') {
    const copy = new CopyOutQuery(`COPY (${select}) TO STDOUT`, maxRows * 2);
    // pg returns the submittable itself; errors arrive through copy.handleError.
    client.query(copy as unknown as pg.QueryConfig);
    for (;;) {
      signal.throwIfAborted();
      const lines = await copy.next(maxRows);
      if (lines.length === 0) break;
      const rows: Row[] = new Array(lines.length);
      for (let i = 0; i < lines.length; i++) rows[i] = decodeRow(parseCopyTextRow(lines[i]!, opts.columns.length));
      yield rows;
    }
    await copy.done;
  } else {
    await client.query(`DECLARE nanosync_partition NO SCROLL CURSOR FOR ${select}`);
    for (;;) {
      signal.throwIfAborted();
      const result = await client.query({ text: `FETCH FORWARD ${maxRows} FROM nanosync_partition`, rowMode: 'array' });
      const raw = result.rows as unknown as (string | null)[][];
      if (raw.length === 0) break;
      yield raw.map(decodeRow);
      if (raw.length < maxRows) break;
    }
  }
  await client.query('COMMIT');
  state.clientReusable = true;
}

/** Field texts in column order → Row, errors naming table, column and key. */
export function rowDecoder(opts: {
  table: { schema: string; name: string };
  columns: PgColumn[];
  keyColumns: string[];
}): (fields: (string | null)[]) => Row {
  const columns = opts.columns;
  const n = columns.length;
  // One reused array of values, then one object per row in the table's layout (see rowMaker).
  const make = rowMaker(columns.map((c) => c.name));
  const values = new Array<Value>(n);
  return (fields) => {
    for (let i = 0; i < n; i++) {
      const column = columns[i]!;
      const text = fields[i];
      let value: Value;
      if (text === null || text === undefined) value = null;
      else {
        try {
          value = decodeValue(column.type, text);
        } catch (err) {
          const key = opts.keyColumns
            .map((k) => `${k}=${fields[columns.findIndex((c) => c.name === k)] ?? 'NULL'}`)
            .join(',');
          throw valueError(err, { table: `${opts.table.schema}.${opts.table.name}`, column: column.name, key });
        }
      }
      values[i] = value;
    }
    return make(values);
  };
}
