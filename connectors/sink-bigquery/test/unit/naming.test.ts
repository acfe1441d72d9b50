import { describe, expect, test } from 'vitest';
import { checkTableNames, columnNameFor, quoteIdentifier, quoteString, tableNameFor } from '../../src/naming.js';

const config = { tablePrefix: '', tableNames: {} as Record<string, string> };
const t = (schema: string, name: string) => ({ schema, name, columns: [], keyColumns: [] });

describe('names', () => {
  test('one table per source table: <prefix><schema>_<table>, odd characters as _', () => {
    expect(tableNameFor(t('public', 'orders'), config)).toBe('public_orders');
    expect(tableNameFor(t('Sales', 'order.items'), { ...config, tablePrefix: 'raw_' })).toBe('raw_Sales_order_items');
    expect(tableNameFor(t('public', 'orders'), { ...config, tableId: 'orders' })).toBe('orders');
    expect(
      tableNameFor(t('public', 'orders'), { ...config, tableId: 'x', tableNames: { 'public.orders': 'renamed' } }),
    ).toBe('renamed');
  });

  test('table_id for several tables, and two tables on one name, are refused', () => {
    expect(() => checkTableNames([t('public', 'a'), t('public', 'b')], { ...config, tableId: 'x' })).toThrow(
      /table_id "x" names one table, but the pipeline has 2/,
    );
    expect(() => checkTableNames([t('a', 'b_c'), t('a_b', 'c')], config)).toThrow(
      /a\.b_c and a_b\.c would both be written to BigQuery table "a_b_c"/,
    );
  });

  test('column names: reserved prefixes and leading digits get c_', () => {
    expect(columnNameFor('_CHANGE_TYPE')).toBe('c__CHANGE_TYPE');
    expect(columnNameFor('_partitiontime')).toBe('c__partitiontime');
    expect(columnNameFor('1st')).toBe('c_1st');
    expect(columnNameFor('größe in €')).toBe('größe in _');
  });

  test('identifiers are quoted with backticks, backticks and backslashes escaped', () => {
    expect(quoteIdentifier('a`b\\c')).toBe('`a\\`b\\\\c`');
    expect(quoteIdentifier('x`; DROP TABLE y; --')).toBe('`x\\`; DROP TABLE y; --`');
    expect(quoteString("it's\\")).toBe("'it\\'s\\\\'");
  });
});
