import { type ChangeEvent, NanosyncError, type Row, qualifiedName } from '@nanosync/core';
import { keyChanged, keyOf, keyText, resolveUnchanged } from '../write/unchanged.js';
import { BigQueryErrorCode } from '../errors.js';

/**
 * Folds a run of events of one table into one change per key, in delivery order, for a
 * MERGE: the last change of each key wins, and columns an update left out are filled from
 * the same key's earlier events in the run where possible (see the unchanged-column rule).
 * A key-changing update deletes the old key and writes the new one; columns it left out
 * must be known (from the full old image or earlier in the run), because a MERGE row for
 * the new key cannot read the old key's stored value.
 */
export interface FoldedChange {
  op: 'upsert' | 'delete';
  key: Row;
  /** Upserts: the known column values (key included). */
  row: Row;
  /** Columns whose stored value must be kept. */
  unchanged: string[];
  /** Order of the last event folded in, for the staging `_ns_seq`. */
  seq: number;
}

export function foldEvents(events: readonly ChangeEvent[], keyColumns: readonly string[]): FoldedChange[] {
  const byKey = new Map<string, FoldedChange>();
  let seq = 0;
  const put = (change: Omit<FoldedChange, 'seq'>) => {
    const text = keyText(change.key);
    byKey.delete(text); // re-insert so that map order follows the last change
    byKey.set(text, { ...change, seq: ++seq });
  };

  for (const event of events) {
    if (event.op === 'truncate') throw new Error('foldEvents: a truncate splits the run; fold each side separately');
    if (event.op === 'delete') {
      put({ op: 'delete', key: keyOf(event, keyColumns, 'old'), row: {}, unchanged: [] });
      continue;
    }
    const newKey = keyOf(event, keyColumns, 'new');
    const moved = keyChanged(event, keyColumns);
    const oldKey = moved ? keyOf(event, keyColumns, 'old') : newKey;
    const earlier = byKey.get(keyText(oldKey));
    const known = earlier?.op === 'upsert' ? withoutUnchanged(earlier) : undefined;
    const resolved = resolveUnchanged(event, known);
    let unchanged = resolved.unchanged.filter((c) => !keyColumns.includes(c));
    // An earlier change of the key that also kept a column: keep keeping it.
    if (earlier?.op === 'upsert' && !moved)
      unchanged = unchanged.filter((c) => earlier.unchanged.includes(c) || !Object.hasOwn(earlier.row, c));
    if (moved) {
      if (unchanged.length > 0) {
        throw new NanosyncError(
          BigQueryErrorCode.BigQueryUnsupported,
          `table ${qualifiedName(event.table)}: an update moved key ${keyText(oldKey)} to ${keyText(newKey)} at position ${event.position} ` +
            `without sending column(s) ${unchanged.map((c) => `"${c}"`).join(', ')}; the new row cannot copy them from the old one. ` +
            `Set REPLICA IDENTITY FULL on the source table (ALTER TABLE ${qualifiedName(event.table)} REPLICA IDENTITY FULL) so the old row travels with the update`,
          {
            retriable: false,
            details: { table: qualifiedName(event.table), key: keyText(newKey), position: event.position },
          },
        );
      }
      put({ op: 'delete', key: oldKey, row: {}, unchanged: [] });
    }
    put({ op: 'upsert', key: newKey, row: resolved.row, unchanged });
  }
  return [...byKey.values()];
}

function withoutUnchanged(change: FoldedChange): Row {
  const row: Row = {};
  for (const [column, value] of Object.entries(change.row)) if (!change.unchanged.includes(column)) row[column] = value;
  return row;
}
