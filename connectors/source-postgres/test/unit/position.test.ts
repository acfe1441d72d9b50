import { describe, expect, it } from 'vitest';
import {
  comparePositions,
  decodePosition,
  encodePosition,
  formatLsn,
  formatPosition,
  parseLsn,
} from '../../src/position.js';

describe('positions', () => {
  it('encode as 16 + 8 hex digits and decode back', () => {
    const position = encodePosition(0x16b3c4d8n, 3);
    expect(position).toBe('0000000016B3C4D8:00000003');
    expect(decodePosition(position)).toEqual({ lsn: 0x16b3c4d8n, index: 3 });
    expect(decodePosition('00000001000000ff:0000000a')).toEqual({ lsn: 0x1000000ffn, index: 10 });
  });

  it('encode every digit of LSN and index, across changes of LSN and back', () => {
    const reference = (lsn: bigint, index: number) =>
      `${lsn.toString(16).toUpperCase().padStart(16, '0')}:${index.toString(16).toUpperCase().padStart(8, '0')}`;
    const lsns = [
      0n,
      1n,
      0xfn,
      0x1_0000_0000n,
      0xffff_ffffn,
      0x0123_4567_89ab_cdefn,
      0xfedc_ba98_7654_3210n,
      2n ** 64n - 1n,
    ];
    const indexes = [0, 1, 0xa, 0xff, 0x1234_5678, 0x8000_0000, 0xffff_ffff];
    for (const lsn of [...lsns, ...lsns.reverse()])
      for (const index of indexes) expect(encodePosition(lsn, index)).toBe(reference(lsn, index));
  });

  it('order by commit LSN first, then by index inside the transaction', () => {
    const sorted = [
      encodePosition(0x200n, 0),
      encodePosition(0x100n, 2),
      encodePosition(0x100n, 10),
      encodePosition(0x1_0000_0000n, 1),
      encodePosition(0x100n, 1),
    ].sort(comparePositions);
    expect(sorted.map((p) => formatPosition(p))).toEqual(['0/100#1', '0/100#2', '0/100#10', '0/200', '1/0#1']);
    expect(comparePositions(encodePosition(5n, 1), encodePosition(5n, 1))).toBe(0);
    // Digit by digit, either case, every digit counting (the LSN's halves and the index).
    expect(comparePositions('00000001000000ff:0000000a', '00000001000000FF:0000000A')).toBe(0);
    expect(comparePositions('00000001000000ff:0000000a', '00000001000000FF:0000000B')).toBeLessThan(0);
    expect(comparePositions('00000002000000ff:0000000a', '00000001FFFFFFFF:FFFFFFFF')).toBeGreaterThan(0);
    expect(comparePositions('0000000100000100:00000000', '00000001000000ff:ffffffff')).toBeGreaterThan(0);
    expect(() => comparePositions('00000001000000fg:0000000a', encodePosition(1n, 1))).toThrow(
      /not a PostgreSQL source position/,
    );
    expect(() => comparePositions(encodePosition(1n, 1), '0/3A1B2C4D')).toThrow(/not a PostgreSQL source position/);
    expect(decodePosition('FFFFFFFFFFFFFFFF:FFFFFFFF')).toEqual({ lsn: 0xffff_ffff_ffff_ffffn, index: 0xffff_ffff });
  });

  it('a boundary (L, 0) sorts before every event of a transaction committing at L', () => {
    expect(comparePositions(encodePosition(0x100n, 0), encodePosition(0x100n, 1))).toBeLessThan(0);
    expect(comparePositions(encodePosition(0x100n, 0), encodePosition(0xffn, 0xffff_ffff))).toBeGreaterThan(0);
  });

  it('print LSNs the way PostgreSQL does', () => {
    expect(formatLsn(0x3a1b2c4dn)).toBe('0/3A1B2C4D');
    expect(formatLsn(0x2_0000_00a0n)).toBe('2/A0');
    expect(parseLsn('0/3A1B2C4D')).toBe(0x3a1b2c4dn);
    expect(parseLsn('2/a0')).toBe(0x2_0000_00a0n);
    expect(formatPosition(encodePosition(0x3a1b2c4dn, 0))).toBe('0/3A1B2C4D');
  });

  it('reject malformed positions and LSNs with a clear error', () => {
    expect(() => decodePosition('0/3A1B2C4D')).toThrow(/not a PostgreSQL source position/);
    expect(() => decodePosition('0000000016B3C4D8:3')).toThrow(expect.objectContaining({ code: 'NS_P4009' }));
    expect(() => parseLsn('3A1B2C4D')).toThrow(/not an LSN/);
    expect(() => encodePosition(-1n, 0)).toThrow(RangeError);
    expect(() => encodePosition(1n, -1)).toThrow(RangeError);
  });
});
