import { type ChangeEvent, type LogicalType, NanosyncError, type TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { canonicalKeyValue } from '../../src/formats/key.js';
import { checkTopicCollisions, keyColumnsFor, messageKey, messageKeyOf, topicFor } from '../../src/routing.js';

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'tenant', type: { kind: 'string' }, nullable: false },
    { name: 'status', type: { kind: 'string' }, nullable: true },
  ],
};

describe('topic routing', () => {
  test('one topic for every table when topic is set', () => {
    expect(topicFor(orders, { topic: 'orders-cdc', topicPrefix: 'nanosync.' })).toBe('orders-cdc');
    expect(topicFor({ schema: 'sales', name: 'items' }, { topic: 'orders-cdc', topicPrefix: 'nanosync.' })).toBe(
      'orders-cdc',
    );
  });

  test('<prefix><schema>_<table> otherwise, dots and odd characters as underscores', () => {
    expect(topicFor(orders, { topicPrefix: 'nanosync.' })).toBe('nanosync.public_orders');
    expect(topicFor({ schema: 'public', name: 'order_items' }, { topicPrefix: 'prod.pg.' })).toBe(
      'prod.pg.public_order_items',
    );
    expect(topicFor({ schema: 'my.schema', name: 'a.b' }, { topicPrefix: '' })).toBe('my_schema_a_b');
    expect(topicFor({ schema: 'Sales', name: 'Ordres "Été"' }, { topicPrefix: 'x-' })).toBe('x-Sales_Ordres___t__');
  });
});

describe('message keys', () => {
  const event = (e: Partial<ChangeEvent>): ChangeEvent => ({
    op: 'insert',
    table: orders,
    key: { id: '7' },
    position: 'p',
    ...e,
  });

  test('the table key by default, as a JSON array of canonical values', () => {
    expect(keyColumnsFor(orders, {})).toEqual(['id']);
    expect(messageKey(event({ after: { id: '7', tenant: 't', status: 'new' } }), ['id'])?.toString()).toBe('[7]');
  });

  test('the same bytes for every operation on one row, so they share a partition', () => {
    const cols = keyColumnsFor(orders, { primaryKeys: ['tenant', 'id'] });
    const keys = [
      messageKey(event({ op: 'insert', after: { id: '7', tenant: 't', status: 'new' } }), cols),
      messageKey(
        event({ op: 'update', before: { id: '7', tenant: 't' }, after: { id: '7', tenant: 't', status: 'paid' } }),
        cols,
      ),
      messageKey(event({ op: 'delete', before: { id: '7', tenant: 't', status: 'paid' } }), cols),
    ].map((k) => k?.toString());
    expect(new Set(keys)).toEqual(new Set(['["t",7]']));
  });

  test('a table without key, and a truncate, give records without key', () => {
    expect(messageKey(event({ after: { id: '1' } }), [])).toBeNull();
    expect(messageKey(event({ op: 'truncate', key: {} }), ['id'])).toBeNull();
  });

  test('a key survives ALTER COLUMN … TYPE: int → bigint → numeric give the same bytes', () => {
    const retyped = (type: LogicalType, id: string | number) => {
      const table: TableSchema = { ...orders, columns: [{ name: 'id', type, nullable: false }] };
      return messageKey({ op: 'update', table, key: { id }, after: { id }, position: 'p' }, ['id'])?.toString();
    };
    const keys = [
      retyped({ kind: 'int16' }, 10),
      retyped({ kind: 'int32' }, 10),
      retyped({ kind: 'int64' }, '10'),
      retyped({ kind: 'decimal', precision: 12, scale: 2 }, '10.00'),
      retyped({ kind: 'decimal' }, '0010'),
      retyped({ kind: 'float64' }, 10),
    ];
    expect(new Set(keys)).toEqual(new Set(['[10]']));
  });

  test('a key survives RENAME COLUMN: names are not part of it', () => {
    const renamed: TableSchema = {
      ...orders,
      keyColumns: ['order_id'],
      columns: [{ name: 'order_id', type: { kind: 'int64' }, nullable: false }],
    };
    const before = messageKey(event({ after: { id: '7' } }), ['id']);
    const after = messageKey(
      { op: 'delete', table: renamed, key: { order_id: '7' }, position: 'p' },
      renamed.keyColumns,
    );
    expect(after?.toString()).toBe(before?.toString());
  });

  test("a delete is keyed by its own table schema and key, not by a later one's", () => {
    // The delete was written while the key column was `id`; it is encoded with that schema.
    const deleteBeforeRename: ChangeEvent = { op: 'delete', table: orders, key: { id: '42' }, position: 'p1' };
    expect(messageKey(deleteBeforeRename, keyColumnsFor(orders, {}))?.toString()).toBe('[42]');
  });

  test('canonical forms: exact digits, no exponent, specials and other kinds', () => {
    expect(canonicalKeyValue({ kind: 'int64' }, '-9223372036854775808', 'c')).toBe('-9223372036854775808');
    expect(canonicalKeyValue({ kind: 'decimal' }, '12345678901234567890.123400', 'c')).toBe(
      '12345678901234567890.1234',
    );
    expect(canonicalKeyValue({ kind: 'decimal' }, '-0.00', 'c')).toBe('0');
    expect(canonicalKeyValue({ kind: 'decimal' }, '0.000100', 'c')).toBe('0.0001');
    expect(canonicalKeyValue({ kind: 'decimal' }, 'NaN', 'c')).toBe('"NaN"');
    expect(canonicalKeyValue({ kind: 'float64' }, 1e21, 'c')).toBe('1000000000000000000000');
    expect(canonicalKeyValue({ kind: 'float64' }, 1.5e-7, 'c')).toBe('0.00000015');
    expect(canonicalKeyValue({ kind: 'float64' }, -0, 'c')).toBe('0');
    expect(canonicalKeyValue({ kind: 'float64' }, Number.NEGATIVE_INFINITY, 'c')).toBe('"-Infinity"');
    expect(canonicalKeyValue({ kind: 'uuid' }, '0f8fad5b-d9cb-469f-a165-70867728950e', 'c')).toBe(
      '"0f8fad5b-d9cb-469f-a165-70867728950e"',
    );
    expect(canonicalKeyValue({ kind: 'string' }, 'a"b', 'c')).toBe('"a\\"b"');
    expect(canonicalKeyValue({ kind: 'bytes' }, new Uint8Array([255]), 'c')).toBe('"/w=="');
    expect(canonicalKeyValue({ kind: 'array', items: { kind: 'int32' } }, [1, null], 'c')).toBe('[1,null]');
    expect(() => canonicalKeyValue({ kind: 'int64' }, 'ten', 'c')).toThrow(/not a number/);
  });

  test('integers take the short way to the same canonical text', () => {
    const int64 = { kind: 'int64' } as const;
    expect(canonicalKeyValue(int64, '0', 'c')).toBe('0');
    expect(canonicalKeyValue(int64, '-0', 'c')).toBe('0');
    expect(canonicalKeyValue(int64, '-12', 'c')).toBe('-12');
    expect(canonicalKeyValue(int64, '+12', 'c')).toBe('12');
    expect(canonicalKeyValue(int64, '007', 'c')).toBe('7');
    expect(canonicalKeyValue(int64, '9223372036854775807', 'c')).toBe('9223372036854775807');
    expect(canonicalKeyValue({ kind: 'int32' }, 42, 'c')).toBe('42');
    expect(canonicalKeyValue({ kind: 'int32' }, -0, 'c')).toBe('0');
    expect(canonicalKeyValue({ kind: 'float64' }, 2 ** 53 + 2, 'c')).toBe('9007199254740994');
    expect(canonicalKeyValue({ kind: 'decimal' }, '10', 'c')).toBe('10');
    expect(canonicalKeyValue({ kind: 'decimal' }, '10.0', 'c')).toBe('10');
  });

  test("messageKeyOf, the per-table form the sink uses, gives messageKey's bytes for every image order", () => {
    const cols = ['tenant', 'id'];
    const keyOf = messageKeyOf(orders, cols);
    const cases: ChangeEvent[] = [
      event({ op: 'insert', after: { id: '7', tenant: 't' } }),
      event({ op: 'update', before: { id: '6', tenant: 'u' }, after: { id: '7', tenant: 't' } }),
      event({ op: 'update', before: { id: '6', tenant: 'u' }, after: { id: '7' } }),
      event({ op: 'delete', before: { id: '7', tenant: 't' } }),
      event({ op: 'delete', key: { id: '7', tenant: 't' } }),
      event({ op: 'read', key: { id: '7' }, after: { status: 'x' } }),
      event({ op: 'truncate', key: {} }),
    ];
    const keys = cases.map((e) => keyOf(e)?.toString() ?? null);
    expect(keys).toEqual(cases.map((e) => messageKey(e, cols)?.toString() ?? null));
    expect(keys).toEqual(['["t",7]', '["t",7]', '["u",7]', '["t",7]', '["t",7]', '[null,7]', null]);
    expect(messageKeyOf(orders, [])(cases[0]!)).toBeNull();
  });
});

describe('topic collisions', () => {
  const dotted = { schema: 'public', name: 'order.items' };
  const underscored = { schema: 'public', name: 'order_items' };

  test('two tables mapping to one topic are refused, naming both and the ways out', () => {
    let error: unknown;
    try {
      checkTopicCollisions([dotted, underscored], { topicPrefix: 'nanosync.' });
    } catch (err) {
      error = err;
    }
    expect(NanosyncError.is(error, 'NS_C1001')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('"public.order.items"');
    expect(message).toContain('"public.order_items"');
    expect(message).toContain('"nanosync.public_order_items"');
    expect(message).toContain('table_topics');
    expect(message).toContain('topic');
  });

  test("topics differing only in '.' and '_' collide too (Kafka refuses the second)", () => {
    expect(() =>
      checkTopicCollisions(
        [
          { schema: 'a', name: 'b' },
          { schema: 'a', name: 'c' },
        ],
        { topicPrefix: 'x.' },
      ),
    ).not.toThrow();
    expect(() =>
      checkTopicCollisions([{ schema: 'a', name: 'b' }], { topicPrefix: 'x.', tableTopics: { 'a.c': 'x_a_b' } }),
    ).not.toThrow();
    expect(() =>
      checkTopicCollisions(
        [
          { schema: 'a', name: 'b' },
          { schema: 'a', name: 'c' },
        ],
        { topicPrefix: 'x.', tableTopics: { 'a.c': 'x_a_b' } },
      ),
    ).toThrow(/"x.a_b" and "x_a_b", which Kafka treats as one name/);
  });

  test('table_topics or topic are the ways out; a table seen again is not a collision', () => {
    expect(() =>
      checkTopicCollisions([dotted, underscored], {
        topicPrefix: 'nanosync.',
        tableTopics: { 'public.order.items': 'dotted-items' },
      }),
    ).not.toThrow();
    expect(topicFor(dotted, { topicPrefix: 'nanosync.', tableTopics: { 'public.order.items': 'dotted-items' } })).toBe(
      'dotted-items',
    );
    expect(() => checkTopicCollisions([dotted, underscored], { topic: 'all', topicPrefix: 'nanosync.' })).not.toThrow();
    const known = checkTopicCollisions([dotted], { topicPrefix: 'nanosync.' });
    expect(() => checkTopicCollisions([dotted], { topicPrefix: 'nanosync.' }, known)).not.toThrow();
    expect(() => checkTopicCollisions([underscored], { topicPrefix: 'nanosync.' }, known)).toThrow(/both map/);
  });
});
