/**
 * Snapshot rows as `read` events: one builder for the main thread's snapshot, its fallback
 * for chunks a worker could not encode, and the pipeline's worker threads, so every path gives
 * a sink the same events. Type imports only: a worker thread loads this without the rest of core.
 */
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';

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
  const keyColumns = table.keyColumns;
  const events: ChangeEvent[] = [];
  for (let i = 0; i < rows.length; i++) {
    if (keep !== undefined && keep[i] !== 1) continue;
    const row = rows[i]!;
    let key = EMPTY_KEY;
    if (keyColumns.length > 0) {
      key = {};
      for (const k of keyColumns) key[k] = row[k] ?? null;
    }
    events.push(
      chunk === undefined
        ? { op: 'read', table, key, after: row, position }
        : { op: 'read', table, key, after: row, position, chunk },
    );
  }
  return events;
}
