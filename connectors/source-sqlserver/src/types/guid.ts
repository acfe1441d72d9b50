/**
 * uniqueidentifier, SQL Server's byte order.
 *
 * On disk and on the wire a GUID is 16 bytes in the Windows layout: the first three groups
 * of the display form are little-endian, the last two big-endian. The display form
 * `00112233-4455-6677-8899-AABBCCDDEEFF` is stored as
 *
 *   33 22 11 00 | 55 44 | 77 66 | 88 99 | AA BB CC DD EE FF
 *
 * SQL Server orders uniqueidentifier values by those stored bytes, but most significant
 * group last: bytes 10–15 first, then 8–9, then 6–7, then 4–5, then 0–3 (each run compared
 * left to right). So `…-000000000001` sorts after `FFFFFFFF-…-000000000000`. Key ranges are
 * always sorted by the server; these helpers exist for values that arrive as raw bytes
 * (sql_variant, binary casts) and to reason about that order in tests.
 */

const DISPLAY = /^([0-9a-fA-F]{8})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{12})$/;

/** Stored (wire) bytes → lowercase display form. */
export function guidFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`a uniqueidentifier has 16 bytes, got ${bytes.length}`);
  const hex = (from: number, to: number, reverse: boolean) => {
    const part = Array.from(bytes.subarray(from, to));
    if (reverse) part.reverse();
    return part.map((b) => b.toString(16).padStart(2, '0')).join('');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}

/** Display form → stored (wire) bytes. */
export function guidToBytes(guid: string): Uint8Array {
  const m = DISPLAY.exec(guid);
  if (!m) throw new RangeError(`not a GUID: ${JSON.stringify(guid.slice(0, 40))}`);
  const bytes = (hex: string, reverse: boolean) => {
    const out = hex.match(/../g)!.map((h) => Number.parseInt(h, 16));
    return reverse ? out.reverse() : out;
  };
  return Uint8Array.from([
    ...bytes(m[1]!, true),
    ...bytes(m[2]!, true),
    ...bytes(m[3]!, true),
    ...bytes(m[4]!, false),
    ...bytes(m[5]!, false),
  ]);
}

/** Stored byte indexes in the order SQL Server compares them. */
export const GUID_COMPARE_ORDER = [10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3] as const;

/** How SQL Server orders two uniqueidentifier values (display form, any case). */
export function compareGuids(a: string, b: string): number {
  const x = guidToBytes(a);
  const y = guidToBytes(b);
  for (const i of GUID_COMPARE_ORDER) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return 0;
}
