import { describe, expect, it } from 'vitest';
import type { PgColumn } from '../../src/describe.js';
import { parseCopyTextRow } from '../../src/snapshot/copy-out.js';
import { rowDecoder } from '../../src/snapshot/read-partition.js';
import { builtinType } from '../../src/types/index.js';

/** The snapshot's row decoder on wide rows and odd column names (the stream's: stream-change-events.test.ts). */
describe('snapshot row decoder', () => {
  const names = ['id', '__proto__', ...Array.from({ length: 30 }, (_, i) => `c${i}`), 'toString', '1'];
  const columns: PgColumn[] = names.map((name, i) => ({
    name,
    type: builtinType(i % 2 === 0 ? 23 : 25)!,
    typmod: -1,
    notNull: false,
  }));
  const decode = rowDecoder({ table: { schema: 'public', name: 'wide' }, columns, keyColumns: ['id'] });
  const line = (k: number) =>
    names.map((_, i) => (i === 3 ? '\\N' : i % 2 === 0 ? String(k * 100 + i) : `t${k}.${i}`)).join('\t');

  it('gives every column of a 34-column row, a column called __proto__ included, as its own value', () => {
    for (let k = 0; k < 3; k++) {
      const row = decode(parseCopyTextRow(line(k), names.length));
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
      expect(Object.hasOwn(row, '__proto__')).toBe(true);
      expect(row.__proto__ === `t${k}.1`).toBe(true);
      expect(row.id).toBe(k * 100);
      expect(row.c1).toBeNull();
      expect(row.toString).toBe(k * 100 + 32);
      expect(row['1']).toBe(`t${k}.33`);
      expect(Object.keys(row).sort()).toEqual([...names].sort());
      expect(JSON.parse(JSON.stringify(row))).toEqual(Object.fromEntries(names.map((n) => [n, row[n]])));
    }
  });

  it('names the table, column and key of a value that does not fit', () => {
    const bad = line(1).replace(/^100\t/, 'x\t');
    expect(() => decode(parseCopyTextRow(bad, names.length))).toThrow(/public\.wide.*id/s);
  });
});
