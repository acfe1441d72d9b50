import { NanosyncError, type ChangeEvent } from '@nanosync/core';
import { BigQueryErrorCode } from '../errors.js';

/**
 * `_CHANGE_SEQUENCE_NUMBER` from an event's position.
 *
 * BigQuery keeps, per primary key, the row with the greatest sequence number. It compares
 * the value as up to four `/`-separated sections of at most 16 hex digits each, left to
 * right. We derive it from the position alone — never from a counter or a clock — so a
 * replay after a crash produces exactly the numbers the first attempt produced, and an
 * event delivered again can never beat a newer one already applied.
 *
 * Positions are opaque to core, but a source's positions have a fixed shape: PostgreSQL
 * writes `<commit LSN, 16 hex>:<index in transaction, 8 hex>`, so its string order is its
 * order; SQL Server writes `<start LSN, 20>:<command id, 8>:<seqval, 20>:<operation, 1>`.
 * The rule here serves every source whose positions are fixed-width hexadecimal fields
 * (separators `:`, `/`, `-`, `.`) that compare left to right: the hex digits in order,
 * followed by one digit that tells a snapshot row (`0`) from a change (`1`) at the same
 * position, split into sections of 16 digits (so positions of up to 63 digits fit).
 *
 * Several events of one transaction share the commit LSN but not the index, so they get
 * distinct, increasing numbers (a multi-row INSERT, or UPDATE then DELETE of one row).
 * A key-changing update becomes a DELETE of the old key and an UPSERT of the new key with
 * the same number: different keys, so nothing is compared. Snapshot rows carry the stream
 * start position (or the checkpoint for a later re-snapshot), which is never above the
 * position of a change of the same row delivered after it; the last section makes a
 * change at exactly that position win, which is right because the change is a fact at
 * that position while the snapshot row is only known to be no older than it.
 *
 * A position of any other shape (not hex, longer than 63 digits, or a width that changes
 * between events) cannot be ordered by the sink: the event is refused with an error that
 * points to `upsert_method: merge`, which applies changes in delivery order instead.
 */
export class SequenceNumbers {
  private shape: string | undefined;

  of(event: Pick<ChangeEvent, 'position' | 'op'>): string {
    const position = event.position;
    const shape = position.replace(/[0-9A-Fa-f]/g, 'x');
    const digits = position.replace(/[:/.-]/g, '');
    if (!/^[0-9A-Fa-f]{1,63}$/.test(digits))
      throw unorderable(position, 'it is not fixed-width hexadecimal fields of at most 63 digits in all');
    if (this.shape === undefined) this.shape = shape;
    else if (this.shape !== shape)
      throw unorderable(position, `its shape differs from earlier positions (${this.shape})`);
    const all = `${digits.toUpperCase()}${event.op === 'read' ? '0' : '1'}`;
    const sections: string[] = [];
    for (let i = 0; i < all.length; i += 16) sections.push(all.slice(i, i + 16));
    return sections.join('/');
  }
}

/** Compares two sequence numbers the way BigQuery does: section by section, each as an unsigned hex number. */
export function compareSequenceNumbers(a: string, b: string): number {
  const left = a.split('/');
  const right = b.split('/');
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = BigInt(`0x${left[i] ?? '0'}`);
    const y = BigInt(`0x${right[i] ?? '0'}`);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function unorderable(position: string, why: string): NanosyncError {
  return new NanosyncError(
    BigQueryErrorCode.BigQueryUnsupported,
    `position "${position.slice(0, 80)}" cannot be turned into a BigQuery _CHANGE_SEQUENCE_NUMBER: ${why}. ` +
      'Use upsert_method: merge for this source (changes are then applied in delivery order)',
    { retriable: false },
  );
}
