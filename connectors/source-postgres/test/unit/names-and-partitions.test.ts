import { NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { publicationNameFor, sanitizeName, slotNameFor } from '../../src/slot/names.js';
import {
  type CtidBounds,
  ctidPredicate,
  isCtidBounds,
  planCtidPartitions,
} from '../../src/snapshot/ctid-partitions.js';

describe('slot and publication names', () => {
  it('lowercases and replaces everything outside [a-z0-9_]', () => {
    expect(sanitizeName('Orders-Pipeline_2')).toBe('orders_pipeline_2');
    expect(sanitizeName('a.b c;"d')).toBe('a_b_c__d');
    expect(sanitizeName('ünï')).toBe('_n_');
    expect(slotNameFor('Orders-Pipeline')).toBe('nanosync_slot_orders_pipeline');
    expect(publicationNameFor('Orders-Pipeline')).toBe('nanosync_pub_orders_pipeline');
  });
  it('accepts names up to 63 bytes and rejects longer ones with PgInvalidName', () => {
    const fits = 'x'.repeat(63 - 'nanosync_slot_'.length);
    expect(slotNameFor(fits)).toHaveLength(63);
    try {
      slotNameFor(`${fits}y`);
      expect.unreachable();
    } catch (err) {
      expect(NanosyncError.is(err, 'NS_P4008')).toBe(true);
      expect((err as Error).message).toMatch(/slot name "nanosync_slot_x+y" is invalid: longer than 63 bytes/);
    }
  });
});

const bounds = (p: { bounds: unknown }) => p.bounds as CtidBounds;

describe('CTID partition planning', () => {
  it('one open-ended partition for empty, one-page or small tables', () => {
    for (const size of [
      { pages: 0, estimatedRows: 0 },
      { pages: 1, estimatedRows: 50 },
      { pages: 500, estimatedRows: 90_000 },
    ]) {
      const plan = planCtidPartitions(size, 100_000);
      expect(plan).toEqual([{ id: '0', bounds: { startPage: 0, endPage: null }, estimatedRows: size.estimatedRows }]);
    }
  });
  it('sizes page ranges from the row density', () => {
    // 1000 pages × 100 rows/page; 25 000 rows per partition → 250 pages each → 4 partitions.
    const plan = planCtidPartitions({ pages: 1000, estimatedRows: 100_000 }, 25_000);
    expect(plan.map(bounds)).toEqual([
      { startPage: 0, endPage: 250 },
      { startPage: 250, endPage: 500 },
      { startPage: 500, endPage: 750 },
      { startPage: 750, endPage: null },
    ]);
    expect(plan.map((p) => p.id)).toEqual(['0', '1', '2', '3']);
    expect(plan.map((p) => p.estimatedRows)).toEqual([25_000, 25_000, 25_000, 25_000]);
  });
  it('covers every page exactly once, the last partition open-ended, for uneven divisions', () => {
    for (const [pages, rows, target] of [
      [1001, 100_100, 25_000],
      [7, 7000, 999],
      [123_457, 10_000_000, 100_000],
      [10, 1_000_000, 10],
    ] as const) {
      const plan = planCtidPartitions({ pages, estimatedRows: rows }, target);
      let next = 0;
      plan.forEach((p, i) => {
        const b = bounds(p);
        expect(b.startPage).toBe(next);
        if (i === plan.length - 1) expect(b.endPage).toBeNull();
        else {
          expect(b.endPage).toBeGreaterThan(b.startPage);
          next = b.endPage as number;
        }
      });
      expect(bounds(plan.at(-1)!).startPage).toBeLessThan(pages);
      const perPartition = plan.slice(0, -1).map((p) => p.estimatedRows ?? 0);
      for (const n of perPartition) expect(n).toBeLessThanOrEqual(Math.max(target, rows / pages));
    }
  });
  it('never plans less than one page per partition for very dense pages', () => {
    const plan = planCtidPartitions({ pages: 10, estimatedRows: 1_000_000 }, 10);
    expect(plan).toHaveLength(10);
    expect(bounds(plan[3]!)).toEqual({ startPage: 3, endPage: 4 });
  });
  it('turns bounds into TID range predicates, rejecting anything that is not plain page numbers', () => {
    expect(ctidPredicate({ startPage: 0, endPage: null })).toBe('');
    expect(ctidPredicate({ startPage: 0, endPage: 10 })).toBe(" WHERE ctid < '(10,0)'::tid");
    expect(ctidPredicate({ startPage: 10, endPage: 20 })).toBe(" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid");
    expect(ctidPredicate({ startPage: 20, endPage: null })).toBe(" WHERE ctid >= '(20,0)'::tid");
    expect(isCtidBounds({ startPage: "1'; DROP TABLE x; --", endPage: null })).toBe(false);
    expect(isCtidBounds({ startPage: 5, endPage: 5 })).toBe(false);
    expect(() => ctidPredicate({ startPage: -1, endPage: null })).toThrow(TypeError);
  });
});
