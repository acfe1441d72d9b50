import type { ConnectorContext } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig } from '../../src/config.js';
import { KafkaProducer, type OutgoingMessage, recordSize } from '../../src/producer.js';

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

describe('a send retried after a failure', () => {
  test('is not retried once the pipeline lease expired locally (mayWrite false)', async () => {
    let sends = 0;
    const lease = { valid: true };
    // A stand-in for the client (mock): the first send fails with a network error, as a
    // broker connection dropped while the process was frozen would; the lease ran out meanwhile.
    const mockClient = {
      async send() {
        sends++;
        lease.valid = false;
        throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      },
    };
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const producer = new KafkaProducer({
      config,
      logger: quiet,
      signal: new AbortController().signal,
      sleep: async () => {},
      mayWrite: () => lease.valid,
    });
    (producer as unknown as { producer: unknown }).producer = mockClient;
    const message: OutgoingMessage = {
      topic: 't',
      key: Buffer.from('[1]'),
      value: Buffer.from('{}'),
      headers: {},
      table: 'public.t',
      keyText: '[1]',
      size: 10,
    };
    const err = await producer.send([message]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).message).toContain('lease expired locally; not retrying until renewed');
    expect((err as { retriable?: boolean }).retriable).toBe(true);
    expect(sends).toBe(1);
  });
});
