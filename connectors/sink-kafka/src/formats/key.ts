import type { LogicalType, Value } from '@nanosync/core';
import { ValueError, describe, itemType } from './json-values.js';

/**
 * The canonical text of key values: one spelling per logical value, whatever the column's
 * type is today, so a row keeps its Kafka key (and with it its partition and its place in a
 * compacted topic) through `ALTER COLUMN … TYPE`:
 *
 *   integers (int16, int32, int64)   JSON number with every digit: `10`, `9223372036854775807`
 *   decimal                          JSON number, trailing fraction zeros and leading zeros
 *                                    dropped: `10.50` → `10.5`, `10.00` → `10`; `"NaN"`,
 *                                    `"Infinity"`, `"-Infinity"` as strings
 *   float32, float64                 JSON number in the shortest form that reads back the
 *                                    same double (`-0` as `0`); specials as for decimal
 *   bool                             `true` / `false`
 *   bytes                            base64 string
 *   array                            JSON array of the items' canonical forms
 *   everything else                  JSON string of the canonical text (dates, uuids, …)
 *
 * So `int` → `bigint` → `numeric` keeps `10` as `10`. Numbers are written as text, never
 * through a double: a consumer comparing or hashing key bytes sees exactly what the source had.
 */
export function canonicalKeyValue(type: LogicalType | undefined, value: Value | undefined, column: string): string {
  if (value === null || value === undefined) return 'null';
  switch (type?.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'decimal':
    case 'float32':
    case 'float64':
      return numberText(value, column);
    case 'array':
      if (!Array.isArray(value)) throw new ValueError(column, `array value ${describe(value)} is not an array`);
      return `[${value.map((item) => canonicalKeyValue(itemType(type, item), item, column)).join(',')}]`;
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw new ValueError(column, `bytes value ${describe(value)} is not bytes`);
      return JSON.stringify(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'));
    case 'bool':
      if (typeof value !== 'boolean') throw new ValueError(column, `bool value ${describe(value)} is not a boolean`);
      return String(value);
    default:
      if (Array.isArray(value)) return `[${value.map((item) => canonicalKeyValue(undefined, item, column)).join(',')}]`;
      if (value instanceof Uint8Array) return canonicalKeyValue({ kind: 'bytes' }, value, column);
      if (typeof value === 'number') return numberText(value, column);
      return JSON.stringify(value);
  }
}

/** An integer with no sign other than `-`, no leading zero and not `-0`: its own canonical form. */
const PLAIN_INTEGER = /^(?:0|-?[1-9]\d*)$/;
const NUMBER = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const SPECIAL: Record<string, string> = {
  NaN: '"NaN"',
  Infinity: '"Infinity"',
  '+Infinity': '"Infinity"',
  '-Infinity': '"-Infinity"',
};

/** A number (JS number, bigint or decimal text) as canonical JSON number text. */
export function numberText(value: Value | bigint, column: string): string {
  if (typeof value === 'bigint') return value.toString();
  // The common case, an integer already in canonical form, without the general parse below.
  if (typeof value === 'string' && PLAIN_INTEGER.test(value)) return value;
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return Object.is(value, -0) ? '0' : String(value);
    if (Number.isNaN(value)) return '"NaN"';
    if (!Number.isFinite(value)) return value > 0 ? '"Infinity"' : '"-Infinity"';
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) return decimalText(BigInt(value).toString(), column);
    return decimalText(Object.is(value, -0) ? '0' : String(value), column);
  }
  if (typeof value === 'string') return SPECIAL[value] ?? decimalText(value, column);
  throw new ValueError(column, `key value ${describe(value)} is not a number`);
}

/** Plain decimal notation, no exponent, no leading or trailing zeros, `-0` as `0`. */
function decimalText(text: string, column: string): string {
  const m = NUMBER.exec(text.trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === ''))
    throw new ValueError(column, `key value ${describe(text)} is not a number`);
  const exponent = Number(m[4] ?? 0);
  if (Math.abs(exponent) > 100_000)
    throw new ValueError(column, `key value ${describe(text)} has an exponent beyond any database's numbers`);
  let digits = `${m[2]}${m[3] ?? ''}`;
  let point = m[2]!.length + exponent;
  // Move the point inside the digits, padding with zeros where the exponent reaches past them.
  if (point < 0) {
    digits = '0'.repeat(-point) + digits;
    point = 0;
  } else if (point > digits.length) {
    digits += '0'.repeat(point - digits.length);
  }
  const intPart = digits.slice(0, point).replace(/^0+/, '') || '0';
  const fracPart = digits.slice(point).replace(/0+$/, '');
  const body = fracPart ? `${intPart}.${fracPart}` : intPart;
  return m[1] === '-' && body !== '0' ? `-${body}` : body;
}
