import type { Logger, PartitionSpec, Value } from '@nanosync/core';
import type sql from 'mssql';
import type { MssqlTable } from '../catalog.js';
import { quoteIdent, quoteTable } from '../errors.js';
import { convertValue, declaredType, type MssqlColumn, selectExpression } from '../types/mapping.js';
import {
  EXACT_QUANTILE_MAX_PAGES,
  histogramBoundaries,
  isBalanced,
  planKeyRanges,
  sampleBoundaries,
  samplePercent,
  scaleBoundaries,
} from './key-ranges.js';

export const SIZE_SQL = `SELECT SUM(CASE WHEN ps.index_id IN (0, 1) THEN ps.row_count ELSE 0 END) AS row_count,
       SUM(CASE WHEN ps.index_id IN (0, 1) THEN ps.used_page_count ELSE 0 END) AS pages
  FROM sys.dm_db_partition_stats ps WHERE ps.object_id = @object_id`;

/** Histogram steps of the key index's statistics, the high key read losslessly in the leading column's type. */
export function histogramSql(leading: MssqlColumn): string {
  return `SELECT ${selectExpression(leading, `CAST(h.range_high_key AS ${declaredType(leading)})`)} AS k,
       h.range_rows, h.equal_rows
  FROM sys.dm_db_stats_histogram(@object_id, @stats_id) h ORDER BY h.step_number`;
}

function keyList(keys: MssqlColumn[], ref = (c: MssqlColumn) => quoteIdent(c.name)): string {
  return keys.map(ref).join(', ');
}

/** Every `step`-th key in key order: exact quantiles from one pass over the key index. */
export function quantileSql(table: { schema: string; name: string }, keys: MssqlColumn[]): string {
  const aliased = keys.map((c, i) => `${selectExpression(c, `q.${quoteIdent(c.name)}`)} AS ${quoteIdent(`k${i}`)}`);
  return `SELECT ${aliased.join(', ')}
  FROM (SELECT ${keyList(keys)}, ROW_NUMBER() OVER (ORDER BY ${keyList(keys)}) AS ns_row FROM ${quoteTable(table)}) q
 WHERE q.ns_row % @step = 0
 ORDER BY ${keyList(keys, (c) => `q.${quoteIdent(c.name)}`)}`;
}

/**
 * Keys of a page sample, sorted by the server; `REPEATABLE` so that planning twice gives the
 * same plan while the table is unchanged. `percent` is a number we computed, never input.
 */
export function sampleSql(table: { schema: string; name: string }, keys: MssqlColumn[], percent: number): string {
  if (!Number.isFinite(percent) || percent <= 0 || percent > 100) throw new RangeError(`sample percent ${percent}`);
  const aliased = keys.map((c, i) => `${selectExpression(c)} AS ${quoteIdent(`k${i}`)}`);
  return `SELECT ${aliased.join(', ')} FROM ${quoteTable(table)} TABLESAMPLE SYSTEM (${percent} PERCENT) REPEATABLE (7)
 ORDER BY ${keyList(keys)}`;
}

/**
 * Plan a table's key ranges: the histogram when it gives balanced ranges, else a sample —
 * exact quantiles for small tables, TABLESAMPLE for large ones. See `key-ranges.ts`.
 */
export async function planTablePartitions(
  pool: sql.ConnectionPool,
  table: MssqlTable,
  targetRows: number,
  logger?: Logger,
): Promise<{ partitions: PartitionSpec[]; method: string; estimatedRows: number }> {
  const keys = table.keyColumns.map((k) => table.columns.find((c) => c.name === k)!);
  const size = await pool
    .request()
    .input('object_id', table.objectId)
    .query<{ row_count: number | string | null; pages: number | string | null }>(SIZE_SQL);
  const estimatedRows = Number(size.recordset[0]?.row_count ?? 0);
  const pages = Number(size.recordset[0]?.pages ?? 0);
  const names = table.keyColumns;
  if (estimatedRows <= targetRows) {
    return { partitions: planKeyRanges(names, [], estimatedRows, targetRows), method: 'single', estimatedRows };
  }
  const wanted = Math.ceil(estimatedRows / targetRows);
  try {
    const histogram = await pool
      .request()
      .input('object_id', table.objectId)
      .input('stats_id', table.keyStatsId)
      .query<{ k: unknown; range_rows: number; equal_rows: number }>(histogramSql(keys[0]!));
    const steps = histogram.recordset.map((r) => ({
      key: convertValue(keys[0]!, r.k) as Value,
      rangeRows: Number(r.range_rows),
      equalRows: Number(r.equal_rows),
    }));
    // A histogram of a table that grew or shrank a lot since its last statistics update
    // would put most rows in one range: only a fresh-enough one is used.
    const histogramRows = steps.reduce((n, st) => n + st.rangeRows + st.equalRows, 0);
    const fresh = histogramRows >= estimatedRows / 2 && histogramRows <= estimatedRows * 2;
    if (fresh && steps.length >= Math.min(wanted, 2)) {
      const partitions = planKeyRanges(
        names,
        scaleBoundaries(histogramBoundaries(steps), estimatedRows),
        estimatedRows,
        targetRows,
      );
      if (partitions.length > 1 && isBalanced(partitions, targetRows))
        return { partitions, method: 'histogram', estimatedRows };
    }
  } catch (err) {
    logger?.debug('statistics histogram not available; sampling keys instead', {
      table: `${table.schema}.${table.name}`,
      error: (err as Error).message,
    });
  }
  const request = pool.request();
  request.arrayRowMode = true;
  let rows: unknown[][];
  let rowsPerSample: number;
  let method: string;
  if (pages <= EXACT_QUANTILE_MAX_PAGES) {
    const step = Math.max(1, Math.floor(targetRows / 4));
    request.input('step', step);
    rows = (await request.query(quantileSql(table, keys))).recordset as unknown as unknown[][];
    rowsPerSample = step;
    method = 'quantiles';
  } else {
    const percent = samplePercent(estimatedRows, Math.min(200_000, wanted * 20));
    rows = (await request.query(sampleSql(table, keys, percent))).recordset as unknown as unknown[][];
    rowsPerSample = rows.length > 0 ? estimatedRows / rows.length : estimatedRows;
    method = 'tablesample';
  }
  const boundaries = sampleBoundaries(
    rows.map((r) => keys.map((k, i) => convertValue(k, r[i]))),
    rowsPerSample,
  );
  return { partitions: planKeyRanges(names, boundaries, estimatedRows, targetRows), method, estimatedRows };
}
