import { describe, expect, it } from 'vitest';
import {
  boundaryPosition,
  comparePositions,
  compareLsn,
  decodePosition,
  decrementLsn,
  encodePosition,
  formatLsn,
  formatPosition,
  incrementLsn,
  isBoundary,
  lsnFromBytes,
  lsnToBytes,
  parseLsn,
} from '../../src/position.js';

const L = (hex: string) => hex.padStart(20, '0').toUpperCase();

describe('LSN arithmetic (binary(10))', () => {
  it('round-trips the 10 bytes SQL Server returns', () => {
    const bytes = Buffer.from('0000002a00000f100003', 'hex');
    const lsn = lsnFromBytes(bytes);
    expect(lsn).toBe('0000002A00000F100003');
    expect(lsnToBytes(lsn).equals(bytes)).toBe(true);
    expect(formatLsn(lsn)).toBe('0000002A:00000F10:0003');
    expect(parseLsn('0000002A:00000F10:0003')).toBe(lsn);
    expect(parseLsn('0x0000002a00000f100003')).toBe(lsn);
  });
  it('compares as an unsigned 80-bit number, not by its parts as signed values', () => {
    expect(compareLsn(L('FF'), L('100'))).toBeLessThan(0);
    expect(compareLsn('80000000000000000000', '7FFFFFFFFFFFFFFFFFFF')).toBeGreaterThan(0);
    expect(compareLsn(L('1'), L('1'))).toBe(0);
  });
  it('increments and decrements across byte carries', () => {
    expect(incrementLsn('0000002A00000F10FFFF')).toBe('0000002A00000F110000');
    expect(decrementLsn('0000002A00000F110000')).toBe('0000002A00000F10FFFF');
    expect(() => incrementLsn('FFFFFFFFFFFFFFFFFFFF')).toThrow(RangeError);
    expect(() => decrementLsn(L('0'))).toThrow(RangeError);
  });
  it('rejects malformed LSNs', () => {
    expect(() => lsnFromBytes(Buffer.alloc(8))).toThrow(/10 bytes/);
    expect(() => parseLsn('0/16B3748')).toThrow(/not an LSN/);
  });
});

describe('positions (start_lsn, command_id, seqval, operation)', () => {
  const at = (lsn: string, commandId: number, seqval: string, operation: number) =>
    encodePosition({ startLsn: L(lsn), commandId, seqval: L(seqval), operation });

  it('round-trips', () => {
    const p = at('2A', 3, '2B', 4);
    expect(decodePosition(p)).toEqual({ startLsn: L('2A'), commandId: 3, seqval: L('2B'), operation: 4 });
  });
  it('orders by start_lsn, then command_id (before seqval), then seqval, then operation', () => {
    const sorted = [
      at('10', 1, '11', 2),
      at('10', 1, '12', 1),
      at('10', 2, '05', 1), // a later command with a smaller seqval still comes later
      at('10', 2, '05', 2),
      at('11', 1, '01', 3),
      at('11', 1, '01', 4),
    ];
    const shuffled = [sorted[3]!, sorted[5]!, sorted[0]!, sorted[4]!, sorted[2]!, sorted[1]!];
    expect(shuffled.sort(comparePositions)).toEqual(sorted);
    // The string form sorts the same way.
    expect([...shuffled].sort()).toEqual(sorted);
  });
  it('a boundary sorts after every row of its transaction and before the next transaction', () => {
    const end = boundaryPosition(L('10'));
    expect(isBoundary(end)).toBe(true);
    expect(isBoundary(at('10', 1, '11', 2))).toBe(false);
    expect(comparePositions(at('10', 0xffff_fffe, 'FFFFFFFFFFFFFFFFFFFF', 4), end)).toBeLessThan(0);
    expect(comparePositions(end, at('11', 0, '0', 1))).toBeLessThan(0);
  });
  it('prints boundaries as SQL Server LSNs and rows with their tail', () => {
    expect(formatPosition(boundaryPosition('0000002A00000F100003'))).toBe('0000002A:00000F10:0003');
    expect(formatPosition(at('2A', 3, '2B', 4))).toBe('00000000:00000000:002A#3.00000000:00000000:002B.4');
  });
  it('names what is wrong with a foreign position', () => {
    expect(() => decodePosition('0/16B3748')).toThrow(
      expect.objectContaining({ code: 'NS_M5009', message: expect.stringMatching(/not a SQL Server source position/) }),
    );
  });
});
