import { describe, expect, it } from 'vitest';
import type { Row, TableSchema, Value } from '../../src/model.js';
import { readEvents } from '../../src/runtime/read-events.js';
import { keyMaker, rowMaker, setRowField, storesMaker } from '../../src/values/row-maker.js';

/** What decoders did before the maker: one store per column, `__proto__` defined. */
function byStores(names: readonly string[], values: readonly Value[]): Row {
  const row: Row = {};
  for (const [i, name] of names.entries()) setRowField(row, name, values[i] as Value);
  return row;
}

const ODD = [
  'id',
  '__proto__',
  'toString',
  'constructor',
  '',
  '1',
  '10',
  'a b',
  'x"y',
  'back\\slash',
  'new\nline',
  'sep\u2028x',
  'Ünï𝄞',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a column name, not a placeholder (the generated code must not run it)
  '${x}',
  '`',
];

describe('rowMaker', () => {
  it('makes the rows stores would make: same own keys, order, values and JSON, for odd names too', () => {
    const make = rowMaker(ODD);
    const values: Value[] = ODD.map((_, i) => (i % 3 === 0 ? null : i % 3 === 1 ? `v${i}` : i * 1.5));
    const row = make(values);
    const expected = byStores(ODD, values);
    expect(Object.keys(row)).toEqual(Object.keys(expected));
    expect(JSON.stringify(row)).toBe(JSON.stringify(expected));
    for (const name of ODD) expect(Object.hasOwn(row, name)).toBe(true);
    expect(storesMaker(ODD)(values)).toEqual(expected);
  });

  it('keeps a column called __proto__ as an own value, and the row an ordinary object', () => {
    const row = rowMaker(['id', '__proto__'])([1, 'kept']);
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(row, '__proto__')).toEqual({
      value: 'kept',
      enumerable: true,
      writable: true,
      configurable: true,
    });
    expect(JSON.stringify(row)).toBe('{"id":1,"__proto__":"kept"}');
    // What a plain assignment does, and why the maker does not do it.
    const assigned: Row = {};
    assigned.__proto__ = 'lost';
    expect(JSON.stringify(assigned)).toBe('{}');
  });

  it('copies the values: the array can be reused for the next row', () => {
    const make = rowMaker(['a', 'b']);
    const values: Value[] = [1, 'x'];
    const first = make(values);
    values[0] = 2;
    values[1] = null;
    const second = make(values);
    expect(first).toEqual({ a: 1, b: 'x' });
    expect(second).toEqual({ a: 2, b: null });
  });

  it('wide rows (past the 16 properties V8 keeps fast for stores) keep every column in order', () => {
    const names = Array.from({ length: 120 }, (_, i) => `c${i}`);
    const values = names.map((_, i) => i);
    const row = rowMaker(names)(values);
    expect(Object.keys(row)).toEqual(names);
    expect(Object.values(row)).toEqual(values);
  });

  it('one maker per column list (the code is generated once)', () => {
    expect(rowMaker(['p', 'q'])).toBe(rowMaker(['p', 'q']));
    expect(rowMaker(['p', 'q'])).not.toBe(rowMaker(['q', 'p']));
    // Names that would join into the same text stay apart.
    expect(rowMaker(['a\u0000b'])).not.toBe(rowMaker(['a', 'b']));
  });
});

describe('keyMaker and the snapshot events it keys', () => {
  it('keeps a key column called __proto__ as a value and takes nothing from Object.prototype', () => {
    const keyColumns = ['__proto__', 'constructor', 'id'];
    const row = rowMaker(['__proto__', 'id', 'name'])(['k1', 7, 'seven']);
    const key = keyMaker(keyColumns)(row);
    // Before: `key[k] = row[k]` set the key's prototype (the value was lost) and copied
    // Object.prototype.constructor, a function, for a column the row does not have.
    expect(Object.keys(key)).toEqual(keyColumns);
    expect(JSON.stringify(key)).toBe('{"__proto__":"k1","constructor":null,"id":7}');
    expect(Object.getPrototypeOf(key)).toBe(Object.prototype);
  });

  it('gives every read event of a chunk its own key, in the key columns order', () => {
    const table: TableSchema = {
      schema: 'public',
      name: 't',
      columns: [
        { name: '__proto__', type: { kind: 'string' }, nullable: false },
        { name: 'id', type: { kind: 'int32' }, nullable: false },
      ],
      keyColumns: ['id', '__proto__'],
    };
    const make = rowMaker(['__proto__', 'id']);
    const rows = [make(['a', 1]), make(['b', 2]), make([null, 3])];
    const events = readEvents(table, rows, '0/1', 'c1', new Uint8Array([1, 0, 1]));
    expect(events.map((e) => JSON.stringify(e.key))).toEqual(['{"id":1,"__proto__":"a"}', '{"id":3,"__proto__":null}']);
    expect(events[0]!.key).not.toBe(events[1]!.key);
    expect(events.map((e) => e.chunk)).toEqual(['c1', 'c1']);
    // A table without key columns shares one frozen empty key.
    const keyless = readEvents({ ...table, keyColumns: [] }, rows, '0/1', undefined);
    expect(keyless.map((e) => e.key)).toEqual([{}, {}, {}]);
    expect(Object.isFrozen(keyless[0]!.key)).toBe(true);
  });
});
