/**
 * Positions in the PostgreSQL change stream.
 *
 * A position is the pair (commit LSN, index): the LSN of the transaction's commit record as
 * announced by the pgoutput Begin message, and the 1-based index of the change inside that
 * transaction. Every change of one transaction shares the commit LSN, so the index is what
 * keeps positions unique and ordered (a multi-row INSERT writes many rows under one commit).
 *
 * Index 0 never belongs to an event. `(L, 0)` is a boundary that sorts before every event
 * of a transaction committing at or after `L` and after every transaction committing before
 * `L`. The slot's consistent point (the pipeline's start position) and keepalive positions
 * are boundaries of this kind; a transaction's own boundary is its last event's position.
 *
 * The string form is `${lsn as 16 hex digits}:${index as 8 hex digits}`, upper case, so the
 * positions of one pipeline also sort as plain strings. Parsing accepts either case.
 */
import { NanosyncError, type Position } from '@nanosync/core';
import { PgErrorCode } from './errors.js';

const MAX_LSN = 0xffff_ffff_ffff_ffffn;
const MAX_INDEX = 0xffff_ffff;
const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export interface DecodedPosition {
  lsn: bigint;
  index: number;
}

/** Character codes of the upper-case hex digits. */
const HEX = new Uint8Array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 65, 66, 67, 68, 69, 70]);
/** The LSN of the last position encoded, and its 16 digits: every event of a transaction shares it. */
let lastLsn = -1n;
const lsnDigits = new Uint8Array(16);

/**
 * A change's position, made as one flat string from character codes: once per change, where
 * `toString(16)`, `toUpperCase` and `padStart` made three strings more (half the time).
 */
export function encodePosition(lsn: bigint, index: number): Position {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  if (!Number.isInteger(index) || index < 0 || index > MAX_INDEX)
    throw new RangeError(`position index out of range: ${index}`);
  const d = lsnDigits;
  if (lsn !== lastLsn) {
    let high = Number(lsn >> 32n);
    let low = Number(lsn & 0xffff_ffffn);
    for (let i = 7; i >= 0; i--) {
      d[i] = HEX[high & 15]!;
      d[8 + i] = HEX[low & 15]!;
      high >>>= 4;
      low >>>= 4;
    }
    lastLsn = lsn;
  }
  return String.fromCharCode(
    d[0]!,
    d[1]!,
    d[2]!,
    d[3]!,
    d[4]!,
    d[5]!,
    d[6]!,
    d[7]!,
    d[8]!,
    d[9]!,
    d[10]!,
    d[11]!,
    d[12]!,
    d[13]!,
    d[14]!,
    d[15]!,
    58, // ':'
    HEX[(index >>> 28) & 15]!,
    HEX[(index >>> 24) & 15]!,
    HEX[(index >>> 20) & 15]!,
    HEX[(index >>> 16) & 15]!,
    HEX[(index >>> 12) & 15]!,
    HEX[(index >>> 8) & 15]!,
    HEX[(index >>> 4) & 15]!,
    HEX[index & 15]!,
  );
}

/** Value of one hex digit's character code, or -1. */
function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  if (code >= 65 && code <= 70) return code - 55; // A-F
  if (code >= 97 && code <= 102) return code - 87; // a-f
  return -1;
}

/** Hex digits `from` to `to` (exclusive, at most 8) as a number, or -1 when one is not a hex digit. */
function hexNumber(text: string, from: number, to: number): number {
  let value = 0;
  for (let i = from; i < to; i++) {
    const digit = hexValue(text.charCodeAt(i));
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** Whether `position` is 16 hex digits, ':', 8 hex digits (checked without a RegExp: positions are decoded per batch). */
function wellFormed(position: Position): boolean {
  if (position.length !== 25 || position.charCodeAt(16) !== 58) return false;
  for (let i = 0; i < 25; i++) if (i !== 16 && hexValue(position.charCodeAt(i)) < 0) return false;
  return true;
}

export function decodePosition(position: Position): DecodedPosition {
  if (!wellFormed(position)) {
    throw new NanosyncError(
      PgErrorCode.PgProtocol,
      `"${position.slice(0, 40)}" is not a PostgreSQL source position (expected 16 hex digits, ':', 8 hex digits)`,
    );
  }
  const high = hexNumber(position, 0, 8);
  const low = hexNumber(position, 8, 16);
  return { lsn: (BigInt(high) << 32n) | BigInt(low), index: hexNumber(position, 17, 25) };
}

/**
 * Total order over positions: by commit LSN, then by index. Both are fixed-width hex, so
 * two well-formed positions compare digit by digit (either case), without parsing.
 */
export function comparePositions(a: Position, b: Position): number {
  if (a.length === 25 && b.length === 25 && a.charCodeAt(16) === 58 && b.charCodeAt(16) === 58) {
    let result = 0;
    for (let i = 0; i < 25; i++) {
      if (i === 16) continue;
      const x = hexValue(a.charCodeAt(i));
      const y = hexValue(b.charCodeAt(i));
      if (x < 0 || y < 0) {
        result = Number.NaN;
        break;
      }
      if (result === 0 && x !== y) result = x < y ? -1 : 1;
    }
    if (!Number.isNaN(result)) return result;
  }
  // Not well formed: decodePosition says which one and why.
  const left = decodePosition(a);
  const right = decodePosition(b);
  if (left.lsn !== right.lsn) return left.lsn < right.lsn ? -1 : 1;
  return left.index - right.index;
}

/** LSN the way PostgreSQL prints it: `0/3A1B2C4D` (upper half, slash, lower half, hex, no padding). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** Parses PostgreSQL's `X/Y` LSN text (as returned by `pg_lsn` columns). */
export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text.trim());
  if (!match)
    throw new NanosyncError(PgErrorCode.PgProtocol, `"${text.slice(0, 40)}" is not an LSN (expected X/Y in hex)`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * Human form for logs: the commit LSN as PostgreSQL prints it, followed by `#index` when the
 * position points at an event inside the transaction (`0/3A1B2C4D#12`).
 */
export function formatPosition(position: Position): string {
  const { lsn, index } = decodePosition(position);
  return index === 0 ? formatLsn(lsn) : `${formatLsn(lsn)}#${index}`;
}
