import type { ChangeEvent, ConnectorContext, EncodedBatch, TableSchema } from '@nanosync/core';
import { recordIndexOf } from '@nanosync/core';
import { OrderedWorkerPool } from '@nanosync/core/host';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKafkaSinkConfig } from '../../src/config.js';
import { unframeRecords } from '../../src/encoded.js';
import definition from '../../src/index.js';
import { type KafkaProducer, type OutgoingMessage, tooLargeError } from '../../src/producer.js';
import type { SchemaRegistryClient } from '../../src/registry/client.js';
import { KafkaSink } from '../../src/sink.js';
import { allTypesEvents, allTypesTable } from '../fixtures/all-types.js';
import { FramedRun } from '../../src/packed-records.js';

/**
 * Records encoded in real worker threads by the sink's worker module are the records
 * `write()` sends (topic, key, value, headers, size, event), for every format (registry
 * formats with schema ids from `encoderSetup`), and `writeEncoded` sends them in the same
 * requests as `write()`. The producer is a capturing stand-in (captureProducer) and the
 * Schema Registry an in-memory one (memoryRegistry): the broker-level equality is the
 * integration test's.
 */

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const context: ConnectorContext = { pipeline: 'p', logger: quiet, signal: new AbortController().signal };

/** Sends recorded, one entry per request; `refuse` makes the request holding that event's record fail as too large. */
function captureProducer(compacted: boolean) {
  const sends: OutgoingMessage[][] = [];
  const producer = {
    async connect() {},
    async ensureTopics() {},
    async disconnect() {},
    isCompacted: () => compacted,
    async send(input: OutgoingMessage[] | FramedRun) {
      const messages = input instanceof FramedRun ? input.messages() : input;
      sends.push(messages);
    },
  };
  return { producer: producer as unknown as KafkaProducer, sends };
}

/** An in-memory Schema Registry: ids by subject and schema text, counting registrations. */
function memoryRegistry() {
  const ids = new Map<string, number>();
  const calls: string[] = [];
  const client = {
    url: 'http://registry.invalid',
    async register(subject: string, schema: string) {
      calls.push(subject);
      const key = `${subject}\u0000${schema}`;
      if (!ids.has(key)) ids.set(key, 100 + ids.size);
      return ids.get(key)!;
    },
    close() {},
  };
  return { client: client as unknown as SchemaRegistryClient, calls };
}

/** Events of every kind: all types, a key change (delete + tombstone of the old key), a snapshot chunk. */
function eventsOf(table: TableSchema): ChangeEvent[] {
  const rebased = allTypesEvents.map((e) => ({ ...e, table }));
  const update = rebased.find((e) => e.op === 'update')!;
  return [
    ...rebased,
    { ...update, key: { id: '7' }, before: { ...update.before, id: '6' }, after: { ...update.after, id: '7' } },
    ...[1, 2, 3].map(
      (n): ChangeEvent => ({
        table,
        op: 'read',
        key: { id: String(n) },
        after: { ...rebased[0]!.after, id: String(n) },
        position: '0000000000000001:00000000',
        chunk: 'public.all_types/0/5',
      }),
    ),
  ];
}

const FORMATS: { name: string; properties: Record<string, unknown> }[] = [
  { name: 'json', properties: { message_format: 'json' } },
  { name: 'avro', properties: { message_format: 'avro' } },
  { name: 'protobuf', properties: { message_format: 'protobuf' } },
  { name: 'cloudevents', properties: { message_format: 'cloudevents' } },
  {
    name: 'avro with schema registry',
    properties: { message_format: 'avro', schema_registry_url: 'http://registry.invalid' },
  },
  {
    name: 'protobuf with schema registry',
    properties: { message_format: 'protobuf', schema_registry_url: 'http://registry.invalid' },
  },
];

type EncodePool = OrderedWorkerPool<{ setup: unknown; events: ChangeEvent[] }, EncodedBatch, { module: string }>;
let pool: EncodePool | undefined;
afterAll(async () => {
  await pool?.close();
});

/** Real worker threads (one pool for the file: starting tsx workers is the slow part). */
async function encodeInWorkers(setup: unknown, batches: ChangeEvent[][]): Promise<EncodedBatch[]> {
  pool ??= await OrderedWorkerPool.start({
    name: 'kafka-encode-test',
    module: new URL('../fixtures/encode-worker.ts', import.meta.url),
    size: 2,
    data: { module: definition.workerModule! },
    maxBytesPerWorker: 1 << 20,
    execArgv: ['--import', 'tsx', '--conditions=@nanosync/source'],
  });
  const out: EncodedBatch[] = [];
  for await (const batch of pool.map(batches.map((events) => ({ task: { setup, events }, bytes: 1 })))) out.push(batch);
  return out;
}

/**
 * A record as the broker gets it: header values as bytes, undefined ones dropped. A CloudEvent
 * of a snapshot row (no commit time) carries the time it was encoded (`cloud`): left out.
 */
function wire(m: OutgoingMessage, cloud = false) {
  const value =
    m.value === null
      ? null
      : cloud
        ? Buffer.from(m.value)
            .toString('utf8')
            .replace(/"time":"[^"]*"/, '"time":"-"')
        : Buffer.from(m.value).toString('hex');
  const headers: [string, string][] = [];
  for (const name in m.headers) {
    const v = m.headers[name];
    if (v !== undefined) headers.push([name, Buffer.from(v).toString('hex')]);
  }
  return {
    topic: m.topic,
    key: m.key === null ? null : Buffer.from(m.key).toString('hex'),
    value,
    headers,
    table: m.table,
    keyText: m.keyText,
    size: m.size,
    event: m.event,
  };
}

describe('Kafka records encoded in worker threads', () => {
  for (const format of FORMATS) {
    it(`${format.name}: the worker's records are write()'s records, and writeEncoded sends them alike`, async () => {
      const config = parseKafkaSinkConfig({
        brokers: 'b:9092',
        topic_prefix: 'w.',
        max_bytes_in_flight: 2048,
        ...format.properties,
      });
      const table = structuredClone(allTypesTable);
      const events = eventsOf(table);
      const registry = memoryRegistry();
      const cloud = format.name === 'cloudevents';

      const inline = captureProducer(true);
      const inlineSink = new KafkaSink(config, context, inline.producer, { registryClient: registry.client });
      await inlineSink.open([table]);
      await inlineSink.write(events);

      const main = captureProducer(true);
      const mainSink = new KafkaSink(config, context, main.producer, { registryClient: registry.client });
      await mainSink.open([table]);
      const setup = await mainSink.encoderSetup([table]);
      expect(structuredClone(setup)).toEqual(setup);
      if (config.schemaRegistry) expect(setup.registryIds.length).toBeGreaterThan(0);

      // Two batches: stream events, and the snapshot chunk alone (as core hands them over).
      const split = events.findIndex((e) => e.chunk !== undefined);
      const [stream, chunk] = await encodeInWorkers(setup, [events.slice(0, split), events.slice(split)]);
      const framed = [...unframeRecords(stream!.bytes), ...unframeRecords(chunk!.bytes)].map((r, i) =>
        // The second batch's event indexes count from its own start.
        // Key, value, headers and key text are read from the bytes when asked for (getters).
        wire(
          {
            ...r,
            key: r.key,
            value: r.value,
            headers: r.headers,
            keyText: r.keyText,
            event: i >= stream!.records ? r.event + split : r.event,
          },
          cloud,
        ),
      );
      const expected = inline.sends.flat().map((m) => wire(m, cloud));
      expect(framed).toEqual(expected);
      expect(stream!.records + chunk!.records).toBe(expected.length);
      expect(stream!.size + chunk!.size).toBe(expected.reduce((n, m) => n + m.size, 0));
      expect(expected.some((m) => m.value === null)).toBe(true); // tombstones went through
      expect(expected.some((m) => m.headers.some(([name]) => name === 'ns-chunk'))).toBe(true);

      // writeEncoded: the same records, cut into the same requests as write() would cut them.
      const first = stream!.bytes.slice(0);
      await mainSink.writeEncoded(stream!, {
        count: split,
        first: events[0]!.position,
        last: events[split - 1]!.position,
      });
      const streamOnly = captureProducer(true);
      const streamSink = new KafkaSink(config, context, streamOnly.producer, { registryClient: registry.client });
      await streamSink.open([table]);
      await streamSink.write(events.slice(0, split));
      expect(main.sends.map((s) => s.map((m) => wire(m, cloud)))).toEqual(
        streamOnly.sends.map((s) => s.map((m) => wire(m, cloud))),
      );
      expect(main.sends.length).toBeGreaterThan(1); // max_bytes_in_flight cut it
      expect(Buffer.from(first).equals(Buffer.from(stream!.bytes))).toBe(true); // not modified
    });
  }

  it('a record refused on its own is named by its index in the batch (recordIndex), not as an event', async () => {
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic_prefix: 'w.', message_format: 'json' });
    const table = structuredClone(allTypesTable);
    const events = eventsOf(table).filter((e) => e.op !== 'truncate');
    const { producer } = captureProducer(false);
    const refusing = {
      ...producer,
      async connect() {},
      async ensureTopics() {},
      isCompacted: () => false,
      async send(input: OutgoingMessage[] | FramedRun) {
        const messages = input instanceof FramedRun ? input.messages() : input;
        const bad = messages.find((m) => m.event === 4);
        if (bad) throw tooLargeError(bad, new Error('MESSAGE_TOO_LARGE'));
      },
    } as unknown as KafkaProducer;
    const sink = new KafkaSink(config, context, refusing);
    await sink.open([table]);
    const setup = await sink.encoderSetup([table]);
    const [batch] = await encodeInWorkers(setup, [events]);
    const records = unframeRecords(batch!.bytes.slice(0));
    const err = await sink
      .writeEncoded(batch!, { count: events.length, first: events[0]!.position, last: events.at(-1)!.position })
      .catch((e: unknown) => e);
    expect(recordIndexOf(err)).toBe(records.findIndex((r) => r.event === 4));
    expect((err as { details: Record<string, unknown> }).details.eventIndex).toBeUndefined();
  });

  it('exactly_once: writeEncoded skips what a committed transaction holds and commits what write() commits', async () => {
    const config = parseKafkaSinkConfig({
      brokers: 'b:9092',
      topic_prefix: 'w.',
      message_format: 'json',
      delivery: 'exactly_once',
    });
    const table = structuredClone(allTypesTable);
    const events = eventsOf(table).filter((e) => e.op !== 'truncate');
    const split = events.findIndex((e) => e.chunk !== undefined);
    const stream = events.slice(0, split);
    const chunk = events.slice(split);
    /** A transactional stand-in (txProducer): the broker's checkpoint is `state`; every call is logged. */
    const txProducer = (state: { committed?: string; chunk?: string; replayed?: string }) => {
      const log: unknown[] = [];
      const producer = {
        async connect() {},
        async ensureTopics() {},
        async disconnect() {},
        isCompacted: () => false,
        async beginTransaction() {
          log.push('begin');
          return state.committed;
        },
        get replayedChunk() {
          return state.replayed;
        },
        get committedChunk() {
          return state.chunk;
        },
        async send(input: OutgoingMessage[] | FramedRun) {
          const messages = input instanceof FramedRun ? input.messages() : input;
          // Without `event`: write() numbers the events it did not skip, writeEncoded the batch's.
          log.push(messages.map((m) => ({ ...wire(m), event: undefined })));
        },
        async commitTransaction(position: string, committedChunk?: string) {
          log.push(['commit', position, committedChunk]);
        },
        async abortTransaction() {
          log.push('abort');
        },
        async retryAfter() {
          return false;
        },
      };
      return { producer: producer as unknown as KafkaProducer, log };
    };
    const states = [
      {},
      { committed: stream[2]!.position, chunk: 'c0' },
      { committed: stream.at(-1)!.position, chunk: chunk[0]!.chunk, replayed: chunk[0]!.chunk },
    ];
    for (const state of states) {
      for (const batch of [stream, chunk]) {
        const inline = txProducer(state);
        const inlineSink = new KafkaSink(config, context, inline.producer);
        await inlineSink.open([table]);
        await inlineSink.write(batch);
        const encoded = txProducer(state);
        const sink = new KafkaSink(config, context, encoded.producer);
        await sink.open([table]);
        const [framed] = await encodeInWorkers(await sink.encoderSetup([table]), [batch]);
        await sink.writeEncoded(framed!, {
          count: batch.length,
          first: batch[0]!.position,
          last: batch.at(-1)!.position,
          ...(batch[0]!.chunk !== undefined ? { chunk: batch[0]!.chunk } : {}),
        });
        expect(encoded.log).toEqual(inline.log);
      }
    }
  });
});
