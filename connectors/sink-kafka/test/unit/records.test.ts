import type { ChangeEvent, ConnectorContext } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig } from '../../src/config.js';
import { KafkaProducer, type OutgoingMessage, recordSize } from '../../src/producer.js';
import { KafkaSink } from '../../src/sink.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet } as ConnectorContext['logger'];

describe('recordSize', () => {
  test('counts key, value, and every header name and value (strings as UTF-8)', () => {
    const key = Buffer.from('[1]');
    const value = Buffer.from('{"a":1}');
    expect(recordSize(key, value, {})).toBe(24 + 3 + 7);
    expect(recordSize(null, null, { 'ns-op': 'read' })).toBe(24 + 8 + 5 + 4);
    expect(recordSize(null, null, { h: 'é' })).toBe(24 + 8 + 1 + 2);
    expect(recordSize(null, null, { h: Buffer.from([1, 2, 3]) })).toBe(24 + 8 + 1 + 3);
    expect(recordSize(null, null, { h: undefined })).toBe(24 + 8 + 1);
    expect(recordSize(null, null, { h: ['ab', Buffer.from([1])] })).toBe(24 + (8 + 1 + 2) + (8 + 1 + 1));
  });

  test('ignores inherited properties', () => {
    const headers = Object.create({ inherited: 'x' }) as Record<string, string>;
    headers.own = 'y';
    expect(recordSize(null, null, headers)).toBe(24 + 8 + 3 + 1);
  });
});

describe('the records handed to the client', () => {
  /** A stand-in for @platformatic/kafka's Producer (mock): records what `send` was given. */
  function producerWithMockClient() {
    const sent: { key?: Buffer; headers: Map<Buffer, Buffer> }[][] = [];
    const mockClient = {
      async send({ messages }: { messages: { key?: Buffer; headers: Map<Buffer, Buffer> }[] }) {
        sent.push(messages);
        return {};
      },
    };
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const producer = new KafkaProducer({ config, logger: quiet, signal: new AbortController().signal });
    (producer as unknown as { producer: unknown }).producer = mockClient;
    return { producer, sent };
  }
  const message = (headers: OutgoingMessage['headers']): OutgoingMessage => ({
    topic: 't',
    key: Buffer.from('[1]'),
    value: Buffer.from('{}'),
    headers,
    table: 'public.t',
    keyText: '[1]',
    size: 10,
  });
  const text = (headers: Map<Buffer, Buffer>) =>
    Object.fromEntries([...headers].map(([name, value]) => [name.toString(), value.toString()]));

  test('carry each record’s own header values, repeated or changing, in the order given', async () => {
    const { producer, sent } = producerWithMockClient();
    const positions = ['p1', 'p1', 'p2', 'p1', 'p3'];
    const chunks = ['c1', 'c1', 'c1', 'c2', undefined];
    await producer.send(
      positions.map((position, i) =>
        message({
          'ns-table': 'public.t',
          'ns-op': i % 2 ? 'update' : 'insert',
          'ns-position': position,
          'ns-chunk': chunks[i],
        }),
      ),
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]!.map((r) => text(r.headers))).toEqual(
      positions.map((position, i) => ({
        'ns-table': 'public.t',
        'ns-op': i % 2 ? 'update' : 'insert',
        'ns-position': position,
        ...(chunks[i] === undefined ? {} : { 'ns-chunk': chunks[i] }),
      })),
    );
    expect(sent[0]!.map((r) => [...r.headers.keys()].map(String))[0]).toEqual([
      'ns-table',
      'ns-op',
      'ns-position',
      'ns-chunk',
    ]);
    // Equal values one after the other share their bytes instead of one Buffer per record.
    const position = (i: number) => [...sent[0]![i]!.headers.values()][2];
    expect(position(1)).toBe(position(0));
    expect(position(2)).not.toBe(position(1));
  });

  test('keep Buffer header values as given', async () => {
    const { producer, sent } = producerWithMockClient();
    const bytes = Buffer.from([0, 255]);
    await producer.send([message({ 'content-type': bytes })]);
    expect([...sent[0]![0]!.headers.values()][0]).toBe(bytes);
  });
});

describe('the pipeline lease (mayWrite) and the sends', () => {
  /** A producer over `mockClient` (a stand-in for the client) whose lease check reads `lease`. */
  function producerWithLease(mockClient: unknown, lease: { valid: boolean }): KafkaProducer {
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const producer = new KafkaProducer({
      config,
      logger: quiet,
      signal: new AbortController().signal,
      sleep: async () => {},
      mayWrite: () => lease.valid,
    });
    (producer as unknown as { producer: unknown }).producer = mockClient;
    return producer;
  }
  const message: OutgoingMessage = {
    topic: 't',
    key: Buffer.from('[1]'),
    value: Buffer.from('{}'),
    headers: {},
    table: 'public.t',
    keyText: '[1]',
    size: 10,
  };
  const failure = (send: Promise<void>) =>
    send.then(
      () => undefined,
      (e: unknown) => e as Error & { retriable?: boolean },
    );

  test('a send that failed is not retried once the lease expired locally', async () => {
    let sends = 0;
    const lease = { valid: true };
    // The first send fails with a network error, as a broker connection dropped while the
    // process was frozen would; the lease ran out meanwhile.
    const producer = producerWithLease(
      {
        async send() {
          sends++;
          lease.valid = false;
          throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
        },
      },
      lease,
    );
    const err = await failure(producer.send([message]));
    expect(err?.message).toContain('lease expired locally; not retrying until renewed');
    expect(err?.retriable).toBe(true);
    expect(sends).toBe(1);
  });

  test('a request after the lease expired locally is not sent: a write of several requests stops there', async () => {
    const sent: unknown[] = [];
    const lease = { valid: true };
    const producer = producerWithLease(
      {
        async send({ messages }: { messages: unknown[] }) {
          sent.push(messages);
          return {};
        },
      },
      lease,
    );
    await producer.send([message]);
    expect(sent).toHaveLength(1);
    // Frozen between two requests of one write, past the lease.
    lease.valid = false;
    const err = await failure(producer.send([message]));
    expect(err?.message).toContain('lease expired locally; not sending until renewed');
    expect(err?.retriable).toBe(true);
    expect(sent).toHaveLength(1);
  });
});

describe('headers shared by records', () => {
  test('records given one headers object get one header map of the client, with its values', async () => {
    const sent: { headers: Map<Buffer, Buffer> }[][] = [];
    const mockClient = {
      async send({ messages }: { messages: { headers: Map<Buffer, Buffer> }[] }) {
        sent.push(messages);
        return {};
      },
    };
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const producer = new KafkaProducer({ config, logger: quiet, signal: new AbortController().signal });
    (producer as unknown as { producer: unknown }).producer = mockClient;
    const shared = { 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p1', 'ns-chunk': 'c1' };
    const sameValues = { ...shared };
    const other = { 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p2' };
    const message = (headers: OutgoingMessage['headers']): OutgoingMessage => ({
      topic: 't',
      key: Buffer.from('[1]'),
      value: Buffer.from('{}'),
      headers,
      table: 'public.t',
      size: 10,
    });
    await producer.send([message(shared), message(shared), message(sameValues), message(other), message(shared)]);
    const maps = sent[0]!.map((r) => r.headers);
    const text = (headers: Map<Buffer, Buffer>) =>
      Object.fromEntries([...headers].map(([name, value]) => [name.toString(), value.toString()]));
    expect(maps[1]).toBe(maps[0]);
    expect(maps[2]).not.toBe(maps[0]);
    expect(maps.map(text)).toEqual([shared, shared, shared, other, shared]);
  });

  test('the sink gives records of one chunk one headers object, and each record its own values and size', async () => {
    const table = {
      schema: 'public',
      name: 't',
      columns: [
        { name: 'id', type: { kind: 'int64' as const }, nullable: false },
        { name: 'v', type: { kind: 'string' as const }, nullable: true },
      ],
      keyColumns: ['id'],
    };
    const stubProducer = { async ensureTopics() {}, isCompacted: () => false };
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const context: ConnectorContext = { pipeline: 'p', logger: quiet, signal: new AbortController().signal };
    const sink = new KafkaSink(config, context, stubProducer as unknown as KafkaProducer);
    const read = (id: number, position: string, chunk?: string): ChangeEvent => ({
      op: 'read',
      table,
      key: { id: String(id) },
      after: { id: String(id), v: 'x'.repeat(id) },
      position,
      ...(chunk === undefined ? {} : { chunk }),
    });
    const events: ChangeEvent[] = [
      read(1, 'p1', 'c1'),
      read(2, 'p1', 'c1'),
      read(3, 'p1', 'c1'),
      read(4, 'p1', 'c2'),
      read(5, 'p1'),
      read(6, 'p1'),
      { op: 'insert', table, key: { id: '7' }, after: { id: '7', v: null }, position: 'p1' },
      { op: 'insert', table, key: { id: '8' }, after: { id: '8', v: null }, position: 'p2' },
      { op: 'delete', table, key: { id: '8' }, position: 'p2' },
    ];
    const records: OutgoingMessage[] = [];
    await sink.encodeEvents(events, async (m) => {
      records.push(m);
    });
    // The delete is followed by its tombstone (tombstones are on by default).
    expect(records.map((r) => r.headers)).toEqual([
      ...[1, 2, 3].map(() => ({ 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p1', 'ns-chunk': 'c1' })),
      { 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p1', 'ns-chunk': 'c2' },
      { 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p1' },
      { 'ns-table': 'public.t', 'ns-op': 'read', 'ns-position': 'p1' },
      { 'ns-table': 'public.t', 'ns-op': 'insert', 'ns-position': 'p1' },
      { 'ns-table': 'public.t', 'ns-op': 'insert', 'ns-position': 'p2' },
      { 'ns-table': 'public.t', 'ns-op': 'delete', 'ns-position': 'p2' },
      { 'ns-table': 'public.t', 'ns-position': 'p2' },
    ]);
    expect(records[1]!.headers).toBe(records[0]!.headers);
    expect(records[2]!.headers).toBe(records[0]!.headers);
    expect(records[3]!.headers).not.toBe(records[0]!.headers);
    expect(records[5]!.headers).toBe(records[4]!.headers);
    expect(records[6]!.headers).not.toBe(records[5]!.headers);
    for (const r of records) expect(r.size).toBe(recordSize(r.key, r.value, r.headers));
  });
});
