import type { ChangeEvent, ColumnSchema, LogicalType, TableSchema } from '@nanosync/core';
import avro from 'avsc';
import protobuf from 'protobufjs';
import { describe, expect, test } from 'vitest';
import { FRAME_AVRO, FRAME_PROTOBUF, unframe } from '../../src/formats/framing.js';
import {
  avroSchemaOf,
  codecFor,
  decodeAvroMessage,
  decodeProtobufMessage,
  protobufDescriptorOf,
} from '../../src/formats/index.js';
import { columnFieldNumbers, protobufSchemaText } from '../../src/formats/protobuf.js';

const col = (name: string, type: LogicalType): ColumnSchema => ({ name, type, nullable: true });
const table = (columns: ColumnSchema[]): TableSchema => ({ schema: 'public', name: 't', keyColumns: ['id'], columns });

const v1 = table([
  col('id', { kind: 'int32' }),
  col('a', { kind: 'string' }),
  col('b', { kind: 'int32' }),
  col('c', { kind: 'string' }),
  col('d', { kind: 'int64' }),
]);
/** v1 after `ALTER TABLE t DROP COLUMN b`. */
const v2 = table(v1.columns.filter((c) => c.name !== 'b'));

const insert = (t: TableSchema, after: Record<string, unknown>): ChangeEvent => ({
  op: 'insert',
  table: t,
  key: { id: after.id as number },
  after: after as never,
  position: 'p',
});

function protoReader(t: TableSchema) {
  const descriptor = protobufDescriptorOf(codecFor('protobuf').encode(insert(t, { id: 0 })).value);
  return protobuf.Root.fromJSON(descriptor as protobuf.INamespace).lookupType('nanosync.Envelope');
}

function protoRead(reader: protobuf.Type, value: Buffer): Record<string, unknown> {
  const env = reader.toObject(reader.decode(unframe(value, FRAME_PROTOBUF).payload), {
    longs: String,
    defaults: false,
  }) as { after: Record<string, unknown> };
  return env.after;
}

describe('protobuf field numbers', () => {
  test('stay with their column when another is dropped or added', () => {
    const numbers = (t: TableSchema) =>
      Object.fromEntries(t.columns.map((c, i) => [c.name, columnFieldNumbers(t.columns)[i]]));
    const before = numbers(v1);
    const afterDrop = numbers(v2);
    const afterAdd = numbers(table([col('new', { kind: 'bool' }), ...v2.columns]));
    for (const name of ['id', 'a', 'c', 'd']) {
      expect(afterDrop[name]).toBe(before[name]);
      expect(afterAdd[name]).toBe(before[name]);
    }
    expect(Object.values(afterDrop)).not.toContain(before.b);
    expect(new Set(Object.values(before)).size).toBe(5);
  });

  test('an integer column keeps its number and type through int → bigint; a change of kind gets a new one', () => {
    const [asInt] = columnFieldNumbers([col('id', { kind: 'int32' })]);
    const [asBigint] = columnFieldNumbers([col('id', { kind: 'int64' })]);
    const [asText] = columnFieldNumbers([col('id', { kind: 'string' })]);
    expect(asBigint).toBe(asInt);
    expect(asText).not.toBe(asInt);
  });

  test('are valid protobuf numbers, outside 19000–19999', () => {
    const columns = Array.from({ length: 2000 }, (_, i) => col(`c${i}`, { kind: 'int32' }));
    const numbers = columnFieldNumbers(columns);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const n of numbers) {
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(536_870_911);
      expect(n >= 19_000 && n <= 19_999).toBe(false);
    }
  });

  test('a reader compiled before DROP COLUMN b reads a newer message: the other columns keep their values', () => {
    const oldReader = protoReader(v1);
    const newer = codecFor('protobuf').encode(insert(v2, { id: 1, a: 'A', c: 'C', d: '4' })).value;
    expect(protoRead(oldReader, newer)).toEqual({ id: '1', a: 'A', c: 'C', d: '4' });
  });

  test('a reader compiled after DROP COLUMN b reads an older message: b is skipped, c and d are not shifted', () => {
    const newReader = protoReader(v2);
    const older = codecFor('protobuf').encode(insert(v1, { id: 1, a: 'A', b: 2, c: 'C', d: '4' })).value;
    expect(protoRead(newReader, older)).toEqual({ id: '1', a: 'A', c: 'C', d: '4' });
  });
});

describe('generated names never collide', () => {
  const clashing = table([
    col('id', { kind: 'int32' }),
    col('first_name', { kind: 'string' }),
    col('firstName', { kind: 'string' }),
    col('FIRSTNAME', { kind: 'string' }),
    col('arr', { kind: 'array', items: { kind: 'int32' } }),
    col('arr_Item', { kind: 'array', items: { kind: 'string' } }),
    col('Array_int64', { kind: 'array', items: { kind: 'int64' } }),
    col('c_firstName', { kind: 'string' }),
    col('two words', { kind: 'string' }),
    col('two_words', { kind: 'string' }),
  ]);
  const row = {
    id: 1,
    first_name: 'a',
    firstName: 'b',
    FIRSTNAME: 'c',
    arr: [1, null, 3],
    arr_Item: ['x', null],
    Array_int64: ['9007199254740993'],
    c_firstName: 'd',
    'two words': 'e',
    two_words: 'f',
  };
  const event = insert(clashing, row);

  test('protobuf: field names unique even as protoc JSON names, array messages named by type, values round-trip', () => {
    const value = codecFor('protobuf').encode(event).value;
    const descriptor = protobufDescriptorOf(value);
    const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
    const rowType = root.lookupType('nanosync.Row');
    const jsonNames = rowType.fieldsArray.map((f) => f.name.replace(/_/g, '').toLowerCase());
    expect(new Set(jsonNames).size).toBe(jsonNames.length);
    expect(rowType.fields.first_name).toBeDefined();
    const escaped = rowType.fieldsArray.filter((f) => f.comment);
    expect(escaped.map((f) => [f.name, f.comment])).toEqual([
      ['c_firstName_2', 'column "firstName"'],
      ['c_FIRSTNAME_3', 'column "FIRSTNAME"'],
      ['c_two_words', 'column "two words"'],
    ]);
    expect(decodeProtobufMessage(value).after).toEqual(row);
    const text = protobufSchemaText(descriptor);
    expect(text).toContain('message Array_int64 {');
    expect(text).toContain('// column "firstName"');
  });

  test('avro: names valid and unique, the column kept in doc, values round-trip', () => {
    const value = codecFor('avro').encode(event).value;
    const schema = avroSchemaOf(value) as { fields: { name: string; type: unknown }[] };
    const rowType = (
      (schema.fields.find((f) => f.name === 'before')!.type as unknown[])[1] as {
        fields: { name: string; doc?: string }[];
      }
    ).fields;
    for (const f of rowType) expect(f.name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
    expect(new Set(rowType.map((f) => f.name)).size).toBe(rowType.length);
    expect(rowType.find((f) => f.doc === 'column "two words"')).toBeDefined();
    expect(() => avro.Type.forSchema(schema as avro.Schema)).not.toThrow();
    expect(decodeAvroMessage(value).after).toEqual(row);
  });
});

describe('avro schema resolution across DROP COLUMN', () => {
  const types = (t: TableSchema) => {
    const schema = avroSchemaOf(codecFor('avro').encode(insert(t, { id: 0 })).value);
    return avro.Type.forSchema(schema as avro.Schema, { wrapUnions: true });
  };
  const payload = (value: Buffer) => Buffer.from(unframe(value, FRAME_AVRO).payload);
  const after = (record: unknown) =>
    (record as { after: { 'io.nanosync.Row': Record<string, unknown> } }).after['io.nanosync.Row'];

  test('an old reader schema reads a newer message by field name', () => {
    const [oldType, newType] = [types(v1), types(v2)];
    const newer = codecFor('avro').encode(insert(v2, { id: 1, a: 'A', c: 'C', d: '4' })).value;
    const record = oldType.fromBuffer(payload(newer), oldType.createResolver(newType));
    expect(after(record)).toEqual({ id: { int: 1 }, a: { string: 'A' }, b: null, c: { string: 'C' }, d: { long: 4 } });
  });

  test('a new reader schema reads an older message, skipping the dropped column', () => {
    const [oldType, newType] = [types(v1), types(v2)];
    const older = codecFor('avro').encode(insert(v1, { id: 1, a: 'A', b: 2, c: 'C', d: '4' })).value;
    const record = newType.fromBuffer(payload(older), newType.createResolver(oldType));
    expect(after(record)).toEqual({ id: { int: 1 }, a: { string: 'A' }, c: { string: 'C' }, d: { long: 4 } });
  });
});
