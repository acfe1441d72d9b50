import type { PartitionSpec } from '@nanosync/core';

/**
 * A partition of a table as a range of heap pages: rows whose ctid is in
 * [(startPage,0), (endPage,0)). `endPage: null` means "to the end of the table", so rows in
 * pages added after planning (the table grew) are read by the last partition.
 */
export interface CtidBounds {
  startPage: number;
  endPage: number | null;
  /** For a partitioned table: the leaf partition the range belongs to (read directly). */
  leaf?: { schema: string; name: string };
}

export interface TableSizeEstimate {
  /** Heap pages now (pg_relation_size / block_size). */
  pages: number;
  /** Estimated live rows. */
  estimatedRows: number;
}

/**
 * Split `pages` into consecutive page ranges holding about `targetRowsPerPartition` rows
 * each, assuming rows are spread evenly (density = estimatedRows / pages). Every page
 * belongs to exactly one partition; the last one is open-ended.
 */
export function planCtidPartitions(size: TableSizeEstimate, targetRowsPerPartition: number): PartitionSpec[] {
  const target = Math.max(1, Math.floor(targetRowsPerPartition));
  const pages = Math.max(0, Math.floor(size.pages));
  const rows = Math.max(0, Math.round(size.estimatedRows));
  if (pages <= 1 || rows <= target) {
    return [{ id: '0', bounds: { startPage: 0, endPage: null } satisfies CtidBounds, estimatedRows: rows }];
  }
  const rowsPerPage = rows / pages;
  const pagesPerPartition = Math.max(1, Math.floor(target / rowsPerPage));
  const count = Math.ceil(pages / pagesPerPartition);
  const partitions: PartitionSpec[] = [];
  for (let i = 0; i < count; i++) {
    const startPage = i * pagesPerPartition;
    const last = i === count - 1;
    const endPage = last ? null : startPage + pagesPerPartition;
    const spanPages = (endPage ?? pages) - startPage;
    partitions.push({
      id: String(i),
      bounds: { startPage, endPage } satisfies CtidBounds,
      estimatedRows: Math.round(spanPages * rowsPerPage),
    });
  }
  return partitions;
}

export function isCtidBounds(value: unknown): value is CtidBounds {
  if (typeof value !== 'object' || value === null) return false;
  const b = value as Record<string, unknown>;
  const page = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 0xffffffff;
  const leaf = b.leaf as Record<string, unknown> | undefined;
  return (
    page(b.startPage) &&
    (b.endPage === null || (page(b.endPage) && (b.endPage as number) > (b.startPage as number))) &&
    (leaf === undefined ||
      (typeof leaf === 'object' && leaf !== null && typeof leaf.schema === 'string' && typeof leaf.name === 'string'))
  );
}

/** The WHERE clause for a partition (numbers only, validated: safe to inline). */
export function ctidPredicate(bounds: CtidBounds): string {
  if (!isCtidBounds(bounds)) throw new TypeError(`invalid CTID partition bounds ${JSON.stringify(bounds)}`);
  const parts: string[] = [];
  if (bounds.startPage > 0) parts.push(`ctid >= '(${bounds.startPage},0)'::tid`);
  if (bounds.endPage !== null) parts.push(`ctid < '(${bounds.endPage},0)'::tid`);
  return parts.length === 0 ? '' : ` WHERE ${parts.join(' AND ')}`;
}
