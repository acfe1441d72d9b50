/**
 * What the encoders from JSON text share (json-encoded.ts for snapshot chunks, json-changes.ts
 * for stream batches): which tables they take and how a record's key is written from its
 * values' JSON text, and the head of the framed batch (encoded.ts).
 *
 * A table is taken when its records are a plain function of its values' JSON text: a key of
 * columns whose canonical key text (formats/key.ts) is their JSON text, or int64's digits
 * inside the quotes (decimal, float and array keys are not), and column names `JSON.stringify`
 * writes in column order and as given (not an array index, which it moves ahead of the others;
 * not `__proto__` or `toJSON`, which it treats apart). A keyless table's records name the row
 * by their event key, so it is left to the worker encoder too.
 */
import { copyRange, qualifiedName, type TableSchema } from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { MAGIC, putU32 } from './encoded.js';
import { keyColumnsFor, topicFor } from './routing.js';

/**
 * How a key column's JSON text becomes its canonical key text: `Same`, the same text
 * (integers, strings, booleans, bytes, null); `Unquoted`, int64's digits inside the quotes,
 * when they are canonical (no leading zero, not `-0`).
 */
export const KeyText = { Same: 0, Unquoted: 1 } as const;
export type KeyText = (typeof KeyText)[keyof typeof KeyText];

/** A table's records as far as both encoders write them alike. */
export interface TablePlan {
  topic: string;
  /** `schema.table` */
  table: string;
  /** The column names, in column order. */
  names: string[];
  /** Index in the row of each key column, in key order, and how its text is written. */
  keys: number[];
  keyTexts: KeyText[];
}

const UNORDERED = /^(0|[1-9]\d*)$/;

export const bytesOf = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'utf8'));

/** The table's plan, or null when its records are left to the worker encoder (see above). */
export function tablePlan(table: TableSchema, config: KafkaSinkConfig): TablePlan | null {
  const names = table.columns.map((c) => c.name);
  for (const name of names)
    if (typeof name !== 'string' || UNORDERED.test(name) || name === '__proto__' || name === 'toJSON') return null;
  const keyColumns = keyColumnsFor(table, config);
  if (keyColumns.length === 0) return null;
  const keys: number[] = [];
  const keyTexts: KeyText[] = [];
  for (const name of keyColumns) {
    const index = names.indexOf(name);
    if (index < 0) return null;
    const kind = table.columns[index]!.type.kind;
    if (kind === 'int64') keyTexts.push(KeyText.Unquoted);
    else if (kind === 'decimal' || kind === 'float32' || kind === 'float64' || kind === 'array') return null;
    else keyTexts.push(KeyText.Same);
    keys.push(index);
  }
  return { topic: topicFor(table, config), table: qualifiedName(table), names, keys, keyTexts };
}

/**
 * `make`'s plan of each table shape, made the first time it is asked for (a WeakMap, as the
 * sink's routes), the last one asked for at hand.
 */
export function planCache<P>(make: (table: TableSchema) => P | null): (table: TableSchema) => P | null {
  const plans = new WeakMap<TableSchema, P | null>();
  let lastTable: TableSchema | undefined;
  let lastPlan: P | null = null;
  return (table) => {
    if (table === lastTable) return lastPlan;
    let plan = plans.get(table);
    if (plan === undefined) {
      plan = make(table);
      plans.set(table, plan);
    }
    lastTable = table;
    lastPlan = plan;
    return plan;
  };
}

/** `text` as a Buffer (the same bytes, no copy). */
export function asBuffer(text: Uint8Array): Buffer {
  return Buffer.isBuffer(text) ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
}

/** Where value `v`'s text starts: `starts[v]` for rows written as objects (`JsonRows.starts`), else the end of the one before. */
function valueStart(ends: Uint32Array, starts: Uint32Array | undefined, v: number): number {
  return starts !== undefined ? starts[v]! : v === 0 ? 0 : ends[v - 1]!;
}

/**
 * The value of key column `j` a record's key takes: the one in the image whose first value is
 * `first`, else (its text empty: the image does not have the column) the one in the image at
 * `second` (-1: none); -1 when neither image has it.
 */
function keyValue(
  plan: TablePlan,
  ends: Uint32Array,
  first: number,
  second: number,
  j: number,
  starts: Uint32Array | undefined,
): number {
  let v = first + plan.keys[j]!;
  if (ends[v]! > valueStart(ends, starts, v)) return v;
  if (second < 0) return -1;
  v = second + plan.keys[j]!;
  return ends[v]! > valueStart(ends, starts, v) ? v : -1;
}

/**
 * The length of the key (`[`, the values, commas, `]`) taken from the images at `first` and
 * `second` (see `keyValue`), or -1 when a key column is in neither or an int64 key text is not
 * canonical. `starts`: the rows' `JsonRows.starts`, when they are written as objects.
 */
export function keyLength(
  plan: TablePlan,
  text: Uint8Array,
  ends: Uint32Array,
  first: number,
  second: number,
  starts?: Uint32Array,
): number {
  let length = 1 + plan.keys.length;
  for (let j = 0; j < plan.keys.length; j++) {
    const v = keyValue(plan, ends, first, second, j, starts);
    if (v < 0) return -1;
    const from = valueStart(ends, starts, v);
    const to = ends[v]!;
    if (plan.keyTexts[j] === KeyText.Unquoted && text[from] === 34) {
      if (!canonicalDigits(text, from + 1, to - 1)) return -1;
      length += to - from - 2;
    } else length += to - from;
  }
  return length;
}

/** The key `[v1,v2]` into `out` at `at` (`keyLength` found it writable), returning the offset after it. */
export function putKey(
  out: Buffer,
  at: number,
  plan: TablePlan,
  text: Buffer,
  ends: Uint32Array,
  first: number,
  second: number,
  starts?: Uint32Array,
): number {
  out[at++] = 91;
  for (let j = 0; j < plan.keys.length; j++) {
    if (j > 0) out[at++] = 44;
    const v = keyValue(plan, ends, first, second, j, starts);
    let from = valueStart(ends, starts, v);
    let to = ends[v]!;
    if (plan.keyTexts[j] === KeyText.Unquoted && text[from] === 34) {
      from++;
      to--;
    }
    at = copyRange(out, at, text, from, to);
  }
  out[at++] = 93;
  return at;
}

/** `0` or `-`? and digits without a leading zero: what `numberText` keeps as it is. */
function canonicalDigits(text: Uint8Array, from: number, to: number): boolean {
  const first = text[from] === 45 ? from + 1 : from;
  if (first >= to) return false;
  for (let k = first; k < to; k++) if (text[k]! < 48 || text[k]! > 57) return false;
  return text[first] !== 48 || (to - first === 1 && first === from);
}

/** The strings of a frame, numbered in the order `frameRecords` meets them. */
export class FrameStrings {
  readonly numbers = new Map<string, number>();
  /** Every string by its number (one given by `add` may also be in `numbers` under another). */
  readonly #list: string[] = [];
  /** What the frame's head takes: magic, string count, the strings, record count. */
  headBytes = 12;

  intern(s: string): void {
    if (this.numbers.has(s)) return;
    this.numbers.set(s, this.#list.length);
    this.#list.push(s);
    this.headBytes += 4 + Buffer.byteLength(s);
  }

  /**
   * `s` (`byteLength` bytes of UTF-8) as a string of its own, without looking for it among
   * the others: for a string that rarely repeats, such as a change's position, where the
   * lookup costs more than the few bytes a repeat takes. Returns its number.
   */
  add(s: string, byteLength: number): number {
    const n = this.#list.length;
    this.#list.push(s);
    this.headBytes += 4 + byteLength;
    return n;
  }

  number(s: string): number {
    return this.numbers.get(s)!;
  }

  /** The frame's head into `out` (`headBytes` long), then `records` records follow. */
  putHead(out: Buffer, records: number): number {
    let at = putU32(out, 0, MAGIC);
    at = putU32(out, at, this.#list.length);
    for (const s of this.#list) {
      const length = out.write(s, at + 4, 'utf8');
      putU32(out, at, length);
      at += 4 + length;
    }
    return putU32(out, at, records);
  }
}
