/**
 * Positions in the SQL Server change stream.
 *
 * An LSN is SQL Server's binary(10) log sequence number (VLF sequence, log block, slot:
 * 4 + 4 + 2 bytes, big-endian), compared as an unsigned 80-bit number. A change row is
 * identified and ordered by the tuple
 *
 *   (__$start_lsn, __$command_id, __$seqval, __$operation)
 *
 * — the commit LSN of its transaction, the order of the command inside the transaction
 * (what Microsoft documents as the in-transaction order), the row's sequence value, and the
 * operation (1 delete, 2 insert, 3 update before-image, 4 update after-image). Ordering on
 * the full tuple keeps both halves of a deferred update (a delete and an insert logged for
 * one UPDATE) and both images of an update pair in their place when reading in pages.
 *
 * String form: `LLLLLLLLLLLLLLLLLLLL:CCCCCCCC:SSSSSSSSSSSSSSSSSSSS:O` (20 hex digits, 8 hex
 * digits, 20 hex digits, 1 hex digit, upper case), so one pipeline's positions also sort as
 * plain strings. A *boundary* — the end of the transaction with start LSN L — carries the
 * largest possible tail (`FFFFFFFF`, 20 × `F`, `F`): it sorts after every row of L and
 * before every row of any later transaction. Start positions (L₀), safe positions and
 * keepalives are boundaries; only event positions have a real tail.
 */
import type { Position } from '@nanosync/core';
import { protocolError } from './errors.js';

export const LSN_BYTES = 10;
const LSN_HEX = LSN_BYTES * 2;
const MAX_LSN = (1n << 80n) - 1n;
const MAX_COMMAND = 0xffff_ffff;
const POSITION_PATTERN = /^([0-9A-Fa-f]{20}):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{20}):([0-9A-Fa-f])$/;
const BOUNDARY_TAIL = `:${'F'.repeat(8)}:${'F'.repeat(20)}:F`;

/** An LSN as 20 upper-case hex digits (the canonical in-memory form). */
export type Lsn = string;

export const ZERO_LSN: Lsn = '0'.repeat(LSN_HEX);

export function lsnFromBytes(bytes: Uint8Array): Lsn {
  if (bytes.length !== LSN_BYTES) throw protocolError(`an LSN has ${LSN_BYTES} bytes, got ${bytes.length}`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex').toUpperCase();
}

export function lsnToBytes(lsn: Lsn): Buffer {
  return Buffer.from(checkLsn(lsn), 'hex');
}

function checkLsn(lsn: string): Lsn {
  if (!/^[0-9A-Fa-f]{20}$/.test(lsn)) throw protocolError(`"${lsn.slice(0, 40)}" is not an LSN (20 hex digits)`);
  return lsn.toUpperCase();
}

/** Parses 20 hex digits, `0x` + 20 hex digits, or SQL Server's `0000002A:00000F10:0003` form. */
export function parseLsn(text: string): Lsn {
  const t = text.trim();
  const colon = /^([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})$/.exec(t);
  if (colon) return `${colon[1]}${colon[2]}${colon[3]}`.toUpperCase();
  return checkLsn(t.replace(/^0x/i, ''));
}

export function lsnToBigInt(lsn: Lsn): bigint {
  return BigInt(`0x${checkLsn(lsn)}`);
}

export function lsnFromBigInt(value: bigint): Lsn {
  if (value < 0n || value > MAX_LSN) throw new RangeError(`LSN out of range: ${value}`);
  return value.toString(16).toUpperCase().padStart(LSN_HEX, '0');
}

export function compareLsn(a: Lsn, b: Lsn): number {
  const x = lsnToBigInt(a);
  const y = lsnToBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) >= 0 ? a : b;
}

/** The smallest LSN greater than `lsn` (what `sys.fn_cdc_increment_lsn` returns). */
export function incrementLsn(lsn: Lsn): Lsn {
  return lsnFromBigInt(lsnToBigInt(lsn) + 1n);
}

/** The largest LSN smaller than `lsn` (`sys.fn_cdc_decrement_lsn`). */
export function decrementLsn(lsn: Lsn): Lsn {
  const v = lsnToBigInt(lsn);
  if (v === 0n) throw new RangeError('the zero LSN has no predecessor');
  return lsnFromBigInt(v - 1n);
}

export function isZeroLsn(lsn: Lsn): boolean {
  return /^0+$/.test(lsn);
}

/** How SQL Server prints an LSN: `0000002A:00000F10:0003`. */
export function formatLsn(lsn: Lsn): string {
  const l = checkLsn(lsn);
  return `${l.slice(0, 8)}:${l.slice(8, 16)}:${l.slice(16, 20)}`;
}

/** One change row's place in commit order. */
export interface RowPosition {
  startLsn: Lsn;
  commandId: number;
  seqval: Lsn;
  operation: number;
}

export function encodePosition(p: RowPosition): Position {
  if (!Number.isInteger(p.commandId) || p.commandId < 0 || p.commandId > MAX_COMMAND)
    throw new RangeError(`command id out of range: ${p.commandId}`);
  if (!Number.isInteger(p.operation) || p.operation < 0 || p.operation > 15)
    throw new RangeError(`operation out of range: ${p.operation}`);
  return `${checkLsn(p.startLsn)}:${p.commandId.toString(16).toUpperCase().padStart(8, '0')}:${checkLsn(p.seqval)}:${p.operation.toString(16).toUpperCase()}`;
}

/** The end of transaction `lsn`: after all its rows, before any later transaction's. */
export function boundaryPosition(lsn: Lsn): Position {
  return `${checkLsn(lsn)}${BOUNDARY_TAIL}`;
}

export function isBoundary(position: Position): boolean {
  return position.toUpperCase().endsWith(BOUNDARY_TAIL);
}

export function decodePosition(position: Position): RowPosition {
  const m = POSITION_PATTERN.exec(position);
  if (!m)
    throw protocolError(
      `"${position.slice(0, 64)}" is not a SQL Server source position (expected LSN:command:seqval:operation in hex)`,
    );
  return {
    startLsn: m[1]!.toUpperCase(),
    commandId: Number.parseInt(m[2]!, 16),
    seqval: m[3]!.toUpperCase(),
    operation: Number.parseInt(m[4]!, 16),
  };
}

export function compareRowPositions(a: RowPosition, b: RowPosition): number {
  return (
    compareLsn(a.startLsn, b.startLsn) ||
    a.commandId - b.commandId ||
    compareLsn(a.seqval, b.seqval) ||
    a.operation - b.operation
  );
}

/** Total order: by start LSN, command id, seqval, operation. */
export function comparePositions(a: Position, b: Position): number {
  return compareRowPositions(decodePosition(a), decodePosition(b));
}

/** `0000002A:00000F10:0003` for a boundary, `0000002A:00000F10:0003#cmd.seqval.op` inside a transaction. */
export function formatPosition(position: Position): string {
  const p = decodePosition(position);
  if (isBoundary(position)) return formatLsn(p.startLsn);
  return `${formatLsn(p.startLsn)}#${p.commandId}.${formatLsn(p.seqval)}.${p.operation}`;
}
