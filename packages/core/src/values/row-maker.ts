import type { Row, Value } from '../model.js';

/** Makes the row of one column list from its values, given in the same order. */
export type RowMaker = (values: ArrayLike<Value>) => Row;

/**
 * A maker of rows with the columns `names`, in that order: what a decoder calls once per row
 * after filling one reused array of values.
 *
 * Why not `row[name] = value` in a loop: V8 keeps an object built by stores with computed
 * names in its fast layout only while it has at most 16 properties (4 in the object, then its
 * property array grows by 3 at a time: four more allocations per row). From the 17th column on
 * every row is a hash table, and each later step (key lookups, the JSON envelope's
 * `JSON.stringify`, copies) is several times slower: for a 24-column row, building it and
 * writing it as JSON took 2.3–4.3× the time of a row built by an object literal. The maker is
 * that literal, compiled once per column list (`new Function`; the names go into the code only
 * as JSON string literals), so every row of a table shares one layout with its values inside
 * the object.
 *
 * A column named `__proto__` is defined as an own property (a plain assignment would set the
 * row's prototype instead and lose the value). Where code cannot be generated (Node started
 * with `--disallow-code-generation-from-strings`) rows are built by `defineProperty`-safe
 * stores, as before.
 */
export function rowMaker(names: readonly string[]): RowMaker {
  const id = JSON.stringify(names);
  let make = makers.get(id);
  if (make === undefined) {
    make = compile(names);
    // A long-running process sees few column lists; this only stops an endless stream of DDL from growing it.
    if (makers.size >= MAX_CACHED) makers.clear();
    makers.set(id, make);
  }
  return make;
}

/**
 * The key of a row: its own values of `keyColumns` (null for a column it lacks, never a value
 * inherited from `Object.prototype`), made by {@link rowMaker} so a column called `__proto__`
 * stays a value. One maker per key column list, remembered by the list's identity.
 */
export function keyMaker(keyColumns: readonly string[]): (row: Row) => Row {
  let make = keyMakers.get(keyColumns);
  if (make === undefined) {
    const columns = [...keyColumns];
    const width = columns.length;
    const maker = rowMaker(columns);
    const values: Value[] = new Array(width);
    make = (row) => {
      for (let i = 0; i < width; i++) {
        const column = columns[i]!;
        values[i] = Object.hasOwn(row, column) ? (row[column] ?? null) : null;
      }
      return maker(values);
    };
    keyMakers.set(keyColumns, make);
  }
  return make;
}

const keyMakers = new WeakMap<readonly string[], (row: Row) => Row>();

const MAX_CACHED = 4096;
const makers = new Map<string, RowMaker>();

function compile(names: readonly string[]): RowMaker {
  const fields = names.map((name, i) => `${name === '__proto__' ? '["__proto__"]' : JSON.stringify(name)}: v[${i}]`);
  try {
    return new Function('v', `"use strict";\nreturn {\n${fields.join(',\n')}\n};`) as RowMaker;
  } catch {
    return storesMaker(names);
  }
}

/** The same rows without generated code (exported for its test). */
export function storesMaker(names: readonly string[]): RowMaker {
  const list = [...names];
  return (values) => {
    const row: Row = {};
    for (let i = 0; i < list.length; i++) setRowField(row, list[i]!, values[i] as Value);
    return row;
  };
}

/** `row[name] = value`, but a column named `__proto__` becomes an own property rather than the prototype. */
export function setRowField(row: Row, name: string, value: Value): void {
  if (name === '__proto__')
    Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  else row[name] = value;
}
