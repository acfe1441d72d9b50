import type { ChangeEvent, EncodedBatch } from '@nanosync/core';
import { OrderedWorkerPool } from '@nanosync/core/host';
import {
  type KafkaService,
  type SchemaRegistryService,
  startKafka,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import definition from '../../src/index.js';
import { allTypesEvents, allTypesTable } from '../fixtures/all-types.js';
import { type ConsumedRecord, consumeAll, consumeCommitted, createSink, uniqueName } from './helpers.js';

/**
 * Against a real broker (and a real Schema Registry): a topic written by `writeEncoded` with
 * records a real worker pool encoded (the sink's worker module) holds exactly what a topic
 * written by `write()` holds — partition, key, value and headers of every record, in order —
 * for each format, with tombstones, a snapshot chunk, and exactly_once.
 */

let kafka: KafkaService;
let registry: SchemaRegistryService;
let pool: OrderedWorkerPool<{ setup: unknown; events: ChangeEvent[] }, EncodedBatch, { module: string }>;

beforeAll(async () => {
  [kafka, registry, pool] = await Promise.all([
    startKafka(),
    startSchemaRegistry(),
    OrderedWorkerPool.start<{ setup: unknown; events: ChangeEvent[] }, EncodedBatch, { module: string }>({
      name: 'kafka-encode-it',
      module: new URL('../fixtures/encode-worker.ts', import.meta.url),
      size: 2,
      data: { module: definition.workerModule! },
      maxBytesPerWorker: 1 << 20,
      execArgv: ['--import', 'tsx', '--conditions=@nanosync/source'],
    }),
  ]);
}, 600_000);
afterAll(async () => {
  await pool?.close();
  await registry?.[Symbol.asyncDispose]();
  await kafka?.[Symbol.asyncDispose]();
});

/** The events of the test: every type, deletes (tombstones), then a snapshot chunk of 200 rows. */
function events(): ChangeEvent[] {
  const stream = allTypesEvents.filter((e) => e.op !== 'truncate');
  const row = allTypesEvents[0]!.after!;
  const chunk = Array.from(
    { length: 200 },
    (_, i): ChangeEvent => ({
      table: allTypesTable,
      op: 'read',
      key: { id: String(1000 + i) },
      after: { ...row, id: String(1000 + i) },
      position: '0000000001000600:00000000',
      commitTime: '2026-01-01T00:00:00.000000Z',
      chunk: 'public.all_types/0/1',
    }),
  );
  return [...stream, ...chunk];
}

/**
 * A record as a consumer sees it (offsets aside: transaction markers take offsets too). A
 * CloudEvent of a row without a commit time carries the time it was encoded: left out.
 */
const content = (records: ConsumedRecord[]) =>
  records.map((r) => ({
    partition: r.partition,
    key: r.key,
    value: r.value?.toString('hex') ?? null,
    headers: r.headers,
  }));
const withoutEncodeTime = (records: ConsumedRecord[]) =>
  records.map((r) => ({
    ...r,
    value: r.value === null ? null : Buffer.from(r.value.toString('utf8').replace(/"time":"[^"]*"/, '"time":"-"')),
  }));

const CASES: { name: string; properties: () => Record<string, unknown> }[] = [
  { name: 'json', properties: () => ({ message_format: 'json' }) },
  { name: 'avro', properties: () => ({ message_format: 'avro' }) },
  { name: 'protobuf', properties: () => ({ message_format: 'protobuf' }) },
  { name: 'cloudevents', properties: () => ({ message_format: 'cloudevents' }) },
  {
    name: 'avro with schema registry',
    properties: () => ({ message_format: 'avro', schema_registry_url: registry.url }),
  },
  {
    name: 'protobuf with schema registry, exactly_once',
    properties: () => ({
      message_format: 'protobuf',
      schema_registry_url: registry.url,
      delivery: 'exactly_once',
    }),
  },
  { name: 'json, exactly_once', properties: () => ({ message_format: 'json', delivery: 'exactly_once' }) },
];

describe('writeEncoded against a real broker', () => {
  for (const c of CASES) {
    test(`${c.name}: the topic holds what write() puts in it`, async () => {
      const all = events();
      const split = all.findIndex((e) => e.chunk !== undefined);
      const batches = [all.slice(0, split), all.slice(split)];
      const base = { brokers: kafka.brokers.join(','), num_partitions: 3, max_bytes_in_flight: 16384 };

      const inlineTopic = uniqueName('ns-it-inline');
      await using inline = createSink({ ...base, topic: inlineTopic, ...c.properties() });
      await inline.sink.open([allTypesTable]);
      for (const batch of batches) await inline.sink.write(batch);

      const encodedTopic = uniqueName('ns-it-encoded');
      await using encoded = createSink({ ...base, topic: encodedTopic, ...c.properties() });
      await encoded.sink.open([allTypesTable]);
      const setup = await encoded.sink.encoderSetup([allTypesTable]);
      let n = 0;
      let records = 0;
      for await (const batch of pool.map(batches.map((e) => ({ task: { setup, events: e }, bytes: 1 })))) {
        const source = batches[n++]!;
        records += batch.records;
        await encoded.sink.writeEncoded(batch, {
          count: source.length,
          first: source[0]!.position,
          last: source.at(-1)!.position,
          ...(source[0]!.chunk !== undefined ? { chunk: source[0]!.chunk } : {}),
        });
      }

      const eos = c.name.includes('exactly_once');
      const cloud = c.name === 'cloudevents' ? withoutEncodeTime : (r: ConsumedRecord[]) => r;
      const read = (topic: string) =>
        eos ? consumeCommitted(kafka.brokers, topic, { count: records }) : consumeAll(kafka.brokers, topic);
      const expected = content(cloud(await read(inlineTopic)));
      const got = content(cloud(await read(encodedTopic)));
      expect(got).toHaveLength(records);
      expect(expected.length).toBeGreaterThan(all.length); // tombstones included
      expect(got.map((r) => ({ ...r, headers: { ...r.headers } }))).toEqual(expected);
      expect(got.some((r) => r.headers['ns-chunk'] === 'public.all_types/0/1')).toBe(true);
      expect(new Set(got.map((r) => r.partition)).size).toBeGreaterThan(1);
    });
  }
});
