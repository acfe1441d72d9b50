import { describe, expect, it } from 'vitest';
import { cpuPerMillion, percentile, ratio, summarizeLatencies } from '../../src/stats.js';

describe('percentile (nearest rank)', () => {
  it('picks the value at rank ceil(p/100 × n) of the sorted sample', () => {
    const values = [15, 20, 35, 40, 50];
    expect(percentile(values, 30)).toBe(20);
    expect(percentile(values, 40)).toBe(20);
    expect(percentile(values, 50)).toBe(35);
    expect(percentile(values, 100)).toBe(50);
    expect(percentile(values, 0)).toBe(15);
  });

  it('does not depend on the input order and leaves the input alone', () => {
    const values = [9, 1, 5, 3, 7];
    expect(percentile(values, 50)).toBe(5);
    expect(values).toEqual([9, 1, 5, 3, 7]);
  });

  it('p99 of 1..1000 is 990 and p95 is 950', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 1000 - i);
    expect(percentile(values, 99)).toBe(990);
    expect(percentile(values, 95)).toBe(950);
  });

  it('is undefined for an empty sample', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(summarizeLatencies([])).toEqual({
      count: 0,
      p50Ms: undefined,
      p95Ms: undefined,
      p99Ms: undefined,
      maxMs: undefined,
    });
  });

  it('summarizes latencies', () => {
    const summary = summarizeLatencies([5, 1, 4, 2, 3]);
    expect(summary).toEqual({ count: 5, p50Ms: 3, p95Ms: 5, p99Ms: 5, maxMs: 5 });
  });
});

describe('ratio and CPU per million', () => {
  it('divides, and refuses missing or zero denominators', () => {
    expect(ratio(10, 4)).toBe(2.5);
    expect(ratio(10, 0)).toBeUndefined();
    expect(ratio(undefined, 4)).toBeUndefined();
    expect(ratio(4, undefined)).toBeUndefined();
  });

  it('scales CPU seconds to a million events', () => {
    expect(cpuPerMillion(2, 500_000)).toBe(4);
    expect(cpuPerMillion(2, 0)).toBeUndefined();
    expect(cpuPerMillion(undefined, 10)).toBeUndefined();
  });
});
