import type { ChangeEvent, Row, Value } from '@nanosync/core';

/**
 * The unchanged-column rule. A source that did not send a column's value (PostgreSQL
 * unchanged TOAST: `event.unchanged`) means "the value did not change", never NULL. The
 * value is known when
 * 1. the old image has it (`REPLICA IDENTITY FULL` sends the whole old row), or
 * 2. an earlier event of the same key in the same write carried it.
 * What is still unknown after that stays in `unchanged`: a MERGE keeps the stored value
 * for those columns, a CDC UPSERT (which replaces the whole row) cannot, and refuses.
 */
export interface ResolvedImage {
  row: Row;
  /** Columns whose value is still unknown. */
  unchanged: string[];
}

export function resolveUnchanged(
  event: Pick<ChangeEvent, 'after' | 'before' | 'unchanged'>,
  known: Row | undefined,
): ResolvedImage {
  const row: Row = { ...(event.after ?? {}) };
  const unchanged: string[] = [];
  for (const column of event.unchanged ?? []) {
    if (event.before !== undefined && Object.hasOwn(event.before, column)) row[column] = event.before[column] as Value;
    else if (known !== undefined && Object.hasOwn(known, column)) row[column] = known[column] as Value;
    else unchanged.push(column);
  }
  return { row, unchanged };
}

/** The key values of an image, from the newest image that has them. */
export function keyOf(
  event: Pick<ChangeEvent, 'key' | 'before' | 'after'>,
  keyColumns: readonly string[],
  image: 'new' | 'old',
): Row {
  const images: (Row | undefined)[] =
    image === 'new' ? [event.after, event.key, event.before] : [event.before, event.key];
  const key: Row = {};
  for (const column of keyColumns) {
    const source = images.find((r) => r !== undefined && Object.hasOwn(r, column));
    key[column] = source ? (source[column] as Value) : null;
  }
  return key;
}

/** A stable text for a key, for maps and messages. */
export function keyText(key: Row): string {
  return JSON.stringify(key, (_k, v: unknown) =>
    v instanceof Uint8Array ? Buffer.from(v).toString('base64') : typeof v === 'bigint' ? v.toString() : v,
  );
}

/** True when an update moved the row to another key (old and new key differ). */
export function keyChanged(event: ChangeEvent, keyColumns: readonly string[]): boolean {
  if (event.op !== 'update' || event.before === undefined) return false;
  if (!keyColumns.every((c) => Object.hasOwn(event.before as Row, c))) return false;
  return keyText(keyOf(event, keyColumns, 'old')) !== keyText(keyOf(event, keyColumns, 'new'));
}
