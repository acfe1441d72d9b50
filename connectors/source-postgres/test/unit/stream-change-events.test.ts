import { describe, expect, it } from 'vitest';
import { encodePosition } from '../../src/position.js';
import { deleteEvent, insertEvent, updateEvent } from '../../src/stream/change-events.js';
import { type PgOutputMessage, decodePgOutput } from '../../src/stream/pgoutput.js';
import { buildRelation, type RelationCatalogInfo } from '../../src/stream/relations.js';
import { TypeCatalog } from '../../src/types/index.js';
import * as fx from './fixtures/pgoutput-messages.js';

const context = { position: encodePosition(0x16b3c4d8n, 1), commitTime: '2024-05-01T12:00:00.123456Z' };
const catalogInfo: RelationCatalogInfo = { notNull: new Set(['id']), primaryKey: ['id'] };

function relationFrom(payload: Buffer, info: RelationCatalogInfo | undefined = catalogInfo) {
  const message = decodePgOutput(payload);
  if (message.tag !== 'relation') throw new Error('not a relation');
  return buildRelation(message, new TypeCatalog(), info);
}

function as<T extends PgOutputMessage['tag']>(payload: Buffer, tag: T): Extract<PgOutputMessage, { tag: T }> {
  const message = decodePgOutput(payload);
  if (message.tag !== tag) throw new Error(`expected ${tag}, got ${message.tag}`);
  return message as Extract<PgOutputMessage, { tag: T }>;
}

describe('stream relations and events', () => {
  it('a Relation message becomes the TableSchema of the events', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    expect(relation.table).toEqual({
      schema: 'public',
      name: 'orders',
      keyColumns: ['id'],
      columns: [
        { name: 'id', type: { kind: 'int64' }, nullable: false, sourceType: 'int8' },
        { name: 'note', type: { kind: 'string' }, nullable: true, sourceType: 'text' },
        { name: 'payload', type: { kind: 'bytes' }, nullable: true, sourceType: 'bytea' },
      ],
    });
  });

  it('insert: canonical values from the server text, key from the identity columns', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const event = insertEvent(relation, as(fx.INSERT, 'insert'), context);
    expect(event).toEqual({
      op: 'insert',
      table: relation.table,
      key: { id: '42' },
      after: { id: '42', note: 'héllo', payload: new Uint8Array([0x00, 0xff]) },
      position: '0000000016B3C4D8:00000001',
      commitTime: '2024-05-01T12:00:00.123456Z',
    });
    expect(insertEvent(relation, as(fx.INSERT_NULL, 'insert'), context).after).toEqual({
      id: '43',
      note: null,
      payload: new Uint8Array(),
    });
  });

  it('update with unchanged TOAST: the column is listed in unchanged and absent from after', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const event = updateEvent(relation, as(fx.UPDATE_TOAST_UNCHANGED, 'update'), context);
    expect(event.after).toEqual({ id: '42', note: 'new' });
    expect(event.after).not.toHaveProperty('payload');
    expect(event.unchanged).toEqual(['payload']);
    expect(event.before).toBeUndefined();
    expect(event.key).toEqual({ id: '42' });
  });

  it('update that changes the key: before holds the old key only, key is the new one', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const event = updateEvent(relation, as(fx.UPDATE_KEY_CHANGED, 'update'), context);
    expect(event.before).toEqual({ id: '42' });
    expect(event.after).toEqual({ id: '43', note: 'x' });
    expect(event.unchanged).toEqual(['payload']);
    expect(event.key).toEqual({ id: '43' });
  });

  it('REPLICA IDENTITY FULL: full before image; the key stays the primary key', () => {
    const relation = relationFrom(fx.RELATION_ORDERS_FULL);
    expect(relation.table.keyColumns).toEqual(['id']);
    const update = updateEvent(relation, as(fx.UPDATE_FULL, 'update'), context);
    expect(update.before).toEqual({ id: '42', note: 'old', payload: new Uint8Array([0xab]) });
    expect(update.after).toEqual({ id: '42', note: 'new' });
    expect(update.unchanged).toEqual(['payload']);
    const removed = deleteEvent(relation, as(fx.DELETE_FULL, 'delete'), context);
    expect(removed).toMatchObject({
      op: 'delete',
      key: { id: '42' },
      before: { id: '42', note: 'old', payload: null },
    });
    expect(removed.after).toBeUndefined();
  });

  it('REPLICA IDENTITY FULL without a primary key: every column is the key', () => {
    const relation = relationFrom(fx.RELATION_ORDERS_FULL, { notNull: new Set(), primaryKey: [] });
    expect(relation.table.keyColumns).toEqual(['id', 'note', 'payload']);
  });

  it('REPLICA IDENTITY INDEX: the identity index is the key (deletes carry nothing else)', () => {
    const message = as(fx.RELATION_ORDERS, 'relation');
    const indexed = buildRelation(
      {
        ...message,
        replicaIdentity: 'index',
        columns: message.columns.map((c) => ({ ...c, isKey: c.name === 'note' })),
      },
      new TypeCatalog(),
      catalogInfo,
    );
    expect(indexed.table.keyColumns).toEqual(['note']);
    const removed = deleteEvent(indexed, as(fx.bytes('44 00004001 4b 0003 6e 74 00000001 61 6e'), 'delete'), context);
    expect(removed.key).toEqual({ note: 'a' });
    expect(removed.before).toEqual({ note: 'a' });
  });

  it('delete with a key tuple: before holds the key columns only', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const event = deleteEvent(relation, as(fx.DELETE_KEY, 'delete'), context);
    expect(event).toMatchObject({ op: 'delete', key: { id: '42' }, before: { id: '42' } });
    expect(Object.keys(event.before ?? {})).toEqual(['id']);
  });

  it('a new Relation message (added and dropped columns) changes the schema of later events', () => {
    const before = relationFrom(fx.RELATION_ORDERS);
    const after = relationFrom(fx.RELATION_ORDERS_ALTERED, { notNull: new Set(['id', 'qty']), primaryKey: ['id'] });
    expect(after.table.columns.map((c) => c.name)).toEqual(['id', 'note', 'qty']);
    expect(after.table.columns[2]).toEqual({
      name: 'qty',
      type: { kind: 'int32' },
      nullable: false,
      sourceType: 'int4',
    });
    const event = insertEvent(after, as(fx.INSERT_ALTERED, 'insert'), context);
    expect(event.after).toEqual({ id: '7', note: null, qty: 1 });
    expect(event.table).toBe(after.table);
    expect(before.table.columns.map((c) => c.name)).toEqual(['id', 'note', 'payload']);
  });

  it('a column called __proto__ is an ordinary field', () => {
    const message = as(
      fx.bytes('52 00004001 7000 7400 64 0001', '01 5f5f70726f746f5f5f00 00000019 ffffffff'),
      'relation',
    );
    const relation = buildRelation(message, new TypeCatalog(), undefined);
    const event = insertEvent(relation, as(fx.bytes('49 00004001 4e 0001 74 00000001 78'), 'insert'), context);
    expect(Object.keys(event.after ?? {})).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(event.after)).toBe(Object.prototype);
    expect(JSON.stringify(event.key)).toBe('{"__proto__":"x"}');
  });

  it('a value that does not fit its type names the table, column and position', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const bad = fx.bytes('49 00004001 4e 0003', '74 00000003 616263', '6e', '6e');
    expect(() => insertEvent(relation, as(bad, 'insert'), context)).toThrow(
      expect.objectContaining({
        code: 'NS_P4010',
        message: expect.stringMatching(/public\.orders.*column "id".*0\/16B3C4D8#1/),
      }),
    );
  });

  it('a tuple whose width differs from its Relation message is a protocol error', () => {
    const relation = relationFrom(fx.RELATION_ORDERS);
    const narrow = as(fx.bytes('49 00004001 4e 0001 74 00000001 37'), 'insert');
    expect(() => insertEvent(relation, narrow, context)).toThrow(
      expect.objectContaining({ code: 'NS_P4009', message: expect.stringMatching(/1 columns.*announced 3/) }),
    );
  });
});
