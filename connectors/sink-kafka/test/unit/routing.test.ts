import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { keyColumnsFor, messageKey, topicFor } from '../../src/routing.js';

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
    expect(topicFor({ schema: 'sales', name: 'items' }, { topic: 'orders-cdc', topicPrefix: 'nanosync.' })).toBe('orders-cdc');
  });

  test('<prefix><schema>_<table> otherwise, dots and odd characters as underscores', () => {
    expect(topicFor(orders, { topicPrefix: 'nanosync.' })).toBe('nanosync.public_orders');
    expect(topicFor({ schema: 'public', name: 'order_items' }, { topicPrefix: 'prod.pg.' })).toBe('prod.pg.public_order_items');
    expect(topicFor({ schema: 'my.schema', name: 'a.b' }, { topicPrefix: '' })).toBe('my_schema_a_b');
    expect(topicFor({ schema: 'Sales', name: 'Ordres "Été"' }, { topicPrefix: 'x-' })).toBe('x-Sales_Ordres___t__');
  });
});

describe('message keys', () => {
  const event = (e: Partial<ChangeEvent>): ChangeEvent => ({ op: 'insert', table: orders, key: { id: '7' }, position: 'p', ...e });

  test('the table key by default, as JSON in the JSON format value forms', () => {
    expect(keyColumnsFor(orders, {})).toEqual(['id']);
    expect(messageKey(event({ after: { id: '7', tenant: 't', status: 'new' } }), ['id'])?.toString()).toBe('{"id":"7"}');
  });

  test('the same bytes for every operation on one row, so they share a partition', () => {
    const cols = keyColumnsFor(orders, { primaryKeys: ['tenant', 'id'] });
    const keys = [
      messageKey(event({ op: 'insert', after: { id: '7', tenant: 't', status: 'new' } }), cols),
      messageKey(event({ op: 'update', before: { id: '7', tenant: 't' }, after: { id: '7', tenant: 't', status: 'paid' } }), cols),
      messageKey(event({ op: 'delete', before: { id: '7', tenant: 't', status: 'paid' } }), cols),
    ].map((k) => k?.toString());
    expect(new Set(keys)).toEqual(new Set(['{"tenant":"t","id":"7"}']));
  });

  test('a table without key gives records without key', () => {
    expect(messageKey(event({ after: { id: '1' } }), [])).toBeNull();
  });
});
