import { describe, expect, it } from 'vitest';
import { ChunkBuffer } from '../../src/snapshot/read-chunk.js';

/** A deterministic sequence of row sizes (1 byte to 64 KiB, a few much wider). */
function* sizes(seed: number, count: number): Generator<number> {
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield x % 97 === 0 ? 1 + (x % (1 << 20)) : 1 + (x % (1 << 16));
  }
}

describe('ChunkBuffer: the rows of one chunk (snapshot chunks and the stream’s attached-partition chunks)', () => {
  it('never holds more than max rows, nor more than max bytes plus one row, however many rows the read returns', () => {
    for (const [maxRows, maxBytes] of [
      [1, 1],
      [10, 1 << 30],
      [10_000, 8 << 20],
      [500, 100_000],
      [1 << 20, 64 << 10],
    ] as const) {
      for (let seed = 1; seed <= 20; seed++) {
        const buffer = new ChunkBuffer<number>(maxRows, maxBytes);
        let widest = 0;
        let offered = 0;
        let lastKept = 0;
        for (const size of sizes(seed, 5000)) {
          offered++;
          const kept = buffer.offer(size, () => size);
          if (kept) {
            widest = Math.max(widest, size);
            lastKept = size;
          }
          // At most max rows; below the byte bound before the last row kept (so at most the bound plus that row).
          if (buffer.rows.length > maxRows || buffer.bytes - lastKept >= maxBytes)
            throw new Error(`over the bound after ${offered} rows: ${buffer.rows.length} rows, ${buffer.bytes} bytes`);
        }
        expect(buffer.rows.length).toBeGreaterThanOrEqual(1);
        expect(buffer.bytes).toBeLessThan(maxBytes + widest);
        expect(buffer.bytes).toBe(buffer.rows.reduce((a, b) => a + b, 0));
        expect(buffer.returned).toBe(offered);
      }
    }
  });

  it('keeps one row wider than the byte bound (a chunk always advances), and nothing after it', () => {
    const buffer = new ChunkBuffer<string>(100, 10);
    expect(buffer.offer(50, () => 'wide')).toBe(true);
    expect(buffer.offer(1, () => 'next')).toBe(false);
    expect(buffer.rows).toEqual(['wide']);
    expect(buffer.full).toBe(true);
    expect(buffer.returned).toBe(2);
  });

  it('does not decode a row it drops', () => {
    const buffer = new ChunkBuffer<number>(2, 1 << 20);
    let made = 0;
    for (let i = 0; i < 10; i++) buffer.offer(1, () => ++made);
    expect(made).toBe(2);
    expect(buffer.rows).toEqual([1, 2]);
  });
});
