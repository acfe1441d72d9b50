/**
 * Splits encoded rows into AppendRows requests under the request size limit. A request
 * carries the rows (each framed with a tag and a length, at most 6 bytes) plus the writer
 * schema on the first request of a connection; `reserveBytes` keeps room for that and
 * for the request envelope. One row larger than the whole budget cannot be sent at all.
 */
export interface EncodedRow<T = unknown> {
  bytes: Uint8Array;
  /** What the caller needs to name the row in an error (table, key, position). */
  origin: T;
}

/** Bytes a row adds to `ProtoRows.serialized_rows`: tag, varint length, payload. */
export function framedSize(row: Uint8Array): number {
  let lengthBytes = 1;
  for (let n = row.length; n >= 0x80; n >>>= 7) lengthBytes++;
  return 1 + lengthBytes + row.length;
}

export class RowTooLarge<T> extends Error {
  override readonly name = 'RowTooLarge';
  constructor(
    readonly row: EncodedRow<T>,
    readonly limit: number,
  ) {
    super(`row of ${row.bytes.length} bytes exceeds the ${limit}-byte request budget`);
  }
}

export function* splitIntoRequests<T>(
  rows: readonly EncodedRow<T>[],
  maxRequestBytes: number,
  reserveBytes: number,
): Generator<EncodedRow<T>[]> {
  const budget = maxRequestBytes - reserveBytes;
  let chunk: EncodedRow<T>[] = [];
  let size = 0;
  for (const row of rows) {
    const bytes = framedSize(row.bytes);
    if (bytes > budget) throw new RowTooLarge(row, budget);
    if (chunk.length > 0 && size + bytes > budget) {
      yield chunk;
      chunk = [];
      size = 0;
    }
    chunk.push(row);
    size += bytes;
  }
  if (chunk.length > 0) yield chunk;
}
