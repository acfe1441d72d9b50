import { type Logger, type Row, rowMaker, type Value } from '@nanosync/core';
import sql from 'mssql';
import { quoteIdent, quoteTable, valueError } from '../errors.js';
import { convertValue, type MssqlColumn, type TimePrecision } from '../types/mapping.js';
import { selectExpression } from '../types/mapping.js';
import { type BoundParameter, type KeyRangeBounds, partitionPredicate } from './key-ranges.js';

/** `SELECT <lossless expressions> FROM [s].[t] WHERE <key range>`; every identifier quoted, every value a parameter. */
export function partitionSelectSql(
  table: { schema: string; name: string },
  columns: MssqlColumn[],
  keyColumns: MssqlColumn[],
  bounds: KeyRangeBounds,
): { sql: string; parameters: BoundParameter[] } {
  const predicate = partitionPredicate(keyColumns, bounds);
  const list = columns.map((c, i) => `${selectExpression(c)} AS ${quoteIdent(`c${i}`)}`).join(', ');
  return { sql: `SELECT ${list} FROM ${quoteTable(table)}${predicate.sql}`, parameters: predicate.parameters };
}

export function bindParameters(request: sql.Request, parameters: BoundParameter[]): void {
  for (const p of parameters) {
    if (p.binary)
      request.input(p.name, sql.VarBinary(sql.MAX), p.value === null ? null : Buffer.from(p.value as Uint8Array));
    else request.input(p.name, sql.NVarChar(sql.MAX), p.value);
  }
}

/** Which isolation the snapshot reads use; SNAPSHOT when the database allows it. */
export type SnapshotIsolation = 'snapshot' | 'read_committed';

export interface ReadKeyRangeOptions {
  pool: sql.ConnectionPool;
  table: { schema: string; name: string };
  columns: MssqlColumn[];
  keyColumns: MssqlColumn[];
  bounds: KeyRangeBounds;
  isolation: SnapshotIsolation;
  maxRowsPerChunk: number;
  timePrecision: TimePrecision;
  signal: AbortSignal;
  logger?: Logger;
}

/**
 * Reads one key range inside its own transaction — SNAPSHOT isolation when the database
 * allows it (one consistent view of the range, no shared locks held against writers), else
 * READ COMMITTED — as one streamed query: tedious is paused while a chunk of
 * `maxRowsPerChunk` rows waits for the consumer, so memory stays at one chunk whatever the
 * range's size. There is no request timeout (the driver's 15 s default would cut long
 * ranges); stopping is through `signal`, which cancels the query.
 */
export async function* readKeyRange(o: ReadKeyRangeOptions): AsyncGenerator<Row[]> {
  const { sql: text, parameters } = partitionSelectSql(o.table, o.columns, o.keyColumns, o.bounds);
  const maxRows = Math.max(1, Math.floor(o.maxRowsPerChunk));
  const transaction = new sql.Transaction(o.pool);
  await transaction.begin(
    o.isolation === 'snapshot' ? sql.ISOLATION_LEVEL.SNAPSHOT : sql.ISOLATION_LEVEL.READ_COMMITTED,
  );
  let finished = false;
  try {
    const request = new sql.Request(transaction);
    bindParameters(request, parameters);
    const decode = rowDecoder(o.table, o.columns, o.keyColumns, o.timePrecision);
    for await (const raw of streamQuery(request, text, maxRows, o.signal)) yield raw.map(decode);
    await transaction.commit();
    finished = true;
  } finally {
    if (!finished) await transaction.rollback().catch(() => {});
  }
}

/**
 * Rows of one query in chunks, with backpressure: the request is paused while a full chunk
 * waits to be taken, resumed when it is. Rows are arrays in select-list order.
 */
export async function* streamQuery(
  request: sql.Request,
  text: string,
  maxRows: number,
  signal: AbortSignal,
): AsyncGenerator<unknown[][]> {
  request.stream = true;
  request.arrayRowMode = true;
  let buffer: unknown[][] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  request.on('row', (row: unknown[]) => {
    buffer.push(row);
    if (buffer.length >= maxRows) request.pause();
    if (buffer.length >= maxRows) notify();
  });
  request.on('error', (err: unknown) => {
    failure ??= err;
    notify();
  });
  request.on('done', () => {
    done = true;
    notify();
  });
  const onAbort = () => request.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  void request.query(text);
  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      if (buffer.length >= maxRows || (done && buffer.length > 0)) {
        const chunk = buffer.length > maxRows ? buffer.splice(0, maxRows) : buffer;
        if (chunk === buffer) buffer = [];
        yield chunk;
        if (!done) request.resume();
        continue;
      }
      if (done) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      signal.throwIfAborted();
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!done) request.cancel();
  }
}

/** Array rows in `columns` order → Row, errors naming table, column and key. */
export function rowDecoder(
  table: { schema: string; name: string },
  columns: MssqlColumn[],
  keyColumns: MssqlColumn[],
  precision: TimePrecision,
): (raw: unknown[]) => Row {
  const n = columns.length;
  // One reused array of values, then one object per row in the table's layout (see rowMaker).
  const make = rowMaker(columns.map((c) => c.name));
  const values = new Array<Value>(n);
  return (raw) => {
    for (let i = 0; i < n; i++) {
      const column = columns[i]!;
      let value: Value;
      try {
        value = convertValue(column, raw[i], precision);
      } catch (err) {
        const key = keyColumns
          .map((k) => `${k.name}=${String(raw[columns.findIndex((c) => c.name === k.name)] ?? 'NULL')}`)
          .join(',');
        throw valueError(err, { table: `${table.schema}.${table.name}`, column: column.name, key });
      }
      values[i] = value;
    }
    return make(values);
  };
}
