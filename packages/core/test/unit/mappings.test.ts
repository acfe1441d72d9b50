import { describe, expect, it } from 'vitest';
import type { TargetMapping } from '../../src/config/types.js';
import type { ChangeEvent, TableSchema } from '../../src/model.js';
import { compareDecimalText, compareValues, createEventMapper, validateMappings } from '../../src/runtime/mappings.js';

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'region', type: { kind: 'string' }, nullable: false },
    { name: 'total', type: { kind: 'decimal' }, nullable: true },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
  keyColumns: ['id'],
};
const other: TableSchema = { ...orders, name: 'other' };

function mapping(m: Omit<TargetMapping, 'tableRef' | 'table'>, table = orders): TargetMapping {
  return { table: `${table.schema}.${table.name}`, tableRef: { schema: table.schema, name: table.name }, ...m };
}

function ev(
  op: ChangeEvent['op'],
  after?: Record<string, string | null>,
  before?: Record<string, string | null>,
  table = orders,
): ChangeEvent {
  const e: ChangeEvent = { op, table, key: { id: (after ?? before)!.id! }, position: 'p' };
  if (after) e.after = after;
  if (before) e.before = before;
  return e;
}

describe('target_mappings', () => {
  it('passes events through untouched when a sink has no mappings, or the table has none', () => {
    expect(createEventMapper([])).toBeUndefined();
    const mapper = createEventMapper([mapping({ columns: ['region'] })])!;
    const events = [ev('insert', { id: '1', region: 'eu', total: '1', note: 'x' }, undefined, other)];
    expect(mapper.mapEvents(events)).toBe(events);
    expect(mapper.mapTable(other)).toBe(other);
  });

  it('projects the listed columns in order and always keeps the key', () => {
    const mapper = createEventMapper([mapping({ columns: ['total', 'region'] })])!;
    const projected = mapper.mapTable(orders);
    expect(projected.columns.map((c) => c.name)).toEqual(['id', 'total', 'region']);
    expect(mapper.mapTable(orders)).toBe(projected);
    const [out] = mapper.mapEvents([
      {
        ...ev('update', { id: '7', region: 'eu', note: 'n' }, { id: '7', region: 'us', total: '3', note: 'm' }),
        unchanged: ['total', 'note'],
      },
    ]);
    expect(out).toMatchObject({
      op: 'update',
      table: projected,
      key: { id: '7' },
      after: { id: '7', region: 'eu' },
      before: { id: '7', total: '3', region: 'us' },
      unchanged: ['total'],
    });
  });

  it('filters inserts and snapshot rows on the new row', () => {
    const mapper = createEventMapper([mapping({ filter: [{ column: 'region', op: 'in', value: ['eu', 'uk'] }] })])!;
    const out = mapper.mapEvents([
      ev('read', { id: '1', region: 'eu' }),
      ev('insert', { id: '2', region: 'us' }),
      ev('insert', { id: '3', region: 'uk' }),
    ]);
    expect(out.map((e) => e.key.id)).toEqual(['1', '3']);
  });

  it('turns an update that leaves the filtered set into a delete, and drops one that stays outside', () => {
    const mapper = createEventMapper([mapping({ filter: [{ column: 'region', op: 'eq', value: 'eu' }] })])!;
    const [leaving, outside, keyOnly, entering] = [
      ev('update', { id: '1', region: 'us' }, { id: '1', region: 'eu', total: null, note: null }),
      ev('update', { id: '2', region: 'us' }, { id: '2', region: 'ca', total: null, note: null }),
      ev('update', { id: '3', region: 'us' }, { id: '3' }),
      ev('update', { id: '4', region: 'eu' }, { id: '4', region: 'us', total: null, note: null }),
    ];
    const out = mapper.mapEvents([leaving!, outside!, keyOnly!, entering!]);
    expect(out.map((e) => [e.op, e.key.id, e.after])).toEqual([
      ['delete', '1', undefined],
      ['delete', '3', undefined],
      ['update', '4', { id: '4', region: 'eu' }],
    ]);
  });

  it('keeps an update whose filter column is an unchanged TOAST value (absent from the row)', () => {
    const mapper = createEventMapper([mapping({ filter: [{ column: 'note', op: 'eq', value: 'x' }] })])!;
    const e = { ...ev('update', { id: '1', region: 'eu' }, { id: '1' }), unchanged: ['note'] };
    expect(mapper.mapEvents([e])).toEqual([e]);
  });

  it('keeps deletes unless a full old row shows the row was never in the set', () => {
    const mapper = createEventMapper([mapping({ filter: [{ column: 'region', op: 'eq', value: 'eu' }] })])!;
    const out = mapper.mapEvents([
      ev('delete', undefined, { id: '1' }),
      ev('delete', undefined, { id: '2', region: 'us' }),
      ev('delete', undefined, { id: '3', region: 'eu' }),
    ]);
    expect(out.map((e) => e.key.id)).toEqual(['1', '3']);
  });

  it('compares int64 and decimal strings exactly, and treats NULL as matching only is_null', () => {
    // Above 2^53: a float comparison would call these equal.
    const big = createEventMapper([mapping({ filter: [{ column: 'id', op: 'gt', value: '9007199254740993' }] })])!;
    expect(
      big
        .mapEvents([
          ev('insert', { id: '9007199254740994', region: 'x' }),
          ev('insert', { id: '9007199254740993', region: 'x' }),
        ])
        .map((e) => e.key.id),
    ).toEqual(['9007199254740994']);
    // A YAML number against an int64 string compares by value, not as text ('10' < '9' as text).
    const small = createEventMapper([mapping({ filter: [{ column: 'id', op: 'gte', value: 9 }] })])!;
    expect(
      small
        .mapEvents([ev('insert', { id: '10', region: 'x' }), ev('insert', { id: '8', region: 'x' })])
        .map((e) => e.key.id),
    ).toEqual(['10']);
    const dec = createEventMapper([mapping({ filter: [{ column: 'total', op: 'gte', value: '10.50' }] })])!;
    expect(
      dec
        .mapEvents([
          ev('insert', { id: '1', region: 'x', total: '10.5' }),
          ev('insert', { id: '2', region: 'x', total: '9.99' }),
          ev('insert', { id: '3', region: 'x', total: '100' }),
          ev('insert', { id: '4', region: 'x', total: null }),
        ])
        .map((e) => e.key.id),
    ).toEqual(['1', '3']);
    const nulls = createEventMapper([mapping({ filter: [{ column: 'note', op: 'is_null' }] })])!;
    expect(
      nulls
        .mapEvents([
          ev('insert', { id: '1', region: 'x', note: null }),
          ev('insert', { id: '2', region: 'x', note: 'n' }),
        ])
        .map((e) => e.key.id),
    ).toEqual(['1']);
    const notEq = createEventMapper([mapping({ filter: [{ column: 'note', op: 'ne', value: 'n' }] })])!;
    expect(
      notEq
        .mapEvents([
          ev('insert', { id: '1', region: 'x', note: null }),
          ev('insert', { id: '2', region: 'x', note: 'm' }),
        ])
        .map((e) => e.key.id),
    ).toEqual(['2']);
  });

  it('orders decimal text without floats', () => {
    expect(compareDecimalText('-12.50', '-12.5')).toBe(0);
    expect(compareDecimalText('0.000', '-0')).toBe(0);
    expect(compareDecimalText('123456789012345678901234567890.1', '123456789012345678901234567890.09')).toBe(1);
    expect(compareDecimalText('-2', '-10')).toBe(1);
    expect(compareValues('2024-01-02', '2024-01-10')).toBe(-1);
    expect(compareValues(5, 5)).toBe(0);
  });

  it('rejects mappings naming unknown tables or columns, with the sink and column', () => {
    expect(() => validateMappings('0:kafka', [mapping({ columns: ['regoin'] })], [orders])).toThrow(
      /sink 0:kafka.*"regoin"/,
    );
    expect(() =>
      validateMappings('0:kafka', [mapping({ filter: [{ column: 'x', op: 'is_null' }] })], [orders]),
    ).toThrow(/"x"/);
    expect(() => validateMappings('0:kafka', [mapping({}, other)], [orders])).toThrow(/public.other/);
    expect(() => validateMappings('0:kafka', [mapping({ columns: ['region'] })], [orders])).not.toThrow();
  });
});
