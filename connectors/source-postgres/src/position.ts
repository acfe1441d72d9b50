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
const POSITION_PATTERN = /^([0-9A-Fa-f]{16}):([0-9A-Fa-f]{8})$/;
const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export interface DecodedPosition {
  lsn: bigint;
  index: number;
}

/** The LSN part of the last position encoded: every event of a transaction shares it. */
let lastLsn = -1n;
let lastLsnText = '';

export function encodePosition(lsn: bigint, index: number): Position {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  if (!Number.isInteger(index) || index < 0 || index > MAX_INDEX)
    throw new RangeError(`position index out of range: ${index}`);
  if (lsn !== lastLsn) {
    lastLsnText = lsn.toString(16).toUpperCase().padStart(16, '0');
    lastLsn = lsn;
  }
  return `${lastLsnText}:${index.toString(16).toUpperCase().padStart(8, '0')}`;
}

export function decodePosition(position: Position): DecodedPosition {
  const match = POSITION_PATTERN.exec(position);
  if (!match) {
    throw new NanosyncError(
      PgErrorCode.PgProtocol,
      `"${position.slice(0, 40)}" is not a PostgreSQL source position (expected 16 hex digits, ':', 8 hex digits)`,
    );
  }
  return { lsn: BigInt(`0x${match[1]}`), index: Number.parseInt(match[2] as string, 16) };
}

/** Total order over positions: by commit LSN, then by index. */
export function comparePositions(a: Position, b: Position): number {
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
