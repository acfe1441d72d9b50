/**
 * A decoded value as JSON text, the way `JsonRows` carry it (see the contract's
 * `SourceWorkerModule.createJsonRowWriter`): lossless and sink-neutral. int64 and decimal are
 * already strings and stay strings; bytes become base64 text; the floats JSON has no literal
 * for (`NaN`, `Infinity`, `-Infinity`, and `-0`, which `JSON.stringify` would print as `0`)
 * become those words as strings; arrays hold their items the same way. It imports nothing: a
 * worker thread loads it without the rest of core.
 */

/** The JSON text of `value`; throws for a value no decoder gives (an object, a bigint, a function). */
export function jsonValueText(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (Number.isFinite(value) && !Object.is(value, -0)) return String(value);
      return Object.is(value, -0) ? '"-0"' : `"${String(value)}"`;
    case 'object':
      if (value instanceof Uint8Array)
        return `"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"`;
      if (Array.isArray(value)) return `[${value.map(jsonValueText).join(',')}]`;
      break;
  }
  throw new TypeError(`no JSON text for a value of type ${typeof value}`);
}

/** Whether the JSON text holds a `-0` (written `"-0"`), which some sinks write as `0`. */
export function hasNegativeZero(value: unknown): boolean {
  if (typeof value === 'number') return Object.is(value, -0);
  return Array.isArray(value) && value.some(hasNegativeZero);
}

/**
 * `bytes` into `out` at `at`, returning the offset after them: a loop for a few bytes, `set`
 * from 16 on (a call costs about a 12-byte loop). For encoders that assemble JSON text from
 * constant parts, as the file and Kafka sinks do from `JsonRows`.
 */
export function putBytes(out: Uint8Array, at: number, bytes: Uint8Array): number {
  if (bytes.length >= 16) {
    out.set(bytes, at);
    return at + bytes.length;
  }
  for (let k = 0; k < bytes.length; k++) out[at++] = bytes[k]!;
  return at;
}

/**
 * Bytes `from..to` of `text` into `out` at `at`, returning the offset after them: a loop for
 * short values, `Buffer#copy` (about a 40-byte loop's cost) for longer ones.
 */
export function copyRange(out: Uint8Array, at: number, text: Buffer, from: number, to: number): number {
  if (to - from > 40) return at + text.copy(out, at, from, to);
  for (let k = from; k < to; k++) out[at++] = text[k]!;
  return at;
}
