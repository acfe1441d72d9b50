import type { Value } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import {
  histogramBoundaries,
  isBalanced,
  isKeyRangeBounds,
  type KeyRangeBounds,
  partitionPredicate,
  planKeyRanges,
  sampleBoundaries,
  samplePercent,
  scaleBoundaries,
} from '../../src/snapshot/key-ranges.js';
import { histogramSql, quantileSql, sampleSql } from '../../src/snapshot/plan.js';
import { partitionSelectSql } from '../../src/snapshot/read-partition.js';
import type { MssqlColumn } from '../../src/types/mapping.js';

const int = (name: string): MssqlColumn => ({
  name,
  typeName: 'int',
  maxLength: 4,
  precision: 10,
  scale: 0,
  nullable: false,
});

/**
 * A histogram as `sys.dm_db_stats_histogram` returns it for an int key 1..100000 with a
 * dense region: 40 steps, skewed (steps 10–14 hold most rows).
 */
function histogramFixture(): { key: Value; rangeRows: number; equalRows: number }[] {
  const steps: { key: Value; rangeRows: number; equalRows: number }[] = [];
  let high = 0;
  for (let i = 0; i < 40; i++) {
    const width = i >= 10 && i < 15 ? 12_000 : 1_000;
    high += width;
    steps.push({ key: high, rangeRows: width - 1, equalRows: 1 });
  }
  return steps;
}

/** Which partition a key falls into, evaluating the bounds the way the SQL predicate does (single int column). */
function owner(partitions: { bounds: unknown }[], key: number): number[] {
  return partitions
    .map((p, i) => ({ b: p.bounds as KeyRangeBounds, i }))
    .filter(
      ({ b }) =>
        (b.lower === undefined || key > (b.lower[0] as number)) &&
        (b.upper === undefined || key <= (b.upper[0] as number)),
    )
    .map(({ i }) => i);
}

describe('key-range planning from a histogram', () => {
  const steps = histogramFixture();
  const total = steps.reduce((n, s) => n + s.rangeRows + s.equalRows, 0);

  it('is balanced: every range close to the target, none above twice it', () => {
    const partitions = planKeyRanges(['id'], histogramBoundaries(steps), total, 10_000);
    expect(partitions.length).toBeGreaterThanOrEqual(8);
    expect(isBalanced(partitions, 10_000)).toBe(true);
    const estimated = partitions.reduce((n, p) => n + (p.estimatedRows ?? 0), 0);
    expect(estimated).toBe(total);
  });

  it('is complete and disjoint: every key, including keys beyond the last step, is in exactly one range', () => {
    const partitions = planKeyRanges(['id'], histogramBoundaries(steps), total, 10_000);
    expect((partitions[0]!.bounds as KeyRangeBounds).lower).toBeUndefined();
    expect((partitions.at(-1)!.bounds as KeyRangeBounds).upper).toBeUndefined();
    for (const key of [Number.MIN_SAFE_INTEGER, 0, 1, 999, 1000, 1001, 57_500, total, total + 1, 10 ** 12]) {
      expect(owner(partitions, key)).toHaveLength(1);
    }
    for (let key = 1; key <= total; key += 97) expect(owner(partitions, key)).toHaveLength(1);
  });

  it('scales a stale histogram to the current row count', () => {
    const partitions = planKeyRanges(['id'], scaleBoundaries(histogramBoundaries(steps), total * 2), total * 2, 10_000);
    // The dense steps now hold 24 000 rows each: more than twice the target, so the
    // planner would not trust the histogram and would sample keys instead.
    expect(isBalanced(partitions, 10_000)).toBe(false);
    expect(partitions.length).toBeGreaterThan(planKeyRanges(['id'], histogramBoundaries(steps), total, 10_000).length);
  });

  it('plans one open range for a small table, and bounds survive JSON (core persists them)', () => {
    const one = planKeyRanges(['id'], [], 50, 10_000);
    expect(one).toEqual([{ id: '0', bounds: { kind: 'key-range', columns: ['id'] }, estimatedRows: 50 }]);
    const partitions = planKeyRanges(['id'], histogramBoundaries(steps), total, 10_000);
    const restored = JSON.parse(JSON.stringify(partitions));
    expect(restored).toEqual(partitions);
    expect(restored.every((p: { bounds: unknown }) => isKeyRangeBounds(p.bounds))).toBe(true);
  });
});

describe('composite keys', () => {
  const keys = [int('tenant'), { ...int('seq'), typeName: 'bigint' }];

  it('plans tuple bounds from sorted samples and keeps duplicates out', () => {
    const samples: Value[][] = [
      [1, '10'],
      [1, '20'],
      [1, '20'],
      [2, '5'],
      [3, '1'],
    ];
    const partitions = planKeyRanges(['tenant', 'seq'], sampleBoundaries(samples, 100), 600, 100);
    const bounds = partitions.map((p) => p.bounds as KeyRangeBounds);
    expect(bounds.map((b) => [b.lower ?? null, b.upper ?? null])).toEqual([
      [null, [1, '10']],
      [
        [1, '10'],
        [1, '20'],
      ],
      [
        [1, '20'],
        [2, '5'],
      ],
      [
        [2, '5'],
        [3, '1'],
      ],
      [[3, '1'], null],
    ]);
  });

  it('compares bounds as tuples, each parameter converted to its column type', () => {
    const { sql, parameters } = partitionPredicate(keys, {
      kind: 'key-range',
      columns: ['tenant', 'seq'],
      lower: [1, '10'],
      upper: [2, '5'],
    });
    expect(sql).toBe(
      ' WHERE ([tenant] > CAST(@lo0 AS int) OR ([tenant] = CAST(@lo0 AS int) AND [seq] > CAST(@lo1 AS bigint)))' +
        ' AND ([tenant] < CAST(@hi0 AS int) OR ([tenant] = CAST(@hi0 AS int) AND [seq] <= CAST(@hi1 AS bigint)))',
    );
    expect(parameters).toEqual([
      { name: 'lo0', value: '1', binary: false },
      { name: 'lo1', value: '10', binary: false },
      { name: 'hi0', value: '2', binary: false },
      { name: 'hi1', value: '5', binary: false },
    ]);
  });

  it('accepts a prefix bound (the histogram knows the leading column only)', () => {
    const { sql } = partitionPredicate(keys, { kind: 'key-range', columns: ['tenant', 'seq'], lower: [7] });
    expect(sql).toBe(' WHERE [tenant] > CAST(@lo0 AS int)');
  });

  it('keeps binary key values JSON-safe and binds them as bytes', () => {
    const bin: MssqlColumn = { name: 'h', typeName: 'binary', maxLength: 4, precision: 0, scale: 0, nullable: false };
    const [partition] = planKeyRanges(['h'], sampleBoundaries([[Uint8Array.from([1, 2, 255, 0])]], 10), 20, 10);
    const bounds = JSON.parse(JSON.stringify(partition!.bounds)) as KeyRangeBounds;
    expect(bounds.upper).toEqual([{ hex: '0102ff00' }]);
    const { sql, parameters } = partitionPredicate([bin], bounds);
    expect(sql).toBe(' WHERE [h] <= CAST(@hi0 AS binary(4))');
    expect(parameters[0]!.binary).toBe(true);
    expect(Array.from(parameters[0]!.value as Uint8Array)).toEqual([1, 2, 255, 0]);
  });
});

describe('SQL text: identifiers quoted, values parameters', () => {
  const weird = { schema: 'we]ird sch.ema', name: "Ta'ble; DROP TABLE x--" };
  const columns: MssqlColumn[] = [
    { name: 'i]d', typeName: 'int', maxLength: 4, precision: 10, scale: 0, nullable: false },
    { name: 'prix €', typeName: 'decimal', maxLength: 17, precision: 38, scale: 2, nullable: true },
  ];

  it('quotes every identifier with ] doubled and keeps names shaped like SQL inside brackets', () => {
    const { sql } = partitionSelectSql(weird, columns, [columns[0]!], {
      kind: 'key-range',
      columns: ['i]d'],
      lower: [5],
    });
    expect(sql).toBe(
      "SELECT [i]]d] AS [c0], CAST([prix €] AS varchar(48)) AS [c1] FROM [we]]ird sch.ema].[Ta'ble; DROP TABLE x--] WHERE [i]]d] > CAST(@lo0 AS int)",
    );
  });

  it('builds the histogram, quantile and sample queries', () => {
    expect(histogramSql(columns[0]!)).toContain(
      'FROM sys.dm_db_stats_histogram(@object_id, @stats_id) h ORDER BY h.step_number',
    );
    expect(quantileSql(weird, [columns[0]!])).toContain(
      "ROW_NUMBER() OVER (ORDER BY [i]]d]) AS ns_row FROM [we]]ird sch.ema].[Ta'ble; DROP TABLE x--]",
    );
    expect(sampleSql(weird, [columns[0]!], 1.5)).toContain('TABLESAMPLE SYSTEM (1.5 PERCENT)');
    expect(() => sampleSql(weird, [columns[0]!], Number.NaN)).toThrow(RangeError);
    expect(samplePercent(10_000_000, 20_000)).toBe(0.2);
    expect(samplePercent(100, 20_000)).toBe(100);
  });
});
