/**
 * Snapshot partitions as key ranges.
 *
 * A partition is `lower < key <= upper` over the table's key (primary key, or the unique
 * index used instead), compared as a tuple in the key's column order; the first partition
 * has no lower bound and the last no upper bound, so together they cover every key,
 * including keys inserted after planning. A bound may be a prefix of the key (the
 * statistics histogram only knows the leading column): `(a) < (x)` compares the leading
 * column alone, which still splits the key space into disjoint, complete ranges.
 *
 * Boundaries come from the key distribution, never from reading the whole table:
 *  - the statistics histogram of the key's index (`sys.dm_db_stats_histogram`: up to 200
 *    steps, each with the rows up to its high key), when it yields balanced ranges;
 *  - otherwise a `TABLESAMPLE` of the key columns, sorted by the server;
 *  - for small tables (a few thousand pages), exact quantiles from one pass over the key's
 *    index (`ROW_NUMBER()`), which is cheaper than sampling would be accurate.
 * The server sorts every boundary list, so the order is SQL Server's own (collations,
 * uniqueidentifier byte order) and nothing here compares key values.
 */
import type { PartitionSpec, Value } from '@nanosync/core';
import { protocolError, quoteIdent } from '../errors.js';
import { keyParameter, keyParameterValue, type MssqlColumn } from '../types/mapping.js';

/** A key value in a persisted bound: JSON-safe (bytes as `{ hex }`). */
export type BoundValue = string | number | boolean | null | { hex: string };

export interface KeyRangeBounds {
  kind: 'key-range';
  /** Key columns the bounds refer to, in key order (a bound may use a prefix of them). */
  columns: string[];
  /** Exclusive lower bound; absent = from the first key. */
  lower?: BoundValue[];
  /** Inclusive upper bound; absent = to the last key. */
  upper?: BoundValue[];
}

export function isKeyRangeBounds(value: unknown): value is KeyRangeBounds {
  const b = value as KeyRangeBounds;
  return (
    typeof b === 'object' &&
    b !== null &&
    b.kind === 'key-range' &&
    Array.isArray(b.columns) &&
    (b.lower === undefined || Array.isArray(b.lower)) &&
    (b.upper === undefined || Array.isArray(b.upper))
  );
}

export function toBoundValue(value: Value): BoundValue {
  if (value instanceof Uint8Array) return { hex: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) throw protocolError('an array cannot be a key value');
  return value;
}

export function fromBoundValue(value: BoundValue): Value {
  if (value !== null && typeof value === 'object') return Uint8Array.from(Buffer.from(value.hex, 'hex'));
  return value;
}

/** A point in key order with the (estimated) number of rows at or below it. */
export interface KeyBoundary {
  key: Value[];
  rowsUpTo: number;
}

/**
 * Cut the ordered boundaries into ranges of about `targetRows` rows. `totalRows` is the
 * current estimate (the last range, open-ended, gets what is left of it).
 */
export function planKeyRanges(
  columns: string[],
  boundaries: KeyBoundary[],
  totalRows: number,
  targetRows: number,
): PartitionSpec[] {
  const target = Math.max(1, Math.floor(targetRows));
  const cuts: { key: Value[]; rowsUpTo: number }[] = [];
  let previousCut = 0;
  let previousKey: string | undefined;
  for (const b of boundaries) {
    const rows = b.rowsUpTo;
    const id = JSON.stringify(b.key.map(toBoundValue));
    if (id === previousKey) continue;
    if (rows - previousCut >= target && totalRows - rows >= target / 4) {
      cuts.push({ key: b.key, rowsUpTo: rows });
      previousCut = rows;
      previousKey = id;
    }
  }
  const partitions: PartitionSpec[] = [];
  let lower: Value[] | undefined;
  let lowerRows = 0;
  for (const cut of cuts) {
    const bounds: KeyRangeBounds = { kind: 'key-range', columns, upper: cut.key.map(toBoundValue) };
    if (lower) bounds.lower = lower.map(toBoundValue);
    partitions.push({ id: String(partitions.length), bounds, estimatedRows: Math.round(cut.rowsUpTo - lowerRows) });
    lower = cut.key;
    lowerRows = cut.rowsUpTo;
  }
  const tail: KeyRangeBounds = { kind: 'key-range', columns };
  if (lower) tail.lower = lower.map(toBoundValue);
  partitions.push({
    id: String(partitions.length),
    bounds: tail,
    estimatedRows: Math.max(0, Math.round(totalRows - lowerRows)),
  });
  return partitions;
}

/** Whether every planned partition is within `factor` × the target (the histogram is good enough). */
export function isBalanced(partitions: PartitionSpec[], targetRows: number, factor = 2): boolean {
  return partitions.every((p) => (p.estimatedRows ?? 0) <= targetRows * factor);
}

/** Histogram steps (in step order) → boundaries on the leading key column. */
export function histogramBoundaries(steps: { key: Value; rangeRows: number; equalRows: number }[]): KeyBoundary[] {
  let rows = 0;
  const out: KeyBoundary[] = [];
  for (const s of steps) {
    rows += s.rangeRows + s.equalRows;
    if (s.key === null) continue; // the NULL step of a nullable column sorts first; keys are NOT NULL
    out.push({ key: [s.key], rowsUpTo: rows });
  }
  return out;
}

/** Boundaries of an older histogram scaled to the table's current row count. */
export function scaleBoundaries(boundaries: KeyBoundary[], totalRows: number): KeyBoundary[] {
  const last = boundaries.at(-1)?.rowsUpTo ?? 0;
  if (last <= 0 || totalRows <= 0) return boundaries;
  const scale = totalRows / last;
  return boundaries.map((b) => ({ key: b.key, rowsUpTo: b.rowsUpTo * scale }));
}

/** Sorted sample keys, each standing for `rowsPerSample` rows → boundaries. */
export function sampleBoundaries(keys: Value[][], rowsPerSample: number): KeyBoundary[] {
  return keys.map((key, i) => ({ key, rowsUpTo: (i + 1) * rowsPerSample }));
}

export interface BoundParameter {
  name: string;
  value: string | Uint8Array | null;
  binary: boolean;
}

/**
 * `key > bound` (`'>'`) or `key <= bound` (`'<='`) as a tuple comparison over the bound's
 * columns, expanded to `(a > @x OR (a = @x AND b > @y))`, with each parameter converted to
 * its column's declared type on the server.
 */
export function tuplePredicate(
  keyColumns: MssqlColumn[],
  bound: BoundValue[],
  op: '>' | '<=',
  prefix: string,
  columnRef: (c: MssqlColumn) => string = (c) => quoteIdent(c.name),
): { sql: string; parameters: BoundParameter[] } {
  if (bound.length === 0 || bound.length > keyColumns.length)
    throw protocolError(`a key bound has ${bound.length} values for a key of ${keyColumns.length} columns`);
  const parameters: BoundParameter[] = [];
  const exprs = bound.map((value, i) => {
    const column = keyColumns[i]!;
    const name = `${prefix}${i}`;
    const p = keyParameter(column, name);
    parameters.push({ name, value: keyParameterValue(column, fromBoundValue(value)), binary: p.binary });
    return p.expression;
  });
  const strict = op === '>' ? '>' : '<';
  const last = op === '>' ? '>' : '<=';
  const alternatives: string[] = [];
  for (let i = 0; i < bound.length; i++) {
    const parts: string[] = [];
    for (let j = 0; j < i; j++) parts.push(`${columnRef(keyColumns[j]!)} = ${exprs[j]}`);
    parts.push(`${columnRef(keyColumns[i]!)} ${i === bound.length - 1 ? last : strict} ${exprs[i]}`);
    alternatives.push(parts.length === 1 ? parts[0]! : `(${parts.join(' AND ')})`);
  }
  return { sql: alternatives.length === 1 ? alternatives[0]! : `(${alternatives.join(' OR ')})`, parameters };
}

/** The WHERE clause of a partition (empty string for the whole table) and its parameters. */
export function partitionPredicate(
  keyColumns: MssqlColumn[],
  bounds: KeyRangeBounds,
): { sql: string; parameters: BoundParameter[] } {
  const clauses: string[] = [];
  const parameters: BoundParameter[] = [];
  if (bounds.lower) {
    const p = tuplePredicate(keyColumns, bounds.lower, '>', 'lo');
    clauses.push(p.sql);
    parameters.push(...p.parameters);
  }
  if (bounds.upper) {
    const p = tuplePredicate(keyColumns, bounds.upper, '<=', 'hi');
    clauses.push(p.sql);
    parameters.push(...p.parameters);
  }
  return { sql: clauses.length ? ` WHERE ${clauses.join(' AND ')}` : '', parameters };
}

/** Pages the exact-quantile pass may read at most; above it, histogram or TABLESAMPLE. */
export const EXACT_QUANTILE_MAX_PAGES = 4096;

/** Sample percentage so that about `wanted` key rows come back (capped to 0.01–100). */
export function samplePercent(estimatedRows: number, wanted: number): number {
  if (estimatedRows <= 0) return 100;
  return Math.min(100, Math.max(0.01, Math.round((wanted / estimatedRows) * 100 * 1000) / 1000));
}
