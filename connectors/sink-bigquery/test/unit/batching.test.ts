import { describe, expect, test } from 'vitest';
import { RowTooLarge, framedSize, splitIntoRequests } from '../../src/write/batching.js';

const row = (size: number, origin: number) => ({ bytes: new Uint8Array(size), origin });

describe('AppendRows request batching', () => {
  test('every request stays under the budget and rows keep their order', () => {
    const rows = Array.from({ length: 500 }, (_, i) => row(1000 + ((i * 7919) % 30_000), i));
    const requests = [...splitIntoRequests(rows, 256 * 1024, 16 * 1024)];
    expect(requests.length).toBeGreaterThan(1);
    for (const request of requests)
      expect(request.reduce((n, r) => n + framedSize(r.bytes), 0)).toBeLessThanOrEqual(240 * 1024);
    expect(requests.flat().map((r) => r.origin)).toEqual(rows.map((r) => r.origin));
  });

  test('the default 9 MB budget keeps a request under the 10 MB API limit', () => {
    const rows = Array.from({ length: 40 }, (_, i) => row(1024 * 1024 - 10, i));
    for (const request of splitIntoRequests(rows, 9 * 1024 * 1024, 64 * 1024)) {
      expect(request.reduce((n, r) => n + framedSize(r.bytes), 0)).toBeLessThan(10 * 1024 * 1024);
    }
  });

  test('a row larger than the budget is reported with its origin', () => {
    try {
      [...splitIntoRequests([row(10, 1), row(300_000, 2)], 256 * 1024, 1024)];
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RowTooLarge);
      expect((err as RowTooLarge<number>).row.origin).toBe(2);
    }
  });

  test('framing: tag plus varint length', () => {
    expect(framedSize(new Uint8Array(127))).toBe(129);
    expect(framedSize(new Uint8Array(128))).toBe(131);
  });
});
