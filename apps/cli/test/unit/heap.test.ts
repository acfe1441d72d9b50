import { describe, expect, it } from 'vitest';
import { HEAP_GROWING_PERCENT, limitHeapGrowth } from '../../src/heap.js';

describe('the heap growth the CLI sets at start', () => {
  it('is 100%, given to V8 as --heap-growing-percent', () => {
    const set: string[] = [];
    expect(limitHeapGrowth([], (flags) => set.push(flags))).toBe(true);
    expect(set).toEqual(['--heap-growing-percent=100']);
    expect(HEAP_GROWING_PERCENT).toBe(100);
  });

  it('leaves a value given to Node alone, in either spelling', () => {
    for (const own of ['--heap-growing-percent=300', '--heap_growing_percent=0']) {
      const set: string[] = [];
      expect(limitHeapGrowth(['--max-semi-space-size=8', own], (flags) => set.push(flags))).toBe(false);
      expect(set).toEqual([]);
    }
  });

  it('is taken by this Node while it runs', () => {
    // Set for real, as bin.ts does after start: a V8 that froze its flags would fail here.
    expect(limitHeapGrowth([])).toBe(true);
  });
});
