import {
  type ChangeEvent,
  hasNegativeZero,
  type JsonRows,
  jsonValueText,
  keyMaker,
  type LogicalType,
  type Row,
  rowMaker,
  type TableSchema,
  type Value,
} from '@nanosync/core';
import { jsonRowsAsObjects } from '@nanosync/connector-testkit';
import { describe, expect, it } from 'vitest';
import { encodeLines } from '../../src/encoded.js';
import { encodeJsonRows } from '../../src/json-encoded.js';

/**
 * The file sink's encoder of snapshot chunks from their values' JSON text gives the very
 * bytes `encodeLines` gives for the chunk's `read` events (rows made as the source makes
 * them, keys as core makes them), for random values of every kind, with and without key
 * columns, chunk ids and dropped rows; and it declines (undefined) what it cannot write alike.
 */

let seed = 0x9e3779b9;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;

const TEXTS = [
  'plain',
  'tab\there',
  'new\nline',
  'back\\slash',
  'q"uote',
  'ü✓𝄞',
  '',
  '\u0001\u001f',
  '\u2028',
  'x'.repeat(200),
];
const KINDS: [LogicalType, () => Value][] = [
  [{ kind: 'int32' }, () => int(2 ** 31) - 2 ** 30],
  [{ kind: 'int64' }, () => pick(['9223372036854775807', '-1', '0'])],
  [
    { kind: 'float64' },
    () => pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.1, 1e300, -5e-324]),
  ],
  [{ kind: 'bool' }, () => random() < 0.5],
  [{ kind: 'string' }, () => pick(TEXTS)],
  [{ kind: 'bytes' }, () => Uint8Array.from([int(256), 0, 255])],
  [{ kind: 'array', items: { kind: 'string' } }, () => [pick(TEXTS), null, pick(TEXTS)]],
  [{ kind: 'array', items: { kind: 'float64' } }, () => [1.5, Number.NaN, [2, null]] as Value],
];

function tableOf(names: string[], keyColumns: string[]): TableSchema {
  return {
    schema: 'public',
    name: 'some "table"',
    columns: names.map((name, i) => ({ name, type: KINDS[i % KINDS.length]![0], nullable: true })),
    keyColumns,
  };
}

/** Random rows of `table`, made as the source makes them, and their values' JSON text. */
function rowsOf(table: TableSchema, n: number): { rows: Row[]; json: JsonRows } {
  const make = rowMaker(table.columns.map((c) => c.name));
  const rows: Row[] = [];
  const texts: string[] = [];
  let negativeZero = false;
  for (let r = 0; r < n; r++) {
    const values = table.columns.map((_, i) =>
      random() < 0.15 && !table.keyColumns.includes(table.columns[i]!.name) ? null : KINDS[i % KINDS.length]![1](),
    );
    for (const v of values) {
      texts.push(jsonValueText(v));
      negativeZero ||= hasNegativeZero(v);
    }
    rows.push(make(values));
  }
  const ends = new Uint32Array(texts.length);
  const parts = texts.map((t) => Buffer.from(t, 'utf8'));
  let at = 0;
  parts.forEach((p, i) => {
    at += p.length;
    ends[i] = at;
  });
  return { rows, json: { rows: n, columns: table.columns.length, text: Buffer.concat(parts), ends, negativeZero } };
}

function readEvents(table: TableSchema, rows: Row[], position: string, chunk: string | undefined, keep?: Uint8Array) {
  const key = table.keyColumns.length > 0 ? keyMaker(table.keyColumns) : () => ({});
  const events: ChangeEvent[] = [];
  rows.forEach((row, i) => {
    if (keep !== undefined && keep[i] !== 1) return;
    const event: ChangeEvent = { op: 'read', table, key: key(row), after: row, position };
    if (chunk !== undefined) event.chunk = chunk;
    events.push(event);
  });
  return events;
}

const bytes = (b: ArrayBuffer) => Buffer.from(b);

describe('file sink: chunks encoded from their values’ JSON text', () => {
  it('gives the bytes encodeLines gives for the chunk’s read events', () => {
    const shapes: [string[], string[]][] = [
      [['id', 'i8', 'f', 'b', 'tëxt', 'by', 'ta', 'fa'], ['id']],
      [
        ['a', 'b', 'c', 'd', 'e'],
        ['c', 'a'],
      ],
      [['only'], []],
      [['x "quoted"\\name', 'y'], []],
    ];
    for (const [names, keyColumns] of shapes) {
      const table = tableOf(names, keyColumns);
      for (const n of [0, 1, 37, 400]) {
        const { rows, json } = rowsOf(table, n);
        for (const chunk of [undefined, '3:0000000001A2B3C4/7']) {
          const keep = random() < 0.5 ? Uint8Array.from(rows.map(() => (random() < 0.7 ? 1 : 0))) : undefined;
          const expected = encodeLines(readEvents(table, rows, '0000000016B3C40', chunk, keep));
          // The values alone, and the rows written as objects (JsonRows.starts).
          for (const form of [json, jsonRowsAsObjects(json, names)]) {
            const got = encodeJsonRows(table, form, '0000000016B3C40', chunk, keep);
            expect(got).toBeDefined();
            expect(bytes(got!.bytes).equals(bytes(expected.bytes))).toBe(true);
            expect(got!.records).toBe(expected.records);
            expect(got!.size).toBe(expected.size);
          }
        }
      }
    }
  });

  it('declines a chunk holding -0 and a table with a column JSON.stringify orders apart', () => {
    const table = tableOf(['id', 'i8', 'f'], ['id']);
    const { json } = rowsOf(table, 3);
    expect(encodeJsonRows(table, { ...json, negativeZero: true }, '0/1', undefined, undefined)).toBeUndefined();
    for (const odd of ['1', '0', '__proto__', 'toJSON']) {
      const other = tableOf(['id', odd], ['id']);
      expect(encodeJsonRows(other, rowsOf(other, 2).json, '0/1', undefined, undefined)).toBeUndefined();
    }
    // A name that only looks numeric is written in place.
    const fine = tableOf(['id', '01', '-1'], ['id']);
    const { rows, json: fineJson } = rowsOf(fine, 5);
    const got = encodeJsonRows(fine, fineJson, '0/1', undefined, undefined)!;
    expect(bytes(got.bytes).equals(bytes(encodeLines(readEvents(fine, rows, '0/1', undefined)).bytes))).toBe(true);
  });
});
