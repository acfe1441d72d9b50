import type { Row } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import {
  checkHistoryOrder,
  checkNothingLost,
  checkPositionOrder,
  compareWithSnapshot,
  type OracleRecord,
  reduceByKey,
  runOracle,
} from '../../src/index.js';

const t = 'public.t';
const rec = (op: string, id: number, position: string, note?: string): OracleRecord => ({
  table: t,
  op,
  key: op === 'truncate' ? {} : { id },
  ...(note === undefined ? {} : { after: { id, note } }),
  position,
});

describe('reduceByKey', () => {
  it('keeps the last record per key; a delete removes it; unchanged columns keep their value', () => {
    const state = reduceByKey([
      rec('insert', 1, '01', 'a'),
      rec('insert', 2, '02', 'b'),
      rec('update', 1, '03', 'c'),
      rec('delete', 2, '04'),
      { table: t, op: 'update', key: { id: 1 }, after: { id: 1 }, unchanged: ['note'], position: '05' },
    ]);
    expect([...state.get(t)!.values()]).toEqual([{ id: 1, note: 'c' }]);
  });

  it('a truncate removes the rows written before it by position, wherever it was read', () => {
    // The truncate was read first (another partition), but it happened between 02 and 04.
    const state = reduceByKey([
      rec('truncate', 0, '03'),
      rec('insert', 1, '01', 'a'),
      rec('insert', 2, '02', 'b'),
      rec('insert', 3, '04', 'c'),
      rec('insert', 1, '01', 'a'),
    ]);
    expect([...state.get(t)!.values()]).toEqual([{ id: 3, note: 'c' }]);
  });

  it('an update that changed the key moves the row', () => {
    const state = reduceByKey([
      rec('insert', 1, '01', 'a'),
      {
        table: t,
        op: 'update',
        key: { id: 2 },
        before: { id: 1, note: 'a' },
        after: { id: 2, note: 'a' },
        position: '02',
      },
    ]);
    expect([...state.get(t)!.values()]).toEqual([{ id: 2, note: 'a' }]);
  });

  it('without positions a truncate applies in read order', () => {
    const state = reduceByKey([
      { table: t, op: 'insert', key: { id: 1 }, after: { id: 1 } },
      { table: t, op: 'truncate', key: {} },
      { table: t, op: 'insert', key: { id: 2 }, after: { id: 2 } },
    ]);
    expect([...state.get(t)!.values()]).toEqual([{ id: 2 }]);
  });
});

describe('checkPositionOrder', () => {
  it('accepts a replayed prefix', () => {
    const records = ['01', '02', '03', '02', '03', '04'].map((p) => rec('update', 1, p, p));
    expect(checkPositionOrder(records)).toEqual([]);
  });

  it('flags a version that first appears after a newer one', () => {
    const records = ['01', '03', '02'].map((p) => rec('update', 1, p, p));
    expect(checkPositionOrder(records)).toEqual([
      expect.stringContaining('position 02 (update) first appears after 03'),
    ]);
  });

  it('exempts snapshot rows, which carry the start position', () => {
    expect(checkPositionOrder([rec('update', 1, '05', 'x'), rec('read', 1, '01', 'y')])).toEqual([]);
  });
});

describe('compareWithSnapshot and runOracle', () => {
  it('names missing, extra, different and duplicated keys', () => {
    const problems = compareWithSnapshot(
      [
        { id: 1, note: 'a' },
        { id: 2, note: 'stale' },
        { id: 2, note: 'stale' },
        { id: 9, note: 'extra' },
      ],
      [
        { id: 1, note: 'a' },
        { id: 2, note: 'fresh' },
        { id: 3, note: 'c' },
      ],
      { keyColumns: ['id'], table: t },
    );
    expect(problems).toEqual([
      `${t} key {"id":2}: held more than once by the sink`,
      `${t} key {"id":2}: sink {"id":2,"note":"stale"} ≠ source {"id":2,"note":"fresh"}`,
      `${t} key {"id":3}: in the source, missing from the sink`,
      `${t} key {"id":9}: in the sink, not in the source`,
    ]);
  });

  it('compares bigint, bytes and NaN losslessly', () => {
    // bigint is not a `Value`, but a stray one must still compare exactly.
    const row = { id: 1, big: 2n ** 70n, bytes: new Uint8Array([0, 255]), f: Number.NaN } as unknown as Row;
    expect(compareWithSnapshot([row], [{ ...row }], { keyColumns: ['id'] })).toEqual([]);
    expect(
      compareWithSnapshot([{ ...row, big: 2n ** 70n + 1n } as unknown as Row], [row], { keyColumns: ['id'] }),
    ).toHaveLength(1);
  });

  it('finds a lost change even when the final state matches', () => {
    const records = [rec('insert', 1, '01', 'a'), rec('update', 1, '03', 'c')];
    expect(
      checkNothingLost(records, [
        { table: t, op: 'update', key: { id: 1 }, after: { note: 'b' } },
        { table: t, op: 'update', key: { id: 1 }, after: { note: 'c' } },
      ]),
    ).toEqual([`change lost: update ${t} key {"id":1} {"note":"b"}`]);
    expect(
      runOracle({ records, expected: { [t]: [{ id: 1, note: 'c' }] }, keyColumns: ['id'] }),
      'the state alone passes',
    ).toEqual([]);
  });
});

describe('checkHistoryOrder (strict)', () => {
  it('passes a concurrent-snapshot history: snapshot rows at their newest version, stream before and after, replays after a crash', () => {
    expect(
      checkHistoryOrder([
        rec('update', 1, '05', 'u5'),
        rec('read', 1, '06', 'u5'),
        rec('read', 2, '06', 'seed'),
        rec('update', 1, '07', 'u7'),
        // crash: the stream replays from 05, the partition is read again
        rec('update', 1, '05', 'u5'),
        rec('update', 1, '07', 'u7'),
        rec('read', 1, '09', 'u7'),
        rec('read', 2, '09', 'seed'),
        rec('update', 2, '10', 'u10'),
      ]),
    ).toEqual([]);
  });

  it('fails the blocking history after a restart: the fresh read delivers the newest version, then the replay delivers an older one for the first time', () => {
    const problems = checkHistoryOrder([
      rec('read', 1, '01', 'seed'),
      // crash; the partition of key 2 is read fresh (its newest version), then the stream replays from 01
      rec('read', 2, '01', 'u7'),
      rec('update', 2, '05', 'u5'),
      rec('update', 2, '07', 'u7'),
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('key {"id":2}');
  });

  it('fails a snapshot row of the version from before the stream delivered after a stream version', () => {
    expect(checkHistoryOrder([rec('update', 1, '05', 'u5'), rec('read', 1, '06', 'seed')])).toHaveLength(1);
    // ... unless it was delivered before (a replay)
    expect(
      checkHistoryOrder([rec('read', 1, '02', 'seed'), rec('update', 1, '05', 'u5'), rec('read', 1, '02', 'seed')]),
    ).toEqual([]);
  });

  it('a delete is a version: the row from before the stream, delivered first after the delete, fails', () => {
    expect(
      checkHistoryOrder([rec('update', 1, '03', 'a'), rec('delete', 1, '04'), rec('read', 1, '05', 'seed')]),
    ).toHaveLength(1);
  });

  it('a truncate is a version of every key of its table: a row from before it, first delivered after it, fails', () => {
    // Key 1 is only ever read by the snapshot: its row from before the stream comes after the truncate.
    const problems = checkHistoryOrder([
      rec('insert', 2, '03', 'a'),
      rec('truncate', 0, '05'),
      rec('read', 1, '06', 'seed'),
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('key {"id":1}: read delivers the version from before the stream');
    // A stream version older than the truncate, first delivered after it.
    expect(checkHistoryOrder([rec('truncate', 0, '05'), rec('insert', 1, '03', 'a')])).toHaveLength(1);
    // Other tables are not affected.
    expect(
      checkHistoryOrder([{ ...rec('truncate', 0, '05'), table: 'public.other' }, rec('read', 1, '06', 'seed')]),
    ).toEqual([]);
  });

  it('a truncate passes when older rows come only before it or as replays, and newer ones after it', () => {
    expect(
      checkHistoryOrder([
        rec('read', 1, '01', 'seed'),
        rec('insert', 2, '03', 'a'),
        rec('truncate', 0, '05'),
        rec('insert', 1, '06', 'b'),
        rec('read', 1, '07', 'b'),
        // crash: replays
        rec('read', 1, '01', 'seed'),
        rec('insert', 2, '03', 'a'),
        rec('truncate', 0, '05'),
        rec('insert', 1, '06', 'b'),
      ]),
    ).toEqual([]);
  });

  it('strict runOracle reports a version delivered after a newer one once, not by two checks', () => {
    const records = [rec('insert', 1, '01', 'a'), rec('update', 1, '03', 'c'), rec('update', 1, '02', 'b')];
    const input = { records, expected: { [t]: [{ id: 1, note: 'b' }] }, keyColumns: ['id'] };
    expect(runOracle(input)).toHaveLength(1);
    expect(runOracle({ ...input, strict: true })).toHaveLength(1);
  });

  it('runOracle runs it when asked (strict)', () => {
    const records = [rec('read', 2, '01', 'u7'), rec('update', 2, '05', 'u5'), rec('update', 2, '07', 'u7')];
    const input = { records, expected: { [t]: [{ id: 2, note: 'u7' }] }, keyColumns: ['id'] };
    expect(runOracle(input)).toEqual([]);
    expect(runOracle({ ...input, strict: true })).toHaveLength(1);
  });
});
