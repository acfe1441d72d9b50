import { type ChangeEvent, NanosyncError, type TableSchema, qualifiedName } from '@nanosync/core';
import { startKafka } from '@nanosync/testcontainers';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { COMPRESSIONS } from '../../src/compression.js';
import { beforeImage } from '../../src/formats/codec.js';
import { MESSAGE_FORMATS, codecFor } from '../../src/formats/index.js';
import { allTypesEvents, allTypesTable } from '../fixtures/all-types.js';
import { consumeAll, createSink, createTopic, decompressedBatches, topicPartitions, uniqueName } from './helpers.js';

const { CompressionTypes } = kafkajs;
const COMPRESSION_TYPE = {
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
} as const;

let kafka: Awaited<ReturnType<typeof startKafka>>;
let brokers: string;

beforeAll(async () => {
  kafka = await startKafka();
  brokers = kafka.brokers.join(',');
});
afterAll(async () => {
  await kafka?.[Symbol.asyncDispose]();
});

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'status', type: { kind: 'string' }, nullable: true },
    { name: 'amount', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
  ],
};
const items: TableSchema = { ...orders, schema: 'sales', name: 'order.items' };

let lsn = 0x1000;
function change(table: TableSchema, op: ChangeEvent['op'], id: number, status?: string): ChangeEvent {
  lsn += 1;
  const row = { id: String(id), status: status ?? null, amount: `${id}.50` };
  const position = `${lsn.toString(16).padStart(16, '0')}:00000000`;
  if (op === 'delete')
    return { table, op, key: { id: String(id) }, before: row, position, commitTime: '2026-01-01T00:00:00.000000Z' };
  return { table, op, key: { id: String(id) }, after: row, position, commitTime: '2026-01-01T00:00:00.000000Z' };
}

describe.each(MESSAGE_FORMATS)('format %s', (format) => {
  test.each(COMPRESSIONS)(
    'compression %s: every logical type produced, consumed and decoded back',
    async (compression) => {
      const topic = uniqueName(`ns-it-${format}-${compression}`);
      await using handle = createSink({ brokers, topic, message_format: format, compression });
      await handle.sink.open([allTypesTable]);
      await handle.sink.write(allTypesEvents);
      const before = new Map(decompressedBatches);
      const records = await consumeAll(kafka.brokers, topic);

      const deletes = allTypesEvents.filter((e) => e.op === 'delete').length;
      expect(records).toHaveLength(allTypesEvents.length + deletes);
      const values = records.filter((r) => r.value !== null);
      const codec = codecFor(format);
      values.forEach((record, i) => {
        const event = allTypesEvents[i]!;
        const decoded = codec.decode(record.value!, { table: allTypesTable });
        expect(decoded.op).toBe(event.op);
        expect(decoded.position).toBe(event.position);
        expect(decoded.after).toEqual(event.after);
        expect(decoded.before).toEqual(beforeImage(event));
        expect(record.headers['ns-table']).toBe(qualifiedName(allTypesTable));
      });
      // The delete is followed by a tombstone with the same key.
      const tombstone = records.findIndex((r) => r.value === null);
      expect(records[tombstone - 1]?.key).toBe(records[tombstone]?.key);

      if (compression === 'none') {
        for (const [type, count] of decompressedBatches) expect(count, `codec ${type}`).toBe(before.get(type) ?? 0);
      } else {
        const type = COMPRESSION_TYPE[compression];
        expect(decompressedBatches.get(type) ?? 0).toBeGreaterThan(before.get(type) ?? 0);
      }
    },
  );
});

describe('routing and topics', () => {
  test('topic_prefix gives one topic per table, named <prefix><schema>_<table>', async () => {
    const prefix = `${uniqueName('ns-it-prefix')}.`;
    await using handle = createSink({ brokers, topic_prefix: prefix, compression: 'none' });
    await handle.sink.open([orders, items]);
    await handle.sink.write([
      change(orders, 'insert', 1, 'new'),
      change(items, 'insert', 2, 'new'),
      change(orders, 'update', 1, 'paid'),
    ]);
    const orderRecords = await consumeAll(kafka.brokers, `${prefix}public_orders`);
    const itemRecords = await consumeAll(kafka.brokers, `${prefix}sales_order_items`);
    expect(orderRecords.map((r) => JSON.parse(r.value!.toString()).after.status)).toEqual(['new', 'paid']);
    expect(itemRecords.map((r) => r.headers['ns-table'])).toEqual(['sales.order.items']);
  });

  test('topic sends every table to one topic', async () => {
    const topic = uniqueName('ns-it-single');
    await using handle = createSink({ brokers, topic });
    await handle.sink.open([orders, items]);
    await handle.sink.write([change(orders, 'insert', 1), change(items, 'insert', 1)]);
    const records = await consumeAll(kafka.brokers, topic);
    expect(records.map((r) => r.headers['ns-table'])).toEqual(['public.orders', 'sales.order.items']);
  });

  test('auto-created topics get num_partitions', async () => {
    const topic = uniqueName('ns-it-partitions');
    await using handle = createSink({ brokers, topic, num_partitions: 3 });
    await handle.sink.open([orders]);
    expect(await topicPartitions(kafka.brokers, topic)).toBe(3);
  });

  test('with auto_create_topics off, a missing topic is a clear error naming it', async () => {
    const topic = uniqueName('ns-it-missing');
    await using handle = createSink({ brokers, topic, auto_create_topics: false });
    const error = await handle.sink.open([orders]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_K6002')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as Error).message).toContain(`"${topic}"`);
    expect(await topicPartitions(kafka.brokers, topic).catch(() => 0)).toBe(0);
  });

  test('with auto_create_topics off, an existing topic is used', async () => {
    const topic = uniqueName('ns-it-existing');
    await createTopic(kafka.brokers, topic);
    await using handle = createSink({ brokers, topic, auto_create_topics: false });
    await handle.sink.open([orders]);
    await handle.sink.write([change(orders, 'insert', 1)]);
    expect(await consumeAll(kafka.brokers, topic)).toHaveLength(1);
  });
});

describe('delivery', () => {
  test('every change of one key lands on one partition, in order', async () => {
    const topic = uniqueName('ns-it-order');
    await using handle = createSink({ brokers, topic, num_partitions: 4, max_bytes_in_flight: 4096 });
    await handle.sink.open([orders]);
    const events: ChangeEvent[] = [];
    for (let round = 0; round < 20; round++)
      for (let id = 1; id <= 10; id++) events.push(change(orders, round === 0 ? 'insert' : 'update', id, `s${round}`));
    await handle.sink.write(events.slice(0, 100));
    await handle.sink.write(events.slice(100));
    const records = await consumeAll(kafka.brokers, topic);
    expect(records).toHaveLength(events.length);
    const byKey = new Map<string, { partitions: Set<number>; statuses: string[] }>();
    for (const r of records) {
      const entry = byKey.get(r.key!) ?? { partitions: new Set(), statuses: [] };
      entry.partitions.add(r.partition);
      entry.statuses.push(JSON.parse(r.value!.toString()).after.status);
      byKey.set(r.key!, entry);
    }
    expect(byKey.size).toBe(10);
    expect(new Set(records.map((r) => r.partition)).size).toBeGreaterThan(1);
    for (const { partitions, statuses } of byKey.values()) {
      expect(partitions.size).toBe(1);
      expect(statuses).toEqual(Array.from({ length: 20 }, (_, i) => `s${i}`));
    }
    // Sent as packs of records, one per partition and request (src/packed-records.ts).
    expect(handle.logger.lines.filter((l) => l.includes('records packed'))).toHaveLength(1);
  });

  test("each key lands on the Java client's partition (murmur2), as kafkajs placed it", async () => {
    const topic = uniqueName('ns-it-placement');
    await using handle = createSink({ brokers, topic, num_partitions: 6 });
    await handle.sink.open([orders]);
    const events = Array.from({ length: 300 }, (_, i) => change(orders, 'insert', i + 1, 'placed'));
    await handle.sink.write(events);
    const records = await consumeAll(kafka.brokers, topic);
    expect(records).toHaveLength(events.length);
    // kafkajs' default partitioner is the Java client's: toPositive(murmur2(key)) % partitions.
    const java = kafkajs.Partitioners.DefaultPartitioner();
    const partitionMetadata = Array.from({ length: 6 }, (_, i) => ({
      partitionId: i,
      leader: 0,
      partitionErrorCode: 0,
      replicas: [0],
      isr: [0],
    }));
    const misplaced = records.filter(
      (r) => r.partition !== java({ topic, partitionMetadata, message: { key: r.key, value: null } }),
    );
    expect(misplaced).toEqual([]);
    expect(new Set(records.map((r) => r.partition)).size).toBe(6);
    // The first send already went as packs: the producer knew the topic's partitions.
    expect(handle.logger.lines.filter((l) => l.includes('records packed'))).toEqual([
      expect.stringContaining('"records":300,"partitions":6'),
    ]);
  });

  test('an update that changes the key deletes the old key (message + tombstone) before writing the new one', async () => {
    const topic = uniqueName('ns-it-key-change');
    await using handle = createSink({ brokers, topic });
    await handle.sink.open([orders]);
    const moved: ChangeEvent = {
      ...change(orders, 'update', 2, 'moved'),
      before: { id: '1', status: 'old', amount: '1.50' },
    };
    await handle.sink.write([change(orders, 'insert', 1, 'old'), moved, change(orders, 'update', 3, 'same-key')]);
    const records = await consumeAll(kafka.brokers, topic);
    const summary = records.map((r) => [r.key, r.value === null ? null : JSON.parse(r.value.toString())._ns_op]);
    expect(summary).toEqual([
      ['[1]', 'INSERT'],
      ['[1]', 'DELETE'],
      ['[1]', null],
      ['[2]', 'UPDATE'],
      ['[3]', 'UPDATE'],
    ]);
    // The last message of the old key is the tombstone: compaction (and the oracle) drop the row.
    const lastByKey = new Map(records.map((r) => [r.key, r.value]));
    expect(lastByKey.get('[1]')).toBeNull();
  });

  test('a truncate is one record without key; on a compacted topic it is keyed by its table', async () => {
    const truncate: ChangeEvent = {
      table: orders,
      op: 'truncate',
      key: {},
      position: '00000000000F0000:00000000',
      truncate: { cascade: false, restartIdentity: false },
    };
    const plain = uniqueName('ns-it-truncate');
    await using plainSink = createSink({ brokers, topic: plain });
    await plainSink.sink.open([orders]);
    await plainSink.sink.write([change(orders, 'insert', 1), truncate, change(orders, 'insert', 2)]);
    const records = await consumeAll(kafka.brokers, plain);
    expect(records.map((r) => [r.key, r.headers['ns-op']])).toEqual([
      ['[1]', 'insert'],
      [null, 'truncate'],
      ['[2]', 'insert'],
    ]);
    expect(JSON.parse(records[1]!.value!.toString())._ns_op).toBe('TRUNCATE');

    // Kafka refuses keyless records on a compacted topic: there the truncate carries a key no row can have.
    const compacted = uniqueName('ns-it-truncate-compact');
    await createTopic(kafka.brokers, compacted, 1, [{ name: 'cleanup.policy', value: 'compact' }]);
    await using compactSink = createSink({ brokers, topic: compacted, auto_create_topics: false });
    await compactSink.sink.open([orders]);
    await compactSink.sink.write([change(orders, 'insert', 1), truncate]);
    const compactRecords = await consumeAll(kafka.brokers, compacted);
    expect(compactRecords.map((r) => r.key)).toEqual(['[1]', '{"_ns_truncate":"public.orders"}']);
  });

  test('tombstones can be turned off', async () => {
    const topic = uniqueName('ns-it-no-tombstone');
    await using handle = createSink({ brokers, topic, tombstones: false });
    await handle.sink.open([orders]);
    await handle.sink.write([change(orders, 'insert', 1), change(orders, 'delete', 1)]);
    const records = await consumeAll(kafka.brokers, topic);
    expect(records.map((r) => JSON.parse(r.value!.toString())._ns_op)).toEqual(['INSERT', 'DELETE']);
  });

  test('a message larger than the broker accepts is a non-retriable error naming table and key', async () => {
    const big: TableSchema = {
      ...orders,
      name: 'blobs',
      columns: [...orders.columns, { name: 'payload', type: { kind: 'bytes' }, nullable: true }],
    };
    const topic = uniqueName('ns-it-too-large');
    await using handle = createSink({ brokers, topic, compression: 'none', message_format: 'avro' });
    await handle.sink.open([big]);
    const { randomBytes } = await import('node:crypto');
    const events: ChangeEvent[] = [
      { ...change(big, 'insert', 1), after: { id: '1', status: null, amount: null, payload: new Uint8Array(10) } },
      {
        ...change(big, 'insert', 424242),
        after: { id: '424242', status: null, amount: null, payload: new Uint8Array(randomBytes(2 * 1024 * 1024)) },
      },
    ];
    const error = await handle.sink.write(events).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_K6003')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as Error).message).toContain('"public.blobs"');
    expect((error as Error).message).toContain('[424242]');
  });
});
