import {
  type ChangeEvent,
  hasNegativeZero,
  JsonChangeOp,
  type JsonChanges,
  jsonValueText,
  type Row,
  type TableSchema,
} from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { type KafkaSinkConfig, parseKafkaSinkConfig } from '../../src/config.js';
import type { KafkaEncoderSetup } from '../../src/sink.js';
import { createEncoder, createJsonChangeEncoder } from '../../src/worker.js';
import { readFramed } from '../../src/encoded.js';
import { CommitTimesText } from '../../src/json-changes.js';
import { committedAtText } from '../../src/formats/json-writer.js';
import { allTypesTable, nullRow, richRow, rowsOf, specialRow } from '../fixtures/all-types.js';

/**
 * The Kafka sink's encoder of stream batches from their row images' JSON text gives the very
 * framed batch the worker encoder gives for the batch's decoded events (topics, keys,
 * envelopes, key texts, headers, sizes; byte for byte), for inserts, updates and deletes of
 * rows of every logical type, key-only and full old images, unchanged TOAST columns, rows that
 * change their key, with and without tombstones, composite keys, `primary_keys`, a fixed topic
 * and several tables in one batch; and it declines what it does not write alike.
 */

const json = parseKafkaSinkConfig({ brokers: 'b:9092', topic_prefix: 'w.', message_format: 'json' });
const noTombstones: KafkaSinkConfig = { ...json, tombstones: false };

function setupOf(config: KafkaSinkConfig): KafkaEncoderSetup {
  return { config, compacted: [], registryIds: [] };
}

const OPS: Record<string, JsonChangeOp> = {
  insert: JsonChangeOp.Insert,
  update: JsonChangeOp.Update,
  delete: JsonChangeOp.Delete,
};

/**
 * The events as `createJsonChangeWriter` writes them: each image's values' `jsonValueText` in
 * column order, an empty text for a column the image does not have.
 */
function jsonChanges(events: ChangeEvent[]): JsonChanges {
  const parts: Buffer[] = [];
  const images = new Int32Array(2 * events.length);
  let negativeZero = false;
  const image = (table: TableSchema, row: Row | undefined): number => {
    if (row === undefined) return -1;
    const first = parts.length;
    for (const c of table.columns) {
      const has = Object.hasOwn(row, c.name);
      parts.push(Buffer.from(has ? jsonValueText(row[c.name]) : '', 'utf8'));
      negativeZero ||= has && hasNegativeZero(row[c.name]);
    }
    return first;
  };
  events.forEach((e, i) => {
    images[2 * i] = image(e.table, e.before);
    images[2 * i + 1] = image(e.table, e.after);
  });
  const ends = new Uint32Array(parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    at += p.length;
    ends[i] = at;
  });
  return {
    count: events.length,
    ops: Uint8Array.from(events.map((e) => OPS[e.op]!)),
    tables: events.map((e) => e.table),
    positions: events.map((e) => e.position),
    commitTimes: events.map((e) => e.commitTime),
    images,
    text: Buffer.concat(parts),
    ends,
    negativeZero,
  };
}

/**
 * An event as the postgres source decodes it: its key the table's key columns from `after`,
 * else `before`; an update's `unchanged` the columns its `after` lacks.
 */
function change(
  op: 'insert' | 'update' | 'delete',
  table: TableSchema,
  images: { before?: Row; after?: Row },
  n: number,
  commitTime: string | undefined = '2026-03-14T10:22:01.456123Z',
): ChangeEvent {
  const key: Row = {};
  for (const name of table.keyColumns) {
    const from = [images.after, images.before].find((r) => r !== undefined && Object.hasOwn(r, name));
    if (from) key[name] = from[name]!;
  }
  const event: ChangeEvent = { op, table, key, position: `0000000002000000:${String(n).padStart(8, '0')}` };
  if (commitTime !== undefined) event.commitTime = commitTime;
  if (images.before) event.before = images.before;
  if (images.after) {
    event.after = images.after;
    const unchanged = table.columns.map((c) => c.name).filter((name) => !Object.hasOwn(images.after!, name));
    if (op === 'update' && unchanged.length > 0) event.unchanged = unchanged;
  }
  return event;
}

const without = (row: Row, ...names: string[]): Row =>
  Object.fromEntries(Object.entries(row).filter(([name]) => !names.includes(name)));
const only = (row: Row, ...names: string[]): Row =>
  Object.fromEntries(Object.entries(row).filter(([name]) => names.includes(name)));

/** Asserts the JSON-text encoder's batch is the worker encoder's; returns how many records it holds. */
async function expectSameBytes(config: KafkaSinkConfig, events: ChangeEvent[]): Promise<number> {
  const setup = setupOf(config);
  const expected = await createEncoder(setup)(events);
  const got = createJsonChangeEncoder(setup)!(jsonChanges(events));
  expect(got).toBeDefined();
  expect(Buffer.from(got!.bytes).toString('hex')).toBe(Buffer.from(expected.bytes).toString('hex'));
  expect(got!.records).toBe(expected.records);
  expect(got!.size).toBe(expected.size);
  return got!.records;
}

/** The same batch with tombstones (the default) and without: how many records each holds. */
async function bothWays(events: ChangeEvent[], config: KafkaSinkConfig = json): Promise<[number, number]> {
  return [
    await expectSameBytes({ ...config, tombstones: true }, events),
    await expectSameBytes({ ...config, tombstones: false }, events),
  ];
}

const ordersTable: TableSchema = {
  schema: 'shop',
  name: 'orders',
  keyColumns: ['region', 'order_id'],
  columns: [
    { name: 'order_id', type: { kind: 'int64' }, nullable: false },
    { name: 'region', type: { kind: 'string' }, nullable: false },
    { name: 'total', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};

describe('Kafka sink: stream batches encoded from their row images’ JSON text', () => {
  it('inserts of rows of every logical type', async () => {
    for (const n of [0, 1, 3, 40]) {
      const events = rowsOf(n).map((row, i) => change('insert', allTypesTable, { after: row }, i));
      await bothWays(events);
    }
  });

  it('updates without an old image, and with unchanged TOAST columns left out', async () => {
    const rows = rowsOf(12);
    await bothWays(rows.map((row, i) => change('update', allTypesTable, { after: row }, i)));
    await bothWays(
      rows.map((row, i) =>
        change('update', allTypesTable, { after: i % 2 ? without(row, 'doc', 'raw') : without(row, 'txt') }, i),
      ),
    );
  });

  it('updates that change the key, with a key-only old image: a delete (and tombstone) under the old key first', async () => {
    const rows = rowsOf(6);
    const events = rows.map((row, i) =>
      change(
        'update',
        allTypesTable,
        { before: { id: String(500 + i) }, after: i === 3 ? without(row, 'words') : row },
        i,
      ),
    );
    // Each update: a delete, a tombstone, the update; without tombstones, no tombstone.
    expect(await bothWays(events)).toEqual([18, 12]);
    // A key-only old image with the same key (a change of another identity column): the update alone.
    expect(
      await bothWays([change('update', allTypesTable, { before: { id: rows[0]!.id! }, after: rows[0]! }, 0)]),
    ).toEqual([1, 1]);
  });

  it('updates with a full old image (REPLICA IDENTITY FULL), the key changed or not', async () => {
    const rows = rowsOf(6);
    const events = rows.map((row, i) =>
      change('update', allTypesTable, { before: { ...rows[(i + 1) % 6]!, id: i % 2 ? row.id! : '77' }, after: row }, i),
    );
    // Three of the six moved their row.
    expect(await bothWays(events)).toEqual([12, 9]);
  });

  it('deletes with key-only and full old images', async () => {
    const rows = rowsOf(9);
    const events = rows.map((row, i) => change('delete', allTypesTable, { before: i % 2 ? only(row, 'id') : row }, i));
    expect(await bothWays(events)).toEqual([18, 9]);
  });

  it('composite keys of several kinds, primary_keys, and one topic for every table', async () => {
    const composite: TableSchema = { ...allTypesTable, keyColumns: ['i32', 'txt', 'flag', 'raw', 'day', 'i64'] };
    const keyOnly = (row: Row) => only(row, ...composite.keyColumns);
    const rows = rowsOf(9);
    const mixed = (table: TableSchema, oldImage: (row: Row) => Row) =>
      rows.map((row, i) => {
        const other = rows[(i + 4) % 9]!;
        switch (i % 3) {
          case 0:
            return change('insert', table, { after: row }, i);
          case 1:
            return change('update', table, { before: oldImage(other), after: row }, i);
          default:
            return change('delete', table, { before: oldImage(row) }, i);
        }
      });
    await bothWays(mixed(composite, keyOnly));
    await bothWays(mixed(composite, (row) => row));
    // primary_keys: the old images must hold its columns (a full old image).
    await bothWays(
      mixed(allTypesTable, (row) => row),
      { ...json, primaryKeys: ['uid', 'id'] },
    );
    const oneTopic = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 'everything', message_format: 'json' });
    await bothWays(
      mixed(allTypesTable, (row) => only(row, 'id')),
      oneTopic,
    );
  });

  it('several tables, positions and commit times in one batch, a key change first', async () => {
    const rows = rowsOf(8);
    const order = (id: string, region: string, note?: string): Row => ({
      order_id: id,
      region,
      total: '12.50',
      ...(note === undefined ? {} : { note }),
    });
    const times = [
      '2026-03-14T10:22:01.456123Z',
      undefined,
      '2300-01-01T00:00:00.000000Z', // beyond a safe integer of microseconds: a string
      '2026-03-14 10:22:01.5+00',
      'not a time',
      '',
    ];
    const events: ChangeEvent[] = [
      change('update', ordersTable, { before: order('1', 'eu'), after: order('1', 'us', 'moved') }, 0, times[0]),
      change('insert', allTypesTable, { after: rows[0]! }, 1, times[0]),
      change('insert', ordersTable, { after: order('2', 'eu', 'ünïcode ✓') }, 1, times[1]),
      change('update', ordersTable, { after: without(order('2', 'eu', 'x'), 'note') }, 2, times[1]),
      change('delete', allTypesTable, { before: only(rows[0]!, 'id') }, 3, times[2]),
      change('update', allTypesTable, { before: { id: '1' }, after: rows[1]! }, 3, times[2]),
      change('delete', ordersTable, { before: order('2', 'eu') }, 4, times[3]),
      change('insert', allTypesTable, { after: rows[2]! }, 5, times[4]),
      change('update', ordersTable, { before: order('3', 'eu'), after: order('3', 'eu', 'same key') }, 6, times[5]),
      ...rows.slice(3).map((row, i) => change('insert', allTypesTable, { after: row }, 7 + (i >> 1), times[i % 6])),
    ];
    events[2]!.position = 'pös "7"\\';
    await bothWays(events);
    await bothWays(events.slice(1));
  });

  it('a position that comes back later in the batch, or equals another string of it: the same records', async () => {
    // Positions are numbered without a lookup (a repeat of the one before reuses its number), so
    // a position seen earlier but not just before, or equal to a header name, is stored again:
    // other bytes than the worker encoder's, the same records once read back.
    const rows = rowsOf(4);
    const events = [
      change('insert', allTypesTable, { after: rows[0]! }, 1),
      change('insert', allTypesTable, { after: rows[1]! }, 2),
      change('insert', allTypesTable, { after: rows[2]! }, 1),
      change('insert', allTypesTable, { after: rows[3]! }, 1),
      change('delete', allTypesTable, { before: only(rows[0]!, 'id') }, 2),
    ];
    events[4]!.position = 'ns-table';
    for (const config of [json, noTombstones]) {
      const setup = setupOf(config);
      const expected = await createEncoder(setup)(events);
      const got = createJsonChangeEncoder(setup)!(jsonChanges(events))!;
      expect(Buffer.from(got.bytes).equals(Buffer.from(expected.bytes))).toBe(false);
      const records = (bytes: ArrayBuffer | Uint8Array) =>
        readFramed([bytes], [0])
          .records()
          .map((r) => ({
            topic: r.topic,
            table: r.table,
            key: r.key,
            value: r.value,
            headers: r.headers,
            keyText: r.keyText,
            size: r.size,
            event: r.event,
            position: r.position,
            read: r.read,
            chunk: r.chunk,
          }));
      expect(records(got.bytes)).toEqual(records(expected.bytes));
      expect(records(got.bytes).map((r) => r.position)).toEqual(
        events.flatMap((e) => (e.op === 'delete' && config.tombstones ? [e.position, e.position] : [e.position])),
      );
      expect([got.records, got.size]).toEqual([expected.records, expected.size]);
    }
  });

  it('writes each commit time as the JSON envelope does, seconds shared or not', () => {
    // A buffer of 16 bytes: it grows as texts are added, keeping those added before.
    const texts = new CommitTimesText(16);
    const times = [
      '2026-03-14T10:22:01.456123Z',
      '2026-03-14T10:22:01.000007Z',
      '2026-03-14T10:22:01.999999Z',
      '2026-03-14T10:22:02.000000Z',
      '2001-09-09T01:46:40.000001Z', // a second with one digit more: 10^9
      '2001-09-09T01:46:39.999999Z',
      '1970-01-01T00:00:01.000000Z',
      '1970-01-01T00:00:00.000042Z', // under a second: no digits of its own
      '1969-12-31T23:59:59.500000Z',
      '2255-06-05T23:47:34.740991Z', // the last exact microsecond
      '2300-01-01T00:00:00.000000Z',
      '2026-03-14 10:22:01.5+00',
      'not a time',
      '',
      undefined,
    ];
    const added: [string | undefined, number, number][] = [];
    for (const time of [...times, ...[...times].reverse()]) {
      texts.add(time);
      added.push([time, texts.start, texts.length]);
    }
    // Each text, read where it was said to be once all are added (the buffer grew meanwhile).
    for (const [time, start, length] of added)
      expect([time, texts.bytes.toString('utf8', start, start + length)]).toEqual([time, committedAtText(time)]);
    // The same time twice in a row is one text; after a reset the next one is written at the start.
    const last = added[added.length - 1]!;
    texts.add(times[0]);
    expect([texts.start, texts.length]).toEqual([last[1], last[2]]);
    texts.reset();
    texts.add(times[0]);
    expect(texts.start).toBe(0);
    expect(texts.bytes.toString('utf8', 0, texts.length)).toBe(committedAtText(times[0]));
  });

  it('declines other formats and a registry', () => {
    for (const message_format of ['avro', 'protobuf', 'cloudevents']) {
      const config = parseKafkaSinkConfig({ brokers: 'b:9092', message_format });
      expect(createJsonChangeEncoder(setupOf(config))).toBeUndefined();
    }
    const avro = parseKafkaSinkConfig({
      brokers: 'b:9092',
      message_format: 'avro',
      schema_registry_url: 'http://r:8081',
    });
    expect(createJsonChangeEncoder(setupOf({ ...json, schemaRegistry: avro.schemaRegistry! }))).toBeUndefined();
  });

  it('declines tables whose keys or column names it does not write alike, and keys it cannot take', () => {
    const encode = createJsonChangeEncoder(setupOf(json))!;
    const rows = rowsOf(3);
    for (const keyColumns of [['dec'], ['f64'], ['f32'], ['ints'], []]) {
      const table: TableSchema = { ...allTypesTable, keyColumns };
      const events = rows.map((row, i) => change('insert', table, { after: row }, i));
      expect(encode(jsonChanges(events)), keyColumns.join()).toBeUndefined();
    }
    for (const odd of ['0', '12', '__proto__', 'toJSON']) {
      const table: TableSchema = {
        ...allTypesTable,
        columns: [...allTypesTable.columns, { name: odd, type: { kind: 'string' }, nullable: true }],
      };
      const events = rows.map((row, i) => change('insert', table, { after: { ...row, [odd]: 'x' } }, i));
      expect(encode(jsonChanges(events)), odd).toBeUndefined();
    }
    const insert = (row: Row) => change('insert', allTypesTable, { after: row }, 0);
    // A key column in neither image, an int64 key text that is not canonical.
    const cases: [string, ChangeEvent[]][] = [
      ['no key column', [insert(rows[0]!), change('update', allTypesTable, { after: without(rows[1]!, 'id') }, 1)]],
      ['leading zero', [insert({ ...rows[0]!, id: '007' })]],
      ['minus zero', [change('delete', allTypesTable, { before: { id: '-0' } }, 0)]],
    ];
    for (const [what, events] of cases) expect(encode(jsonChanges(events)), what).toBeUndefined();
    // primary_keys: an update whose key-only old image lacks one of its columns.
    const byUid = createJsonChangeEncoder(setupOf({ ...noTombstones, primaryKeys: ['uid', 'id'] }))!;
    const moved = [change('update', allTypesTable, { before: { id: '5' }, after: rows[0]! }, 0)];
    expect(byUid(jsonChanges(moved))).toBeUndefined();
    // A batch that only declines one table's change is declined whole; the same without it is taken.
    expect(encode(jsonChanges([insert(rows[0]!), insert({ ...rows[1]!, id: '01' })]))).toBeUndefined();
    expect(encode(jsonChanges([insert(rows[0]!), insert(rows[1]!)]))).toBeDefined();
  });

  it('declines shapes the decoded stream does not make', () => {
    const encode = createJsonChangeEncoder(setupOf(json))!;
    const rows = rowsOf(2);
    const events = [
      change('update', allTypesTable, { before: { id: '1' }, after: rows[0]! }, 0),
      change('delete', allTypesTable, { before: rows[1]! }, 1),
    ];
    const reshaped = (edit: (changes: JsonChanges) => void) => {
      const changes = jsonChanges(events);
      edit(changes);
      return encode(changes);
    };
    expect(reshaped(() => {})).toBeDefined();
    // A delete without an old image (its envelope would hold the event's key), or with a new one.
    expect(
      reshaped((c) => {
        c.images[2] = -1;
      }),
    ).toBeUndefined();
    expect(
      reshaped((c) => {
        c.images[3] = c.images[1]!;
      }),
    ).toBeUndefined();
    // An update without a new image; an insert with an old one, or lacking a column.
    expect(
      reshaped((c) => {
        c.images[1] = -1;
      }),
    ).toBeUndefined();
    expect(
      reshaped((c) => {
        c.ops[0] = JsonChangeOp.Insert;
      }),
    ).toBeUndefined();
    const lacking = jsonChanges([change('insert', allTypesTable, { after: without(rows[0]!, 'doc') }, 0)]);
    expect(encode(lacking)).toBeUndefined();
    // An unknown op; an image beyond the values.
    expect(
      reshaped((c) => {
        c.ops[1] = 4;
      }),
    ).toBeUndefined();
    expect(
      reshaped((c) => {
        c.images[2] = c.ends.length - 1;
      }),
    ).toBeUndefined();
  });
});
