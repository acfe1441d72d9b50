import { describe, expect, test } from 'vitest';
import { checkPerKeyOrder, type ReadRecord } from '../order-check.js';

/** Records of one partition in this order: `['a', 1]` is key a, number 1. */
const partition = (p: number, ...records: [string, number][]): ReadRecord[] =>
  records.map(([key, seq], i) => ({ key, seq, partition: p, offset: BigInt(i) }));

describe('per-key order oracle of the in-flight soak test', () => {
  const sent = new Map([
    ['a', 3],
    ['b', 2],
  ]);

  test('every record once, in order per key (keys interleaved, partitions read in any order): clean', () => {
    const records = [...partition(1, ['b', 1], ['b', 2]), ...partition(0, ['a', 1], ['a', 2], ['a', 3])].reverse();
    expect(checkPerKeyOrder(sent, records)).toEqual({
      records: 5,
      missing: [],
      duplicates: [],
      outOfOrder: [],
      staleLast: [],
      misplaced: [],
    });
  });

  test('a lost record is missing', () => {
    const report = checkPerKeyOrder(sent, [...partition(0, ['a', 1], ['a', 3]), ...partition(1, ['b', 1], ['b', 2])]);
    expect(report.missing).toEqual(['a#2']);
    expect(report.outOfOrder).toEqual([]);
  });

  test('a later request landing before an earlier one is out of order, and its last value is stale', () => {
    // The request with a#3 and b#2 landed, then the one with a#2 and b#1 was sent again.
    const report = checkPerKeyOrder(sent, partition(0, ['a', 1], ['a', 3], ['b', 2], ['a', 2], ['b', 1]));
    expect(report.outOfOrder).toEqual(['a: 3 before 2', 'b: 2 before 1']);
    expect(report.staleLast).toEqual(['a: last 2, highest 3', 'b: last 1, highest 2']);
    expect(report.missing).toEqual([]);
  });

  test('a request sent again after it had landed is a duplicate, not a disorder', () => {
    const report = checkPerKeyOrder(
      sent,
      partition(0, ['a', 1], ['a', 2], ['b', 1], ['a', 2], ['b', 1], ['a', 3], ['b', 2]),
    );
    expect(report.duplicates).toEqual([
      { key: 'a', seq: 2, count: 2 },
      { key: 'b', seq: 1, count: 2 },
    ]);
    expect(report.outOfOrder).toEqual([]);
    expect(report.staleLast).toEqual([]);
  });

  test('a key on two partitions, an unknown key and a number never sent are misplaced', () => {
    const report = checkPerKeyOrder(sent, [
      ...partition(0, ['a', 1], ['a', 2], ['z', 1]),
      ...partition(1, ['a', 3], ['b', 1], ['b', 2], ['b', 9]),
    ]);
    expect(report.misplaced).toEqual([
      'z: never sent (partition 0 offset 2)',
      'a: on partitions 0, 1',
      'b: number 9 never sent (highest 2)',
    ]);
  });
});
