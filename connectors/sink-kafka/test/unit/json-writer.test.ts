import { mulberry32 } from '@nanosync/connector-testkit';
import type { ChangeEvent, ChangeOp, LogicalType, Row, TableSchema, Value } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { jsonEnvelopeText } from '../../src/formats/json-writer.js';
import { jsonCodec, toEnvelope } from '../../src/formats/json.js';
import { allTypesEvents } from '../fixtures/all-types.js';

/**
 * The envelope writer against the encoder it replaces, `JSON.stringify(toEnvelope(event))`:
 * byte for byte over many generated tables, rows and events (every logical type, nulls,
 * absent columns, unicode and lone surrogates, bigints, float specials, odd column names),
 * and the same error where the old encoder threw one.
 */

/** A small deterministic generator (the testkit's mulberry32), so a failure repeats with its seed. */
function random(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Random = ReturnType<typeof random>;

const CHARS = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  'ß',
  '中',
  '\u2028',
  '\u2029',
  '😀',
  '\ud800',
  '\udfff',
  '<',
  '&',
  "'",
];

function text(r: Random, max = 12): string {
  let out = '';
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) out += r.chance(0.6) ? String.fromCharCode(97 + r.int(26)) : r.pick(CHARS);
  return out;
}

const SCALAR_TYPES: LogicalType[] = [
  { kind: 'int16' },
  { kind: 'int32' },
  { kind: 'int64' },
  { kind: 'float32' },
  { kind: 'float64' },
  { kind: 'bool' },
  { kind: 'string' },
  { kind: 'bytes' },
  { kind: 'date' },
  { kind: 'time' },
  { kind: 'timetz' },
  { kind: 'timestamp' },
  { kind: 'timestamptz' },
  { kind: 'interval' },
  { kind: 'uuid' },
  { kind: 'json' },
  { kind: 'inet' },
  { kind: 'cidr' },
  { kind: 'macaddr' },
  { kind: 'money' },
  { kind: 'decimal', precision: 12, scale: 3 },
  { kind: 'decimal' },
  { kind: 'enum', values: ['a', 'b'] },
  { kind: 'other', sourceType: 'tsvector' },
];

function logicalType(r: Random): LogicalType {
  if (r.chance(0.12)) return { kind: 'array', items: r.pick(SCALAR_TYPES) };
  return r.pick(SCALAR_TYPES);
}

const FLOATS = [0, -0, 1.5, -2.25, 1e21, 1e-7, 5e-324, Number.MAX_VALUE, Number.NaN, Infinity, -Infinity, 0.1 + 0.2];

/** A value that fits `type` (what sources produce). */
function fitting(r: Random, type: LogicalType): Value {
  switch (type.kind) {
    case 'int16':
      return r.int(65536) - 32768;
    case 'int32':
      return r.chance(0.1) ? -0 : r.int(2 ** 32) - 2 ** 31;
    case 'int64':
      return r.pick([
        () => String(r.int(1e9) - 5e8),
        () => '-9223372036854775808',
        () => '9223372036854775807',
        () => r.int(1e6) - 5e5,
        () => BigInt(r.int(1e9)) * 10_000_000_000n,
      ])() as Value;
    case 'float32':
    case 'float64':
      return r.chance(0.5) ? r.pick(FLOATS) : (r.next() - 0.5) * 10 ** (r.int(40) - 20);
    case 'bool':
      return r.chance(0.5);
    case 'bytes': {
      const bytes = new Uint8Array(r.int(20) + 4);
      for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
      // Sometimes a view into a larger buffer, as a decoder's subarray would be.
      return r.chance(0.3) ? bytes.subarray(2, bytes.length - 1) : bytes;
    }
    case 'date':
      return r.pick(['2024-02-29', 'infinity', '-infinity', '0044-03-15', '+10000-01-01', '-0043-01-01']);
    case 'timestamp':
      return r.pick(['2024-02-29T12:34:56.123456', 'infinity', '1970-01-01T00:00:00.000000']);
    case 'timestamptz':
      return r.pick(['2024-02-29T12:34:56.123456Z', '-infinity']);
    case 'decimal':
      return r.pick(['10.50', '-0.000', 'NaN', 'Infinity', '-Infinity', '123456789012345678901234567890.1']);
    case 'json':
      return r.pick(['{"a": 1.10, "b": [true, null]}', '"text \\" quoted"', '[]', `{"${text(r)}": 1}`, '12.500']);
    case 'uuid':
      return 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
    case 'array': {
      const items: Value[] = [];
      const n = r.int(4);
      for (let i = 0; i < n; i++) {
        if (r.chance(0.2)) items.push(null);
        else if (r.chance(0.15) && type.items.kind !== 'array')
          items.push([fitting(r, type.items), null] as unknown as Value);
        else items.push(fitting(r, type.items));
      }
      return items as unknown as Value;
    }
    default:
      return text(r);
  }
}

/** Mostly fitting values; sometimes null, undefined, or one of another type (an encoding error). */
function value(r: Random, type: LogicalType, wrong: boolean): Value | undefined {
  if (r.chance(0.1)) return null;
  if (r.chance(0.03)) return undefined;
  if (wrong && r.chance(0.05))
    return r.pick([1.5, 'x', true, 10n, new Uint8Array([1]), [1], { a: 1 }, '12a']) as unknown as Value;
  return fitting(r, type);
}

const NAMES = [
  'id',
  'name',
  'toString',
  'constructor',
  'hasOwnProperty',
  'valueOf',
  '',
  'a b',
  'Ünïcödé',
  'x"y',
  'c\\d',
];

function table(r: Random, n: number, oddNames: boolean): TableSchema {
  const columns: TableSchema['columns'] = [];
  const used = new Set<string>();
  for (let i = 0; i < n; i++) {
    let name = r.chance(0.3) ? r.pick(NAMES) : `c${i}_${text(r, 4)}`;
    if (oddNames && r.chance(0.2)) name = r.pick(['1', '10', '0', '__proto__', '01', '4294967295', '-1']);
    if (used.has(name)) name = `${name}#${i}`;
    used.add(name);
    columns.push({ name, type: logicalType(r), nullable: true });
  }
  return {
    schema: r.pick(['public', 'sales', 'Ünï', 'a"b']),
    name: r.pick(['orders', 'order.items', text(r, 6) || 't']),
    columns,
    keyColumns: [columns[0]!.name],
  };
}

function row(r: Random, t: TableSchema, wrong: boolean): Row {
  const out: Row = {};
  // Sometimes the row's keys come in another order than the table's columns.
  const columns = r.chance(0.1) ? [...t.columns].reverse() : t.columns;
  for (const column of columns) {
    if (r.chance(0.08)) continue; // absent (e.g. an unchanged TOAST column)
    const v = value(r, column.type, wrong);
    // A non-enumerable column is still copied by rowToJson (it asks Object.hasOwn).
    const enumerable = !r.chance(0.02);
    if (column.name === '__proto__' || !enumerable)
      Object.defineProperty(out, column.name, { value: v, enumerable, writable: true, configurable: true });
    else out[column.name] = v as Value;
  }
  // Extra properties the table does not have are not written.
  if (r.chance(0.1)) out.not_a_column = 1;
  return out;
}

const OPS: ChangeOp[] = ['insert', 'update', 'delete', 'read', 'truncate'];
const COMMIT_TIMES = [
  undefined,
  '2024-05-01T10:00:00.123456Z',
  '2024-05-01T10:00:00Z',
  '2024-05-01T10:00:00.1+00:00',
  '2024-05-01 10:00:00+00',
  '9999-12-31T23:59:59.999999Z',
  'not a time',
  '',
];

function event(r: Random, t: TableSchema, wrong: boolean): ChangeEvent {
  const op = r.pick(OPS);
  const keyName = t.columns[0]!.name;
  const e: ChangeEvent = {
    op,
    table: t,
    key: op === 'truncate' ? {} : { [keyName]: fitting(r, t.columns[0]!.type) },
    position: r.chance(0.8) ? `0/${r.int(1e8).toString(16).toUpperCase()}` : text(r),
  };
  const commitTime = r.pick(COMMIT_TIMES);
  if (commitTime !== undefined) e.commitTime = commitTime;
  if (op === 'insert' || op === 'read' || op === 'update') e.after = row(r, t, wrong);
  if ((op === 'update' || op === 'delete') && r.chance(0.5)) e.before = row(r, t, wrong);
  if (op === 'update' && r.chance(0.2)) e.unchanged = t.columns.slice(0, 2).map((c) => c.name);
  if (op === 'truncate' && r.chance(0.7))
    e.truncate = r.chance(0.5)
      ? { cascade: r.chance(0.5), restartIdentity: r.chance(0.5) }
      : ({ cascade: true } as ChangeEvent['truncate']);
  if (op === 'read' && r.chance(0.5)) e.chunk = `c${r.int(100)}`;
  return e;
}

/** The old encoder's text, or its error's message. */
function before(e: ChangeEvent): string {
  try {
    return JSON.stringify(toEnvelope(e));
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

function after(e: ChangeEvent): string {
  try {
    return jsonEnvelopeText(e);
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

describe('json envelope writer', () => {
  test('writes the fixtures of every logical type as JSON.stringify(toEnvelope) does', () => {
    for (const e of allTypesEvents) {
      expect(jsonEnvelopeText(e)).toBe(JSON.stringify(toEnvelope(e)));
      expect(jsonCodec.encode(e).value.equals(Buffer.from(JSON.stringify(toEnvelope(e)), 'utf8'))).toBe(true);
    }
  });

  test.each([1, 2, 3, 4, 5, 6, 7, 8])('writes 3,000 generated events byte for byte as before (seed %i)', (seed) => {
    const r = random(seed);
    let errors = 0;
    for (let t = 0; t < 30; t++) {
      const shape = table(r, 1 + r.int(20), seed > 6);
      for (let i = 0; i < 100; i++) {
        const e = event(r, shape, seed % 2 === 0);
        const old = before(e);
        if (old.startsWith('error: ')) errors++;
        expect(after(e), JSON.stringify({ seed, t, i })).toBe(old);
        if (!old.startsWith('error: '))
          expect(Buffer.from(after(e), 'utf8').equals(Buffer.from(old, 'utf8'))).toBe(true);
      }
    }
    // The even seeds put values of the wrong type into rows: some events must fail, as before.
    if (seed % 2 === 0) expect(errors).toBeGreaterThan(0);
  });

  test('lists array-index column names first, as an object does', () => {
    const t: TableSchema = {
      schema: 'public',
      name: 't',
      columns: [
        { name: 'b', type: { kind: 'int32' }, nullable: true },
        { name: '2', type: { kind: 'int32' }, nullable: true },
        { name: '__proto__', type: { kind: 'string' }, nullable: true },
        { name: '1', type: { kind: 'int32' }, nullable: true },
      ],
      keyColumns: ['b'],
    };
    const after: Row = { b: 1, '2': 2, '1': 3 };
    Object.defineProperty(after, '__proto__', { value: 'p', enumerable: true, writable: true, configurable: true });
    const text = jsonEnvelopeText({ op: 'insert', table: t, key: { b: 1 }, after, position: '0/1' });
    expect(text).toBe(
      '{"_ns_op":"INSERT","_ns_table":"public.t","_ns_committed_at":null,"_ns_lsn":"0/1","before":null,"after":{"1":3,"2":2,"b":1,"__proto__":"p"}}',
    );
  });

  test('writes a row of the S1 bench table exactly', () => {
    const t: TableSchema = {
      schema: 'public',
      name: 'bench_s1',
      columns: [
        { name: 'id', type: { kind: 'int64' }, nullable: false },
        { name: 'i1', type: { kind: 'int32' }, nullable: true },
        { name: 'f1', type: { kind: 'float64' }, nullable: true },
        { name: 'd1', type: { kind: 'date' }, nullable: true },
        { name: 's1', type: { kind: 'string' }, nullable: true },
      ],
      keyColumns: ['id'],
    };
    const text = jsonEnvelopeText({
      op: 'read',
      table: t,
      key: { id: '7' },
      after: { id: '7', i1: -12, f1: 0.5, d1: '2001-02-03', s1: 'é"x' },
      position: '0/16B3748',
      chunk: 'c1',
    });
    expect(text).toBe(
      '{"_ns_op":"READ","_ns_table":"public.bench_s1","_ns_committed_at":null,"_ns_lsn":"0/16B3748","before":null,"after":{"id":"7","i1":-12,"f1":0.5,"d1":"2001-02-03","s1":"é\\"x"}}',
    );
  });
});
