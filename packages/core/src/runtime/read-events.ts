/**
 * Snapshot rows as `read` events: one builder for the main thread's snapshot, its fallback
 * for chunks a worker could not encode, and the pipeline's worker threads, so every path gives
 * a sink the same events. It imports nothing of core but the row maker: a worker thread loads it
 * without the rest of core.
 */
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';
import { keyMaker } from '../values/row-maker.js';

const EMPTY_KEY: Row = Object.freeze({}) as Row;

/**
 * `read` events of `rows` at `position`, carrying the chunk id when there is one. With `keep`
 * (concurrent mode, rows the merge dropped), only the rows whose entry is 1.
 */
export function readEvents(
  table: TableSchema,
  rows: readonly Row[],
  position: Position,
  chunk: string | undefined,
  keep?: Uint8Array,
): ChangeEvent[] {
  const keyOf = table.keyColumns.length > 0 ? keyMaker(table.keyColumns) : undefined;
  const events: ChangeEvent[] = [];
  for (let i = 0; i < rows.length; i++) {
    if (keep !== undefined && keep[i] !== 1) continue;
    const row = rows[i]!;
    const key = keyOf === undefined ? EMPTY_KEY : keyOf(row);
    events.push(
      chunk === undefined
        ? { op: 'read', table, key, after: row, position }
        : { op: 'read', table, key, after: row, position, chunk },
    );
  }
  return events;
}
