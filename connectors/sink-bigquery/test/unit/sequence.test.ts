import { describe, expect, test } from 'vitest';
import { SequenceNumbers, compareSequenceNumbers } from '../../src/write/sequence.js';

const pg = (lsn: bigint, index: number) =>
  `${lsn.toString(16).toUpperCase().padStart(16, '0')}:${index.toString(16).toUpperCase().padStart(8, '0')}`;

describe('_CHANGE_SEQUENCE_NUMBER', () => {
  test('PostgreSQL positions: the LSN, then the index and a snapshot/change digit', () => {
    expect(new SequenceNumbers().of({ position: pg(0x16b3f2a8n, 2), op: 'update' })).toBe('0000000016B3F2A8/000000021');
    expect(new SequenceNumbers().of({ position: pg(0x16b3f2a8n, 0), op: 'read' })).toBe('0000000016B3F2A8/000000000');
  });

  test('strictly increasing along a stream, including many events sharing one commit LSN', () => {
    const positions: string[] = [];
    for (const lsn of [0x10n, 0x11n, 0xffff_ffffn, 0x1_0000_0000n, 0xffff_ffff_ffff_fff0n]) {
      for (const index of [1, 2, 15, 16, 255, 256, 65_536, 0xffff_ffff]) positions.push(pg(lsn, index));
    }
    const seq = new SequenceNumbers();
    const numbers = positions.map((position) => seq.of({ position, op: 'insert' }));
    for (let i = 1; i < numbers.length; i++)
      expect(compareSequenceNumbers(numbers[i - 1] as string, numbers[i] as string)).toBe(-1);
  });

  test('a replay gives the very same numbers (derived from the position only)', () => {
    const positions = [pg(0x20n, 1), pg(0x20n, 2), pg(0x21n, 1)];
    const first = positions.map((position) => new SequenceNumbers().of({ position, op: 'update' }));
    const again = positions.map((position) => new SequenceNumbers().of({ position, op: 'update' }));
    expect(again).toEqual(first);
  });

  test('a change at a position beats a snapshot row at the same position; snapshot rows at L0 lose to every later change', () => {
    const seq = new SequenceNumbers();
    const snapshot = seq.of({ position: pg(0x30n, 0), op: 'read' });
    expect(compareSequenceNumbers(snapshot, seq.of({ position: pg(0x30n, 1), op: 'update' }))).toBe(-1);
    const resnapshot = seq.of({ position: pg(0x40n, 3), op: 'read' });
    expect(compareSequenceNumbers(resnapshot, seq.of({ position: pg(0x40n, 3), op: 'update' }))).toBe(-1);
  });

  test('positions that are not fixed-width hex are refused, pointing to upsert_method: merge', () => {
    expect(() => new SequenceNumbers().of({ position: 'lsn=12,seq=3', op: 'insert' })).toThrow(/upsert_method: merge/);
    const seq = new SequenceNumbers();
    seq.of({ position: 'AB:01', op: 'insert' });
    expect(() => seq.of({ position: 'ABC:01', op: 'insert' })).toThrow(/shape differs/);
  });

  test('SQL Server positions (LSN, command id, seqval, operation) fit in four sections and keep their order', () => {
    const mssql = (lsn: string, command: number, seqval: string, op: number) =>
      `${lsn}:${command.toString(16).toUpperCase().padStart(8, '0')}:${seqval}:${op}`;
    const seq = new SequenceNumbers();
    const a = seq.of({ position: mssql('0000002A000001F00003', 1, '0000002A000001F00002', 3), op: 'update' });
    const b = seq.of({ position: mssql('0000002A000001F00003', 1, '0000002A000001F00002', 4), op: 'update' });
    const c = seq.of({ position: mssql('0000002A000001F00003', 2, '0000002A000001F00001', 2), op: 'insert' });
    const d = seq.of({ position: mssql('0000002A000001F10000', 1, '00000000000000000000', 1), op: 'delete' });
    expect(a.split('/')).toHaveLength(4);
    expect([compareSequenceNumbers(a, b), compareSequenceNumbers(b, c), compareSequenceNumbers(c, d)]).toEqual([
      -1, -1, -1,
    ]);
    expect(() => new SequenceNumbers().of({ position: 'F'.repeat(64), op: 'insert' })).toThrow(/at most 63 digits/);
  });
});
