import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { growingPercentFor, HEAP_ROOM_BYTES, limitHeapGrowth, observeFullCollections } from '../../src/heap.js';

const MB = 1024 * 1024;

describe('the heap growth the CLI sets', () => {
  it('starts at 100%, given to V8 as --heap-growing-percent', () => {
    const set: string[] = [];
    expect(
      limitHeapGrowth(
        [],
        (flags) => set.push(flags),
        () => undefined,
      ),
    ).toBe(true);
    expect(set).toEqual(['--heap-growing-percent=100']);
  });

  it('keeps the same room past any live size, within 50–200%', () => {
    expect(HEAP_ROOM_BYTES).toBe(26 * MB);
    expect(growingPercentFor(26 * MB)).toBe(100);
    expect(growingPercentFor(52 * MB)).toBe(50);
    expect(growingPercentFor(35 * MB)).toBe(74);
    expect(growingPercentFor(20 * MB)).toBe(130);
    // A tiny heap is not given four times its size, a huge one not less than half.
    expect(growingPercentFor(5 * MB)).toBe(200);
    expect(growingPercentFor(0)).toBe(200);
    expect(growingPercentFor(400 * MB)).toBe(50);
  });

  it('is set again after a full collection, from what survived it, only when it changes', () => {
    const set: string[] = [];
    let onFull: (() => void) | undefined;
    let live = 26 * MB;
    limitHeapGrowth(
      [],
      (flags) => set.push(flags),
      (callback) => {
        onFull = callback;
      },
      () => live,
    );
    expect(onFull).toBeDefined();
    onFull!(); // 26 MB live: still 100%, nothing to set
    live = 52 * MB;
    onFull!();
    onFull!(); // the same again: set once
    live = 13 * MB;
    onFull!();
    expect(set).toEqual(['--heap-growing-percent=100', '--heap-growing-percent=50', '--heap-growing-percent=200']);
  });

  it('leaves a value given to Node alone, in either spelling', () => {
    for (const own of ['--heap-growing-percent=300', '--heap_growing_percent=0']) {
      const set: string[] = [];
      let observed = false;
      expect(
        limitHeapGrowth(
          ['--max-semi-space-size=8', own],
          (flags) => set.push(flags),
          () => {
            observed = true;
          },
        ),
      ).toBe(false);
      expect(set).toEqual([]);
      expect(observed).toBe(false);
    }
  });

  it('is taken by this Node while it runs', () => {
    // Set for real, as bin.ts does after start: a V8 that froze its flags would fail here.
    expect(limitHeapGrowth([])).toBe(true);
  });

  it('hears of a real full collection, and not of a scavenge', async () => {
    // V8's own collector, reached the way `node --expose-gc` does, from inside this process.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (options?: { type: 'major' | 'minor'; execution: 'sync' }) => void;
    let full = 0;
    const stop = observeFullCollections(() => {
      full += 1;
    });
    // Every collection this process really runs, as Node reports it: the test's own forced
    // ones and any the runtime starts by itself meanwhile.
    const kinds: number[] = [];
    const all = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) kinds.push((entry as { detail?: { kind?: number } }).detail?.kind ?? -1);
    });
    all.observe({ entryTypes: ['gc'] });
    try {
      // Node hands gc entries to observers from its next turn of the event loop (an
      // immediate queued by the collection), so they have arrived before a timer that follows.
      const nextTurns = () => new Promise((resolve) => setTimeout(resolve, 20));
      for (let i = 0; i < 3; i++) {
        gc({ type: 'minor', execution: 'sync' });
        await nextTurns();
      }
      expect(kinds).toContain(constants.NODE_PERFORMANCE_GC_MINOR);
      // Nothing heard from scavenges, unless the runtime ran a full collection of its own.
      if (!kinds.includes(constants.NODE_PERFORMANCE_GC_MAJOR)) expect(full).toBe(0);
      for (let i = 0; i < 2; i++) {
        const before = full;
        gc({ type: 'major', execution: 'sync' });
        await nextTurns();
        expect(full).toBeGreaterThan(before);
      }
    } finally {
      stop();
      all.disconnect();
    }
  });
});
