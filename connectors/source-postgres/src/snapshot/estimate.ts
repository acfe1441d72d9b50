import { quoteTable } from '../errors.js';
import type { Queryable } from '../types/index.js';
import type { TableSizeEstimate } from './ctid-partitions.js';

/** Below this many pages an unanalysed table is simply counted (a few MB at most). */
const COUNT_PAGES_LIMIT = 2000;
/** Rows per heap page assumed when nothing better is known (narrow rows fit ~100, wide ones ~20). */
const ROWS_PER_PAGE_GUESS = 60;
/** Pages the TABLESAMPLE estimate looks at, about. */
const SAMPLE_PAGES = 2000;

/**
 * Heap pages and live-row estimate for a table.
 *
 * Pages come from `pg_relation_size` (relpages is only refreshed by VACUUM/ANALYZE). The row
 * density comes from `reltuples / relpages` of the last ANALYZE; a table never analysed
 * (`reltuples = -1`, or 0 pages at analysis time) is counted when small and estimated from
 * a block sample (`TABLESAMPLE SYSTEM`) when large. For a partitioned table, pages is the
 * largest leaf (CTID ranges apply to each leaf) and rows the sum.
 */
export async function estimateTableSize(
  client: Queryable,
  table: { oid: number; schema: string; name: string; kind: string },
): Promise<TableSizeEstimate> {
  const { rows } = await client.query(
    table.kind === 'p'
      ? `SELECT coalesce(max(pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8), 0)::text AS pages,
                coalesce(sum(greatest(c.reltuples, 0)), 0)::text AS reltuples,
                min(c.reltuples)::text AS min_reltuples,
                coalesce(sum(c.relpages), 0)::text AS relpages,
                coalesce(sum(pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8), 0)::text AS total_pages
           FROM pg_catalog.pg_partition_tree($1::oid) t JOIN pg_catalog.pg_class c ON c.oid = t.relid
          WHERE t.isleaf`
      : `SELECT (pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8)::text AS pages,
                c.reltuples::text AS reltuples, c.reltuples::text AS min_reltuples, c.relpages::text AS relpages,
                (pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8)::text AS total_pages
           FROM pg_catalog.pg_class c WHERE c.oid = $1`,
    [table.oid],
  );
  const row = rows[0] ?? {};
  const pages = Number(row.pages ?? 0);
  const totalPages = Number(row.total_pages ?? 0);
  const reltuples = Number(row.reltuples ?? -1);
  const relpages = Number(row.relpages ?? 0);
  const analysed = Number(row.min_reltuples ?? -1) >= 0 && relpages > 0;
  if (pages === 0) return { pages: 0, estimatedRows: 0 };
  if (analysed) return { pages, estimatedRows: Math.round((reltuples / relpages) * totalPages) };
  const name = quoteTable(table);
  if (!(await maySelect(client, table.oid))) {
    // A partition the role reads only through its partitioned table, never analysed: a
    // rough density (the ranges are page ranges, so the estimate only shapes their size).
    return { pages, estimatedRows: totalPages * ROWS_PER_PAGE_GUESS };
  }
  if (totalPages <= COUNT_PAGES_LIMIT) {
    const counted = await client.query(`SELECT count(*)::text AS n FROM ${name}`);
    return { pages, estimatedRows: Number(counted.rows[0]?.n ?? 0) };
  }
  const percent = Math.min(100, (SAMPLE_PAGES / totalPages) * 100);
  const sampled = await client.query(`SELECT count(*)::text AS n FROM ${name} TABLESAMPLE SYSTEM ($1) REPEATABLE (7)`, [
    percent,
  ]);
  return { pages, estimatedRows: Math.round((Number(sampled.rows[0]?.n ?? 0) * 100) / percent) };
}

async function maySelect(client: Queryable, oid: number): Promise<boolean> {
  const { rows } = await client.query(`SELECT has_table_privilege($1::oid, 'SELECT')::text AS may`, [oid]);
  return rows[0]?.may === 'true';
}
