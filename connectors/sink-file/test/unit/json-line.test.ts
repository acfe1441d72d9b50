import { mulberry32 } from '@nanosync/connector-testkit';
import type { ChangeEvent, ChangeOp, Row, TableSchema, Value } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { toJsonLine, toRecord } from '../../src/encode.js';

/**
 * `toJsonLine` against the encoder it replaces, `JSON.stringify(toRecord(event))`: byte for
 * byte over many generated events (every kind of value a row holds, nulls, `undefined`,
 * unicode and lone surrogates, odd keys, key orders, non-enumerable and inherited keys).
 */

/** A small deterministic generator (the testkit's mulberry32), so a failure repeats with its seed. */
function random(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Random = ReturnType<typeof random>;

const CHARS = ['a', '"', '\\', '\n', '\u0000', '\u001f', 'é', '中', '\u2028', '😀', '\ud800', '\udfff', '/'];

function text(r: Random, max = 10): string {
  let out = '';
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) out += r.chance(0.6) ? String.fromCharCode(97 + r.int(26)) : r.pick(CHARS);
  return out;
}

function value(r: Random): unknown {
  return r.pick([
    () => text(r),
    () => String(r.int(1e9)),
    () => r.int(1e6) - 5e5,
    () => (r.next() - 0.5) * 10 ** (r.int(40) - 20),
    () => r.pick([0, -0, Number.NaN, Infinity, -Infinity, 1e21, 5e-324]),
    () => r.chance(0.5),
    () => null,
    () => undefined,
    () => BigInt(r.int(1e9)) * 10_000_000_000n,
    () => new Uint8Array([r.int(256), r.int(256), r.int(256)]),
    () => [text(r), null, 1.5, Number.NaN, [true]],
    () => new Date(Date.UTC(2020, r.int(12), 1 + r.int(28))),
    () => ({ nested: text(r), n: r.int(10) }),
  ])();
}

const KEYS = ['id', 'name', '1', '10', '__proto__', 'toString', '', 'a b', 'Ünï', 'x"y'];

function row(r: Random, width: number): Row {
  const out: Row = {};
  for (let i = 0; i < width; i++) {
    const key = r.chance(0.3) ? r.pick(KEYS) : `c${i}_${text(r, 3)}`;
    const v = r.chance(0.7) ? r.pick(['x', 1, true, null, 'é"']) : value(r);
    if (key === '__proto__' || r.chance(0.02))
      Object.defineProperty(out, key, { value: v, enumerable: key === '__proto__' || r.chance(0.5), writable: true });
    else out[key] = v as Value;
  }
  return out;
}

const OPS: ChangeOp[] = ['insert', 'update', 'delete', 'read', 'truncate'];

function event(r: Random, table: TableSchema): ChangeEvent {
  const op = r.pick(OPS);
  const e: ChangeEvent = {
    op,
    table,
    key: op === 'truncate' ? {} : row(r, 1 + r.int(2)),
    position: r.chance(0.8) ? `0/${r.int(1e8).toString(16)}` : text(r),
  };
  if (r.chance(0.5)) e.commitTime = r.pick(['2024-05-01T10:00:00.123456Z', text(r)]);
  if (op !== 'delete' && op !== 'truncate') e.after = row(r, r.int(18));
  if (op !== 'insert' && op !== 'read' && r.chance(0.5)) e.before = row(r, r.int(18));
  if (r.chance(0.1)) e.unchanged = [text(r), 'b'];
  if (op === 'truncate' && r.chance(0.7)) e.truncate = { cascade: r.chance(0.5), restartIdentity: r.chance(0.5) };
  if (op === 'read' && r.chance(0.5)) e.chunk = `c${r.int(100)}`;
  return e;
}

function old(e: ChangeEvent): string {
  try {
    return `${JSON.stringify(toRecord(e))}\n`;
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

function now(e: ChangeEvent): string {
  try {
    return toJsonLine(e);
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

describe('file sink JSON line', () => {
  test.each([1, 2, 3, 4, 5, 6])('writes 3,000 generated events byte for byte as before (seed %i)', (seed) => {
    const r = random(seed);
    for (let t = 0; t < 30; t++) {
      const table: TableSchema = {
        schema: r.pick(['public', 'Ünï', 'a"b']),
        name: text(r, 6) || 't',
        columns: [],
        keyColumns: [],
      };
      for (let i = 0; i < 100; i++) {
        const e = event(r, table);
        expect(now(e), JSON.stringify({ seed, t, i })).toBe(old(e));
      }
    }
  });

  test('writes a row that inherits an enumerable key, and one without a prototype, as before', () => {
    const table: TableSchema = { schema: 'public', name: 't', columns: [], keyColumns: [] };
    const inherited = Object.create({ inherited: 'x' }) as Row;
    inherited.id = 1;
    const bare = Object.create(null) as Row;
    bare.id = 2;
    bare.name = 'n';
    const list = ['a', 'b'] as unknown as Row;
    const date = new Date(0) as unknown as Row;
    for (const after of [inherited, bare, list, date]) {
      const e: ChangeEvent = { op: 'insert', table, key: { id: 1 }, after, position: '0/1' };
      expect(toJsonLine(e)).toBe(`${JSON.stringify(toRecord(e))}\n`);
    }
    // An enumerable key on Object.prototype itself (a polluted prototype) is not the row's.
    Object.defineProperty(Object.prototype, 'polluted', {
      value: 'x',
      enumerable: true,
      configurable: true,
      writable: true,
    });
    try {
      const e: ChangeEvent = { op: 'insert', table, key: { id: 1 }, after: { id: 1 }, position: '0/1' };
      expect(toJsonLine(e)).toBe(`${JSON.stringify(toRecord(e))}\n`);
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted;
    }
  });
  test('keeps a column called __proto__ (a value the copy used to drop), whether the row is copied or written as it is', () => {
    const table: TableSchema = { schema: 'public', name: 'odd', columns: [], keyColumns: ['id'] };
    for (const value of ['text', new Uint8Array([1, 2])] as Value[]) {
      const after: Row = { id: 1 };
      Object.defineProperty(after, '__proto__', { value, enumerable: true, writable: true, configurable: true });
      const e: ChangeEvent = { op: 'insert', table, key: { id: 1 }, after, position: '0/1' };
      const written = typeof value === 'string' ? 'text' : 'AQI=';
      expect(JSON.parse(toJsonLine(e)).after).toEqual(JSON.parse(`{"id":1,"__proto__":"${written}"}`));
      expect(toJsonLine(e)).toBe(old(e));
    }
  });
});
