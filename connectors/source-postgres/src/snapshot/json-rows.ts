/**
 * Raw snapshot chunks (the COPY text lines of `SELECT ctid, <columns>`, see raw-rows.ts)
 * written straight into the JSON text of every value (`JsonRows`), for sinks that encode
 * JSON from it: no field string, no decoded value, no row object on the common path.
 *
 * Each value's text is exactly `jsonValueText(v)` for the value `v` that `rawRowsDecoder`
 * gives. Values whose COPY text is already their JSON form (canonical integers, digit strings
 * of int64, plain-notation floats, `t`/`f`, plain dates, lower-case uuids, and text of any
 * string kind, escaped for JSON byte by byte) are copied byte by byte in JavaScript: a call
 * into C++ per value would cost as much as the decoded path (apps/bench/README.md, "A
 * COPY-to-JSON transcoder measured alone"). Any other value (bytea, arrays, times, a float in
 * exponent notation or a special, an octal COPY escape, bytes that are not valid UTF-8) is
 * decoded by `decodeValue` as the decoded read does and written by `jsonValueText`.
 *
 * A chunk it cannot write so (a value that does not decode, a line of the wrong width) gives
 * undefined: core then decodes the chunk, and that read throws its usual error.
 *
 * Floats: PostgreSQL 12 and later, with `extra_float_digits` > 0 (connection.ts sets 3),
 * print the shortest digits that read back as the same float, as JavaScript's `String` does
 * for a number; in plain notation (a decimal exponent from -4 to 14, where JavaScript's
 * `String` also writes plain notation) the two texts are the same, so the text is copied.
 */
import {
  hasNegativeZero,
  type JsonRowWriterOptions,
  type JsonRows,
  jsonValueText,
  type TableSchema,
} from '@nanosync/core';
import type { PgColumn } from '../describe.js';
import { decodeValue, type PgTypeInfo } from '../types/index.js';
import { unescapeCopyField } from './copy-out.js';
import type { RawDecoderSetup } from './raw-rows.js';

/** How a column's COPY text becomes its JSON text (`Decoded`: through the decoder). */
export const Kind = { Int: 0, Int64: 1, Float: 2, Bool: 3, Text: 4, Uuid: 5, Date: 6, Decoded: 7 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export function kindOf(type: PgTypeInfo): Kind {
  switch (type.codec) {
    case 'int16':
    case 'int32':
      return Kind.Int;
    case 'int64':
      return Kind.Int64;
    case 'float32':
    case 'float64':
      return Kind.Float;
    case 'bool':
      return Kind.Bool;
    case 'decimal':
    case 'string':
    case 'interval':
    case 'json':
    case 'inet':
    case 'cidr':
    case 'macaddr':
    case 'money':
    case 'enum':
    case 'other':
      return Kind.Text;
    case 'uuid':
      return Kind.Uuid;
    case 'date':
      return Kind.Date;
    case 'domain':
      return type.base === undefined ? Kind.Decoded : kindOf(type.base);
    default:
      return Kind.Decoded;
  }
}

const HEX = Uint8Array.from(Buffer.from('0123456789abcdef'));

/**
 * The output buffers, shared by every table's writer and the change stream's (json-changes.ts):
 * a snapshot of many tables holds one chunk's worth, not one per table. What a writer returns
 * is valid until the next call of any writer, which is how core uses it (each sink encodes a
 * chunk before the next is written). `negativeZero`: a value `writeDecoded` wrote since the
 * writer's call started is or holds `-0`.
 */
export const output: { text: Buffer; ends: Uint32Array; starts: Uint32Array; negativeZero: boolean } = {
  text: Buffer.allocUnsafeSlow(64 * 1024),
  ends: new Uint32Array(1024),
  starts: new Uint32Array(1024),
  negativeZero: false,
};
/**
 * The writer copies a field while it looks for the field's end, this many bytes at a time
 * (most fields fit in one step): it checks the output's room once per step, not per byte.
 */
const FUSED_BYTES = 256;
/** Bytes of output buffer kept between calls at most. */
const MAX_KEPT_BYTES = 16 * 1024 * 1024;
const TAB = 9;
const LF = 10;
const QUOTE = 34;
const BACKSLASH = 92;

/**
 * The writer of raw chunks of one table (same setup as `rawRowsDecoder`). With
 * `options.objects` each row is written as the JSON object of the table's column names
 * (`JsonRows.starts`): the sinks then copy a row in one piece instead of a name and a value
 * at a time.
 */
export function jsonRowWriter(
  table: TableSchema,
  setup: RawDecoderSetup,
  options?: JsonRowWriterOptions,
): (raw: Uint8Array) => JsonRows | undefined {
  const columns: PgColumn[] = setup.columns;
  if (!Array.isArray(columns) || columns.length !== table.columns.length)
    throw new Error(
      `JSON row writer for ${table.schema}.${table.name}: the setup has ${Array.isArray(columns) ? columns.length : 'no'} columns, the table ${table.columns.length}`,
    );
  const width = columns.length;
  const kinds = columns.map((c) => kindOf(c.type));
  const quoted = kinds.map(isQuotedKind);
  // `{"a":` before the first value, `,"b":` before each other one; `}` after the last.
  const labels =
    options?.objects === true && width > 0
      ? table.columns.map((c, i) => Uint8Array.from(Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(c.name)}:`)))
      : undefined;
  let labelBytes = 0;
  for (const label of labels ?? []) labelBytes = Math.max(labelBytes, label.length);

  return (raw) => {
    let out = output.text;
    let ends = output.ends;
    let starts = output.starts;
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const n = bytes.length;
    let at = 0;
    let value = 0;
    let rows = 0;
    output.negativeZero = false;
    let i = 0;
    while (i < n) {
      // The ctid, skipped.
      while (i < n && bytes[i] !== TAB && bytes[i] !== LF) i++;
      if (width === 0) {
        if (i < n && bytes[i] === TAB) return undefined;
      } else if (i >= n || bytes[i] !== TAB) return undefined;
      i++;
      for (let c = 0; c < width; c++) {
        const start = i;
        const kind = kinds[c]!;
        // Room for the label, a field of up to FUSED_BYTES at its worst (a control byte becomes
        // six) and a closing brace; a longer field checks again below.
        if (at + labelBytes + FUSED_BYTES * 6 + 9 > out.length)
          output.text = out = grow(out, at, at + labelBytes + FUSED_BYTES * 6 + 9);
        if (labels !== undefined) {
          at = put(out, at, labels[c]!);
          if (value === starts.length) output.starts = starts = grown(starts);
          starts[value] = at;
        }
        const from = at;
        // One pass finds the field's end and copies its bytes where its JSON text goes (after
        // the opening quote for a quoted kind), FUSED_BYTES at a time with room checked for
        // each. `plain`: no byte needs escaping in JSON.
        let end = start;
        let to = quoted[c]! ? from + 1 : from;
        let plain = true;
        for (;;) {
          const stop = n - end > FUSED_BYTES ? end + FUSED_BYTES : n;
          for (; end < stop; end++) {
            const b = bytes[end]!;
            if (b < 32) {
              if (b === TAB || b === LF) break;
              plain = false;
            } else if (b === QUOTE || b === BACKSLASH || b >= 0x80) plain = false;
            out[to++] = b;
          }
          if (end < stop || stop === n) break;
          if (to + FUSED_BYTES + 9 > out.length) output.text = out = grow(out, to, to + FUSED_BYTES + 9);
        }
        // A field longer than FUSED_BYTES written again below (escaped or decoded) needs room for its worst case.
        if (!plain && end - start > FUSED_BYTES && from + (end - start) * 6 + 9 > out.length)
          output.text = out = grow(out, from, from + (end - start) * 6 + 9);
        // The last column ends the line; every other one ends at a tab.
        if (c < width - 1 ? end >= n || bytes[end] !== TAB : end < n && bytes[end] !== LF) return undefined;
        const length = end - start;
        if (length === 2 && bytes[start] === BACKSLASH && bytes[start + 1] === 78) at = put(out, from, NULL);
        else if (plain && (kind === Kind.Text || copiedIsJson(kind, bytes, start, end))) {
          // The bytes copied above are the value's JSON text, in quotes for a quoted kind.
          if (quoted[c]!) {
            out[from] = QUOTE;
            out[from + 1 + length] = QUOTE;
            at = from + length + 2;
          } else at = from + length;
        } else {
          at = fastValueJson(out, from, bytes, start, end, kind, true);
          if (at < 0) {
            // Decoded as the decoded read does, and written from the value.
            const field = bytes.toString('utf8', start, end);
            at = writeDecoded(from, columns[c]!.type, field.includes('\\') ? unescapeCopyField(field) : field);
            if (at < 0) return undefined;
            out = output.text;
          }
        }
        if (value === ends.length) output.ends = ends = grown(ends);
        ends[value++] = at;
        i = end + 1;
      }
      // `writeDecoded` leaves room for no brace: a value it wrote may end the buffer.
      if (labels !== undefined) {
        if (at === out.length) output.text = out = grow(out, at, at + 1);
        out[at++] = 125;
      }
      rows++;
    }
    const text = out.subarray(0, at);
    const valueEnds = ends.subarray(0, value);
    const rowsOut: JsonRows = { rows, columns: width, text, ends: valueEnds, negativeZero: output.negativeZero };
    if (labels !== undefined) rowsOut.starts = starts.subarray(0, value);
    shrinkOutput();
    return rowsOut;
  };
}

const TRUE = Uint8Array.from(Buffer.from('true'));
const FALSE = Uint8Array.from(Buffer.from('false'));

export function grow(out: Buffer, used: number, need: number): Buffer {
  const next = Buffer.allocUnsafeSlow(Math.max(need, out.length * 2));
  out.copy(next, 0, 0, used);
  return next;
}

export function put(out: Buffer, at: number, bytes: Uint8Array): number {
  for (let k = 0; k < bytes.length; k++) out[at++] = bytes[k]!;
  return at;
}

export const NULL = Uint8Array.from(Buffer.from('null'));

/**
 * The slow path: `text` decoded by `decodeValue` as the decoded read does, and written as
 * `jsonValueText` of the value at `at` of `output.text` (grown as needed: re-read it after).
 * The new end, or -1 where the value does not decode (the decoded path then throws its error).
 */
export function writeDecoded(at: number, type: PgTypeInfo, text: string): number {
  let json: string;
  try {
    const v = decodeValue(type, text);
    if (!output.negativeZero && hasNegativeZero(v)) output.negativeZero = true;
    json = jsonValueText(v);
  } catch {
    return -1;
  }
  const need = Buffer.byteLength(json);
  if (at + need > output.text.length) output.text = grow(output.text, at, at + need);
  return at + output.text.write(json, at, 'utf8');
}

/** `ends` twice as long, its values kept. */
export function grown(ends: Uint32Array): Uint32Array {
  const next = new Uint32Array(ends.length * 2);
  next.set(ends);
  return next;
}

/** After a batch of huge values grew the buffers: the next call starts small again (this one's stay valid). */
export function shrinkOutput(): void {
  if (output.text.length > MAX_KEPT_BYTES) output.text = Buffer.allocUnsafeSlow(64 * 1024);
  if (output.ends.length > MAX_KEPT_BYTES / 4) output.ends = new Uint32Array(1024);
  if (output.starts.length > MAX_KEPT_BYTES / 4) output.starts = new Uint32Array(1024);
}

/**
 * A value's JSON text where its text already is its JSON form (see the module comment), written
 * at `at`: the new end, or -1 where it must be decoded. `out` has room for `end - start` × 6 + 8
 * bytes from `at`. `copyEscapes`: the text is a COPY field (backslash escapes), else the type's
 * output text itself (a pgoutput value), where a backslash is itself.
 */
export function fastValueJson(
  out: Buffer,
  at: number,
  bytes: Buffer,
  start: number,
  end: number,
  kind: Kind,
  copyEscapes: boolean,
): number {
  switch (kind) {
    case Kind.Bool:
      if (end - start !== 1 || (bytes[start] !== 116 && bytes[start] !== 102)) return -1;
      return bytes[start] === 116 ? put(out, at, TRUE) : put(out, at, FALSE);
    case Kind.Text:
      return textJson(out, at, bytes, start, end, copyEscapes);
    case Kind.Int:
    case Kind.Float:
      if (!copiedIsJson(kind, bytes, start, end)) return -1;
      for (let k = start; k < end; k++) out[at++] = bytes[k]!;
      return at;
    default:
      if (!copiedIsJson(kind, bytes, start, end)) return -1;
      return quoted(out, at, bytes, start, end);
  }
}

/** Whether a kind's JSON text is its text in quotes (else the text itself, or written otherwise). */
function isQuotedKind(kind: Kind): boolean {
  return kind === Kind.Int64 || kind === Kind.Uuid || kind === Kind.Date || kind === Kind.Text;
}

/**
 * Whether a value of a number, uuid or date kind is written as its text as it is (in quotes
 * for a quoted kind): see the module comment. False for the other kinds.
 */
function copiedIsJson(kind: Kind, bytes: Buffer, start: number, end: number): boolean {
  switch (kind) {
    case Kind.Int:
      return isCanonicalInteger(bytes, start, end);
    case Kind.Int64:
      return isDigits(bytes, bytes[start] === 45 ? start + 1 : start, end);
    case Kind.Float:
      return isPlainFloat(bytes, start, end);
    case Kind.Uuid:
      return isLowerHexOrDash(bytes, start, end);
    case Kind.Date:
      return (
        end - start === 10 &&
        bytes[start] !== 48 &&
        bytes[start + 4] === 45 &&
        bytes[start + 7] === 45 &&
        isDigits(bytes, start, start + 4) &&
        isDigits(bytes, start + 5, start + 7) &&
        isDigits(bytes, start + 8, end)
      );
    default:
      return false;
  }
}

function quoted(out: Buffer, at: number, bytes: Buffer, start: number, end: number): number {
  out[at++] = QUOTE;
  for (let k = start; k < end; k++) out[at++] = bytes[k]!;
  out[at++] = QUOTE;
  return at;
}

function isDigits(bytes: Buffer, start: number, end: number): boolean {
  if (start >= end) return false;
  for (let k = start; k < end; k++) {
    const b = bytes[k]!;
    if (b < 48 || b > 57) return false;
  }
  return true;
}

/** `0`, or an optional `-` and digits without a leading zero: what `String(Number(text))` gives back unchanged. */
function isCanonicalInteger(bytes: Buffer, start: number, end: number): boolean {
  const first = bytes[start] === 45 ? start + 1 : start;
  if (!isDigits(bytes, first, end) || end - first > 15) return false;
  return bytes[first] !== 48 || (end - first === 1 && first === start);
}

/**
 * A float's text JavaScript writes the same: `-`?, digits without a leading zero (or one
 * `0`), optionally `.` and digits not ending in `0`; at most 15 digits before the point
 * (PostgreSQL's plain notation), at most 5 zeros after `0.` (JavaScript writes an exponent
 * below that), at most 17 significant digits (a float's shortest text), and not `-0`.
 */
function isPlainFloat(bytes: Buffer, start: number, end: number): boolean {
  let k = bytes[start] === 45 ? start + 1 : start;
  const intStart = k;
  while (k < end && bytes[k]! >= 48 && bytes[k]! <= 57) k++;
  const intDigits = k - intStart;
  if (intDigits === 0 || intDigits > 15 || (intDigits > 1 && bytes[intStart] === 48)) return false;
  const zeroInt = intDigits === 1 && bytes[intStart] === 48;
  if (k === end) return !zeroInt || intStart === start;
  if (bytes[k] !== 46) return false;
  k++;
  const fracStart = k;
  while (k < end && bytes[k]! >= 48 && bytes[k]! <= 57) k++;
  if (k !== end || k === fracStart || bytes[end - 1] === 48) return false;
  let significant = zeroInt ? 0 : intDigits;
  let zeros = 0;
  if (zeroInt) while (bytes[fracStart + zeros] === 48) zeros++;
  significant += end - fracStart - zeros;
  return zeros <= 5 && significant <= 17;
}

function isLowerHexOrDash(bytes: Buffer, start: number, end: number): boolean {
  if (start >= end) return false;
  for (let k = start; k < end; k++) {
    const b = bytes[k]!;
    if (!((b >= 48 && b <= 57) || (b >= 97 && b <= 102) || b === 45)) return false;
  }
  return true;
}

/**
 * A string field as a JSON string (COPY escapes undone, JSON escapes as `JSON.stringify`
 * writes them), or -1 where the value must be decoded instead: an octal or hex COPY escape,
 * an escape of another character, or bytes that are not valid UTF-8 (decoding replaces them).
 */
function textJson(out: Buffer, at: number, bytes: Buffer, start: number, end: number, copyEscapes: boolean): number {
  out[at++] = QUOTE;
  for (let k = start; k < end; k++) {
    let b = bytes[k]!;
    if (b === BACKSLASH && copyEscapes) {
      const e = bytes[++k];
      if (e === 110) b = 10;
      else if (e === 116) b = 9;
      else if (e === BACKSLASH) b = BACKSLASH;
      else if (e === 114) b = 13;
      else if (e === 98) b = 8;
      else if (e === 102) b = 12;
      else if (e === 118) b = 11;
      else return -1;
    } else if (b >= 0x80) {
      const length = utf8Length(bytes, k, end);
      if (length === 0) return -1;
      for (let m = 0; m < length; m++) out[at++] = bytes[k + m]!;
      k += length - 1;
      continue;
    }
    if (b === QUOTE || b === BACKSLASH) {
      out[at++] = BACKSLASH;
      out[at++] = b;
    } else if (b < 32) {
      out[at++] = BACKSLASH;
      const short = b === 8 ? 98 : b === 12 ? 102 : b === 10 ? 110 : b === 13 ? 114 : b === 9 ? 116 : 0;
      if (short !== 0) out[at++] = short;
      else {
        out[at++] = 117;
        out[at++] = 48;
        out[at++] = 48;
        out[at++] = HEX[b >> 4]!;
        out[at++] = HEX[b & 15]!;
      }
    } else out[at++] = b;
  }
  out[at++] = QUOTE;
  return at;
}

/** The length of the valid UTF-8 sequence at `k` (lead byte ≥ 0x80), or 0 when it is not one. */
function utf8Length(bytes: Buffer, k: number, end: number): number {
  const b = bytes[k]!;
  const cont = (at: number, low = 0x80, high = 0xbf) => at < end && bytes[at]! >= low && bytes[at]! <= high;
  if (b >= 0xc2 && b <= 0xdf) return cont(k + 1) ? 2 : 0;
  if (b === 0xe0) return cont(k + 1, 0xa0) && cont(k + 2) ? 3 : 0;
  if (b === 0xed) return cont(k + 1, 0x80, 0x9f) && cont(k + 2) ? 3 : 0;
  if (b >= 0xe1 && b <= 0xef) return cont(k + 1) && cont(k + 2) ? 3 : 0;
  if (b === 0xf0) return cont(k + 1, 0x90) && cont(k + 2) && cont(k + 3) ? 4 : 0;
  if (b >= 0xf1 && b <= 0xf3) return cont(k + 1) && cont(k + 2) && cont(k + 3) ? 4 : 0;
  if (b === 0xf4) return cont(k + 1, 0x80, 0x8f) && cont(k + 2) && cont(k + 3) ? 4 : 0;
  return 0;
}
