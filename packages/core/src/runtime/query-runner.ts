import type { Source } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { ChangeEvent, ColumnSchema, LogicalType, Position, Row, TableSchema, Value } from '../model.js';
import { sleep } from './backoff.js';
import type { FanOut } from './fan-out.js';
import type { PipelineStats } from './stats.js';

/**
 * Positions of `query` pipelines. There is no change stream, so each run gets a synthetic
 * marker in the same fixed-width shape as stream positions: `${run start in ms, 16 hex}:${row
 * index, 8 hex}`. Markers sort as plain strings, grow from run to run, and the end-of-run
 * marker (`…:ffffffff`) is each sink's checkpoint, which tells a restarted server when the
 * last complete run started so it keeps the schedule instead of running again at once.
 */
export function queryPosition(runStartMs: number, rowIndex: number): Position {
  return `${Math.floor(runStartMs).toString(16).padStart(16, '0')}:${(rowIndex >>> 0).toString(16).padStart(8, '0')}`;
}

export function compareQueryPositions(a: Position, b: Position): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The run start (ms) encoded in a query marker, or undefined for anything else. */
export function queryRunStart(position: Position | undefined): number | undefined {
  const match = position === undefined ? null : /^([0-9a-f]{16}):[0-9a-f]{8}$/.exec(position);
  return match ? Number.parseInt(match[1]!, 16) : undefined;
}

const END_OF_RUN = 0xffffffff;
const NO_KEY: Row = Object.freeze({}) as Row;

export interface QueryPipelineOptions {
  pipeline: string;
  source: Source;
  sql: string;
  intervalSeconds: number;
  fanOut: FanOut;
  /** Opens (or re-opens, when the result's columns change) every sink for the result table. */
  openSinks: (table: TableSchema) => Promise<void>;
  chunkRows: number;
  signal: AbortSignal;
  logger: Logger;
  stats: PipelineStats;
  /** Minimum checkpoint over the sinks at start. */
  checkpoint: Position | undefined;
  onRunStart: () => void;
}

/**
 * A `query` pipeline: run the SQL on the schedule and send every result row to the sinks
 * as a `read` event, chunk by chunk (never the whole result in memory). A run counts as
 * done when every sink has all its rows, at which point the end-of-run marker is
 * checkpointed. A run interrupted by a crash is run again in full (at least once).
 *
 * The result's table is `query.<pipeline>` with columns typed from the values (a column
 * that is NULL in the whole first chunk becomes `string`); it has no key columns.
 */
export async function runQueryPipeline(options: QueryPipelineOptions): Promise<'stopped'> {
  const { source, signal, logger, fanOut, stats } = options;
  if (source.query === undefined) {
    throw new NanosyncError(
      ErrorCode.PipelineUnsupported,
      `pipeline ${options.pipeline}: its source cannot run SQL queries, so it cannot be a query pipeline`,
    );
  }
  const intervalMs = options.intervalSeconds * 1000;
  let lastRun = queryRunStart(options.checkpoint);
  let opened: TableSchema | undefined;
  while (!signal.aborted) {
    const wait = lastRun === undefined ? 0 : lastRun + intervalMs - Date.now();
    if (wait > 0) await sleep(wait, signal);
    if (signal.aborted) break;
    const runStart = Date.now();
    options.onRunStart();
    let index = 0;
    let table: TableSchema | undefined;
    const tableStats = stats.table(`query.${options.pipeline}`);
    for await (const rows of source.query(options.sql, { signal, maxRowsPerChunk: options.chunkRows })) {
      if (signal.aborted) return 'stopped';
      if (rows.length === 0) continue;
      if (table === undefined) {
        table = inferTable(options.pipeline, rows);
        if (opened === undefined || !sameColumns(opened, table)) {
          // Everything from the previous run is durable (its barrier passed): safe to reopen.
          await options.openSinks(table);
          opened = table;
        } else {
          table = opened;
        }
      }
      const events = new Array<ChangeEvent>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        events[i] = { op: 'read', table, key: NO_KEY, after: rows[i]!, position: queryPosition(runStart, index++) };
      }
      stats.onSnapshotRows(tableStats, rows.length);
      if (fanOut.push(events, undefined)) await fanOut.waitForRoom();
    }
    if (signal.aborted) break;
    fanOut.push([], queryPosition(runStart, END_OF_RUN));
    await fanOut.barrier();
    lastRun = runStart;
    logger.info('query run complete', { rows: index, next_run_in_s: options.intervalSeconds });
  }
  return 'stopped';
}

function inferTable(pipeline: string, rows: readonly Row[]): TableSchema {
  const columns: ColumnSchema[] = [];
  const first = rows[0]!;
  for (const name of Object.keys(first)) {
    let type: LogicalType = { kind: 'string' };
    for (const row of rows) {
      const v = row[name];
      if (v !== null && v !== undefined) {
        type = typeOf(v);
        break;
      }
    }
    columns.push({ name, type, nullable: true });
  }
  return { schema: 'query', name: pipeline, columns, keyColumns: [] };
}

function typeOf(v: Value): LogicalType {
  if (typeof v === 'number') return { kind: 'float64' };
  if (typeof v === 'boolean') return { kind: 'bool' };
  if (v instanceof Uint8Array) return { kind: 'bytes' };
  if (Array.isArray(v)) {
    const item = v.find((x) => x !== null);
    return { kind: 'array', items: item === undefined ? { kind: 'string' } : typeOf(item) };
  }
  return { kind: 'string' };
}

function sameColumns(a: TableSchema, b: TableSchema): boolean {
  return (
    a.columns.length === b.columns.length &&
    a.columns.every(
      (c, i) => c.name === b.columns[i]!.name && JSON.stringify(c.type) === JSON.stringify(b.columns[i]!.type),
    )
  );
}
