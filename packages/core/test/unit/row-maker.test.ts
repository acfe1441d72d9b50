import { describe, expect, it } from 'vitest';
import type { Row, Value } from '../../src/model.js';
import { rowMaker, setRowField, storesMaker } from '../../src/values/row-maker.js';

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
