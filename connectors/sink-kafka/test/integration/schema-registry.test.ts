import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import {
  type KafkaService,
  type SchemaRegistryService,
  kafkaLibDir,
  startKafka,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { KafkaErrorCode } from '../../src/errors.js';
import { SchemaRegistryClient } from '../../src/registry/client.js';
import { readWireHeader } from '../../src/registry/codec.js';
import { decodeAvroPayload } from '../../src/formats/avro.js';
import { allTypesEvents, allTypesTable } from '../fixtures/all-types.js';
import { expectedNumber, insertRow as insert, testPosition } from '../fixtures/events.js';
import { extremeRows, extremesTable } from '../fixtures/extremes.js';
import { consumeAll, createSink, uniqueName } from './helpers.js';
import { type RegistryReaders, javaConsume, registryReaders } from './registry-helpers.js';

/**
 * Avro and Protobuf in the Confluent wire format against a real Confluent-compatible
 * registry (Apicurio Registry's ccompat API, from Maven Central) and a real broker; every
 * record is read back by a Java consumer that decodes it the way Confluent's deserializers
 * do: schema id from the record, schema from the registry, Apache Avro / protobuf-java.
 */

let kafka: KafkaService;
let registry: SchemaRegistryService;
let readers: RegistryReaders | undefined;
let kafkaLib: string;
let client: SchemaRegistryClient;

beforeAll(async () => {
  [kafka, registry, readers, kafkaLib] = await Promise.all([
    startKafka(),
    startSchemaRegistry(),
    registryReaders(),
    kafkaLibDir(),
  ]);
  client = new SchemaRegistryClient({ url: registry.url });
}, 600_000);

afterAll(async () => {
  client?.close();
  await registry?.[Symbol.asyncDispose]();
  await kafka?.[Symbol.asyncDispose]();
});

describe.each(['avro', 'protobuf'] as const)('%s in the registry wire format', (format) => {
  test('every type and extreme value: keys and values decoded by a Java consumer through the registry', async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
    const prefix = uniqueName(`ns-it-sr-${format}`);
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic_prefix: `${prefix}.`,
      message_format: format,
      schema_registry_url: registry.url,
    });
    await handle.sink.open([allTypesTable, extremesTable]);
    // Protobuf's int64 microseconds cannot hold the first row's year-294276 timestamps (the
    // embedded format refuses them too); Avro writes them as text.
    const extremes = (format === 'avro' ? extremeRows : extremeRows.slice(1)).map((row, i) =>
      insert(extremesTable, row, i),
    );
    const events = [...allTypesEvents, ...extremes];
    await handle.sink.write(events);
    const topics = [`${prefix}.public_all_types`, `${prefix}.public_extremes`];

    // Subjects by the default strategy: <topic>-value and <topic>-key.
    for (const topic of topics) {
      expect(await client.versions(`${topic}-value`)).toEqual([1]);
      expect(await client.versions(`${topic}-key`)).toEqual([1]);
    }
    const valueId = (await client.latest(`${topics[0]}-value`))!.id;
    const keyId = (await client.latest(`${topics[0]}-key`))!.id;

    const stored = [...(await consumeAll(kafka.brokers, topics[0]!)), ...(await consumeAll(kafka.brokers, topics[1]!))];
    // Every key and value (tombstones aside) starts with magic 0 and the id the registry gave.
    for (const r of stored) {
      if (r.value && r.topic === topics[0]) expect(readWireHeader(r.value).id).toBe(valueId);
    }
    const allTypesKeys = stored.filter((r) => r.topic === topics[0] && r.key !== null);
    expect(allTypesKeys.length).toBeGreaterThan(0);

    const records = await javaConsume({
      readers,
      kafkaLib,
      brokers: kafka.brokers,
      registryUrl: registry.url,
      topics,
      expected: stored.length,
    });
    expect(records).toHaveLength(stored.length);

    // Values: the ops and positions of every event, in order per topic.
    const values = records.filter((r) => r.op !== 'TOMBSTONE');
    const ofTopic = (t: string) => values.filter((r) => r.topic === t).sort((a, b) => a.offset - b.offset);
    expect(ofTopic(topics[0]!).map((r) => [r.op, r.lsn])).toEqual(
      allTypesEvents.map((e) => [e.op.toUpperCase(), e.position]),
    );
    expect(ofTopic(topics[1]!).map((r) => [r.op, r.lsn])).toEqual(extremes.map((e) => ['INSERT', e.position]));
    for (const r of ofTopic(topics[0]!)) expect(r.valueId).toBe(valueId);

    // Keys: decoded with the key schema (id from the record, schema from the registry).
    const keyed = records.filter((r) => r.topic === topics[0] && r.key !== '');
    expect(keyed.length).toBe(allTypesKeys.length);
    expect(keyed.some((r) => r.key.includes('9223372036854775807'))).toBe(true);
    expect(keyId).not.toBe(valueId);

    // Column values as Java sees them.
    let checked = 0;
    const check = (table: TableSchema, event: ChangeEvent, record: (typeof records)[number]) => {
      const image = (event.after ?? event.before) as Record<string, unknown> | undefined;
      if (!image) return;
      for (const column of table.columns) {
        const field = record.fields.find((f) => f.field === column.name);
        if (!field || !Object.hasOwn(image, column.name)) continue;
        const value = image[column.name];
        if (value === null) {
          expect(field.cls, `${column.name} NULL`).toBe('null');
          checked++;
          continue;
        }
        const number = expectedNumber(column.type, value);
        if (number !== undefined) {
          expect(field.number, `${event.position} ${column.name} = ${String(value)}`).toBe(number);
          checked++;
        } else if (['string', 'uuid', 'enum', 'inet', 'decimal'].includes(column.type.kind)) {
          expect(field.text, `${event.position} ${column.name}`).toBe(String(value));
          checked++;
        } else if (['int16', 'int32', 'int64'].includes(column.type.kind)) {
          expect(field.text, `${event.position} ${column.name}`).toBe(String(value));
          checked++;
        }
      }
    };
    for (const [i, r] of ofTopic(topics[0]!).entries()) check(allTypesTable, allTypesEvents[i]!, r);
    for (const [i, r] of ofTopic(topics[1]!).entries()) check(extremesTable, extremes[i]!, r);
    expect(checked).toBeGreaterThan(60);
  }, 300_000);

  test('schema evolution: added and dropped columns register new versions, old records still decode, an incompatible change stops with subject, rule and column', async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
    const topic = uniqueName(`ns-it-sr-evo-${format}`);
    const subject = `${topic}-value`;
    const v1: TableSchema = {
      schema: 'public',
      name: 'evo',
      keyColumns: ['id'],
      columns: [
        { name: 'id', type: { kind: 'int32' }, nullable: false },
        { name: 'qty', type: { kind: 'int32' }, nullable: true },
      ],
    };
    const v2: TableSchema = {
      ...v1,
      columns: [...v1.columns, { name: 'note', type: { kind: 'string' }, nullable: true }],
    };
    const v3: TableSchema = { ...v1, columns: [v1.columns[0]!, v2.columns[2]!] }; // qty dropped
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic,
      message_format: format,
      schema_registry_url: registry.url,
    });
    await handle.sink.open([v1]);
    await handle.sink.write([insert(v1, { id: 1, qty: 5 }, 1)]);
    // Apicurio's Protobuf check refuses any removed field under BACKWARD; FULL lets
    // additions and removals through. Avro's BACKWARD allows both here.
    await client.setCompatibility(subject, format === 'avro' ? 'BACKWARD' : 'FULL');
    await handle.sink.write([insert(v2, { id: 2, qty: 6, note: 'added' }, 2)]);
    await handle.sink.write([insert(v3, { id: 3, note: 'dropped qty' }, 3)]);
    expect(await client.versions(subject)).toEqual([1, 2, 3]);

    const records = await javaConsume({
      readers,
      kafkaLib,
      brokers: kafka.brokers,
      registryUrl: registry.url,
      topics: [topic],
      expected: 3,
    });
    expect(records.map((r) => r.lsn)).toEqual([1, 2, 3].map(testPosition));
    const fieldsOf = (i: number) => Object.fromEntries(records[i]!.fields.map((f) => [f.field, f.text]));
    expect(fieldsOf(0)).toMatchObject({ id: '1', qty: '5' });
    expect(fieldsOf(1)).toMatchObject({ id: '2', qty: '6', note: 'added' });
    expect(fieldsOf(2)).toMatchObject({ id: '3', note: 'dropped qty' });
    expect(fieldsOf(2)).not.toHaveProperty('qty');
    // Three different writer schemas, one per version.
    expect(new Set(records.map((r) => r.valueId)).size).toBe(3);

    if (format === 'protobuf') {
      // Under BACKWARD, Apicurio refuses the removal of a Protobuf field: the pipeline stops.
      await client.setCompatibility(subject, 'BACKWARD');
      const v4: TableSchema = { ...v3, columns: [v3.columns[0]!] };
      const failure = await handle.sink.write([insert(v4, { id: 4 }, 4)]).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(NanosyncError);
      const error = failure as NanosyncError;
      expect(error.code).toBe(KafkaErrorCode.KafkaSchemaIncompatible);
      expect(error.message).toContain(`subject "${subject}"`);
      expect(error.message).toContain('BACKWARD');
      expect(error.message).toContain('"note" (dropped)');
      expect(await client.versions(subject)).toEqual([1, 2, 3]);
    }
    if (format === 'avro') {
      // Old records decode with our reader too, each with the schema its id names.
      const stored = await consumeAll(kafka.brokers, topic);
      for (const r of stored) {
        const { id, payload } = readWireHeader(r.value!);
        const { schema } = await client.schemaById(id);
        expect(decodeAvroPayload(schema, payload).after?.id).toBe(Number(r.offset) + 1);
      }
      // int → text: BACKWARD refuses it (a new reader cannot read the old int as a string).
      const v4: TableSchema = {
        ...v3,
        columns: [v3.columns[0]!, { name: 'note', type: { kind: 'int32' }, nullable: true }],
      };
      const failure = await handle.sink.write([insert(v4, { id: 4, note: 7 }, 4)]).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(NanosyncError);
      const error = failure as NanosyncError;
      expect(error.code).toBe(KafkaErrorCode.KafkaSchemaIncompatible);
      expect(error.retriable).toBe(false);
      expect(error.message).toContain(`subject "${subject}"`);
      expect(error.message).toContain('BACKWARD');
      expect(error.message).toContain('"note" (type changed)');
      expect(await client.versions(subject)).toEqual([1, 2, 3]);
    }
  }, 300_000);
});

test('subject strategies record_name and topic_record_name name subjects after the per-table record', async () => {
  const topic = uniqueName('ns-it-sr-strategy');
  const table: TableSchema = {
    schema: 'sales',
    name: 'order-lines',
    keyColumns: ['id'],
    columns: [{ name: 'id', type: { kind: 'int64' }, nullable: false }],
  };
  for (const [format, strategy, expected] of [
    ['avro', 'record_name', 'io.nanosync.sales.order_lines.Envelope'],
    ['avro', 'topic_record_name', `${topic}-io.nanosync.sales.order_lines.Envelope`],
    ['protobuf', 'record_name', 'nanosync.sales.order_lines.Envelope'],
  ] as const) {
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic,
      message_format: format,
      schema_registry_url: registry.url,
      subject_name_strategy: strategy,
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(table, { id: '1' }, 1)]);
    expect(await client.versions(expected)).toEqual([1]);
    expect(await client.versions(expected.replace(/Envelope$/, 'Key'))).toEqual([1]);
  }
}, 120_000);

test('exactly_once in registry mode: a batch replayed after a restart is skipped; the Java read_committed consumer decodes each change once', async (context) => {
  if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
  const table: TableSchema = {
    schema: 'public',
    name: 'eos_registry',
    keyColumns: ['id'],
    columns: [
      { name: 'id', type: { kind: 'int32' }, nullable: false },
      { name: 'note', type: { kind: 'string' }, nullable: true },
    ],
  };
  const topics: string[] = [];
  for (const format of ['avro', 'protobuf'] as const) {
    const topic = uniqueName(`ns-it-sr-eos-${format}`);
    topics.push(topic);
    const props = {
      brokers: kafka.brokers.join(','),
      topic,
      message_format: format,
      schema_registry_url: registry.url,
      delivery: 'exactly_once',
      transactional_id: `${topic}-tx`,
    };
    const batch1 = [1, 2, 3].map((n) => insert(table, { id: n, note: `n${n}` }, n));
    const batch2 = [4, 5].map((n) => insert(table, { id: n, note: `n${n}` }, n));
    {
      await using first = createSink(props);
      await first.sink.open([table]);
      await first.sink.write(batch1);
    }
    // A restart whose state store missed the checkpoint: batch 1 comes again before batch 2.
    await using second = createSink(props);
    await second.sink.open([table]);
    await second.sink.write([...batch1, ...batch2]);
  }
  const records = await javaConsume({
    readers,
    kafkaLib,
    brokers: kafka.brokers,
    registryUrl: registry.url,
    topics,
    expected: 10,
    isolation: 'read_committed',
  });
  for (const topic of topics) {
    const seen = records.filter((r) => r.topic === topic);
    expect(seen.map((r) => r.lsn)).toEqual(
      [1, 2, 3, 4, 5].map((n) => `0000000002000000:${String(n).padStart(8, '0')}`),
    );
    expect(seen.map((r) => r.fields.find((f) => f.field === 'note')?.text)).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    expect(await client.versions(`${topic}-value`)).toEqual([1]);
  }
}, 300_000);
