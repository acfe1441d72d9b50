import { type ChangeEvent, type ConnectorContext, eventIndexOf, type TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig } from '../../src/config.js';
import { KafkaErrorCode } from '../../src/errors.js';
import type { KafkaProducer, OutgoingMessage } from '../../src/producer.js';
import { KafkaSink } from '../../src/sink.js';
import { createEncoder } from '../../src/worker.js';
import { FramedRun } from '../../src/packed-records.js';

const table: TableSchema = {
  schema: 'public',
  name: 't',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};
const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

/**
 * Events whose `note` is read only when the event is encoded: `encoded` lists the ids in the
 * order the sink encoded them, and `failAt` makes that event's encoding fail.
 */
function events(count: number, encoded: number[], failAt?: number): ChangeEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const id = i + 1;
    const after = { id } as Record<string, unknown>;
    Object.defineProperty(after, 'note', {
      enumerable: true,
      get() {
        if (id === failAt) throw new Error(`note ${id} cannot be read`);
        if (!encoded.includes(id)) encoded.push(id);
        return 'x'.repeat(200);
      },
    });
    return { table, op: 'insert', key: { id }, after, position: `p${String(id).padStart(4, '0')}` } as ChangeEvent;
  });
}

/**
 * A stand-in for the producer (named as such: a broker cannot be made to hold an
 * acknowledgement until a test lets it go): each send waits until the test settles it, and
 * it records how many sends were outstanding at once and which events were encoded by the
 * time each send was made.
 */
function heldProducer(encoded: number[], requestsInFlight?: number, properties: Record<string, unknown> = {}) {
  const sends: { messages: OutgoingMessage[]; encodedWhenSent: number; settle: (err?: Error) => void }[] = [];
  let outstanding = 0;
  let mostOutstanding = 0;
  const producer = {
    async connect() {},
    async ensureTopics() {},
    async disconnect() {},
    isCompacted: () => false,
    // exactly_once: transactions that always commit.
    async beginTransaction() {
      return undefined;
    },
    async commitTransaction() {},
    async abortTransaction() {},
    replayedChunk: undefined,
    committedChunk: undefined,
    send(input: OutgoingMessage[] | FramedRun): Promise<void> {
      const messages = input instanceof FramedRun ? input.messages() : input;
      if (messages.length === 0) return Promise.resolve();
      outstanding++;
      mostOutstanding = Math.max(mostOutstanding, outstanding);
      return new Promise<void>((resolve, reject) => {
        sends.push({
          messages,
          encodedWhenSent: encoded.length,
          settle: (err) => {
            outstanding--;
            if (err) reject(err);
            else resolve();
          },
        });
      });
    },
  };
  const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't', max_bytes_in_flight: 4096, ...properties });
  const context: ConnectorContext = { pipeline: 'p', logger: quiet, signal: new AbortController().signal };
  const sink = new KafkaSink(
    config,
    context,
    producer as unknown as KafkaProducer,
    requestsInFlight === undefined ? {} : { requestsInFlight },
  );
  return {
    sink,
    sends,
    outstanding: () => outstanding,
    mostOutstanding: () => mostOutstanding,
    maxBytes: config.maxBytesInFlight,
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Settles each send as it comes, `failing` the one with that number (1-based); returns when the write settled. */
async function driveSends(h: ReturnType<typeof heldProducer>, write: Promise<unknown>, failing?: number) {
  let done = false;
  const result = write.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  void result.then(() => {
    done = true;
  });
  let settled = 0;
  while (!done) {
    await tick();
    if (h.sends.length > settled) {
      settled++;
      h.sends[settled - 1]!.settle(settled === failing ? new Error('broker went away') : undefined);
    }
  }
  return result;
}

describe('Kafka sink: the next chunk is encoded while one is in flight', () => {
  test('one send at a time, in order, each within max_bytes_in_flight, the next chunk encoded before the ack', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded);
    await h.sink.open([table]);
    const write = h.sink.write(events(100, encoded));
    await tick();
    // The first chunk is on its way and not acknowledged: the second is already encoded.
    expect(h.sends).toHaveLength(1);
    const first = h.sends[0]!;
    expect(encoded.length).toBeGreaterThan(first.messages.length);
    expect(first.encodedWhenSent).toBeGreaterThanOrEqual(first.messages.length);

    const outcome = await driveSends(h, write);
    expect(outcome).toEqual({ value: undefined });
    expect(h.mostOutstanding()).toBe(1);
    expect(h.sends.length).toBeGreaterThan(3);
    const keys = h.sends.flatMap((s) => s.messages.map((m) => m.key?.toString()));
    expect(keys).toEqual(Array.from({ length: 100 }, (_, i) => `[${i + 1}]`));
    for (const s of h.sends) expect(s.messages.reduce((n, m) => n + m.size, 0)).toBeLessThanOrEqual(h.maxBytes);
  });

  test('the write resolves only once the last chunk is acknowledged', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded);
    await h.sink.open([table]);
    let resolved = false;
    const write = h.sink.write(events(30, encoded)).then(() => {
      resolved = true;
    });
    let settled = 0;
    while (!resolved) {
      await tick();
      if (h.sends.length > settled) {
        expect(resolved).toBe(false);
        h.sends[settled++]!.settle();
      }
    }
    await write;
    expect(h.outstanding()).toBe(0);
    expect(h.sends.flatMap((s) => s.messages)).toHaveLength(30);
  });

  test('a failed send fails the write after the chunk being encoded, and nothing stays in flight', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded);
    await h.sink.open([table]);
    const outcome = await driveSends(h, h.sink.write(events(100, encoded)), 2);
    expect((outcome as { error: Error }).error.message).toBe('broker went away');
    expect(h.sends).toHaveLength(2);
    expect(h.outstanding()).toBe(0);
  });

  test('an event that cannot be encoded while a chunk is in flight: that send ends first, then the event is named', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded);
    await h.sink.open([table]);
    let rejectedWhileSending: number | undefined;
    const write = h.sink.write(events(100, encoded, 40)).catch((error: unknown) => {
      rejectedWhileSending = h.outstanding();
      throw error;
    });
    const outcome = await driveSends(h, write);
    const error = (outcome as { error: unknown }).error;
    expect(error).toMatchObject({ code: KafkaErrorCode.KafkaEncode });
    expect(eventIndexOf(error)).toBe(39);
    expect(rejectedWhileSending).toBe(0);
    // Everything before the event was handed over in order; nothing after it.
    const keys = h.sends.flatMap((s) => s.messages.map((m) => m.key?.toString()));
    expect(keys).toEqual(Array.from({ length: keys.length }, (_, i) => `[${i + 1}]`));
    expect(keys.length).toBeLessThan(40);
  });

  test('a failed send wins over an encoding failure of a later event', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded);
    await h.sink.open([table]);
    // Event 12 is in the second chunk, encoded while the first is in flight; that send fails.
    const outcome = await driveSends(h, h.sink.write(events(100, encoded, 12)), 1);
    expect(h.sends).toHaveLength(1);
    expect(h.sends[0]!.messages.length).toBeLessThan(12);
    expect((outcome as { error: Error }).error.message).toBe('broker went away');
    expect(h.outstanding()).toBe(0);
  });
});

describe('Kafka sink with several requests in flight (test seam requestsInFlight)', () => {
  test('up to that many sends outstanding, handed over in order', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded, 3);
    await h.sink.open([table]);
    const write = h.sink.write(events(100, encoded));
    for (let i = 0; i < 20 && h.sends.length < 3; i++) await tick();
    expect(h.sends).toHaveLength(3);
    expect(h.outstanding()).toBe(3);
    const outcome = await driveSends(h, write);
    expect(outcome).toEqual({ value: undefined });
    expect(h.mostOutstanding()).toBe(3);
    const keys = h.sends.flatMap((s) => s.messages.map((m) => m.key?.toString()));
    expect(keys).toEqual(Array.from({ length: 100 }, (_, i) => `[${i + 1}]`));
  });

  test('when two sends fail, the earliest failure is reported once every send has ended', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded, 3);
    await h.sink.open([table]);
    let outstandingAtRejection: number | undefined;
    const write = h.sink.write(events(100, encoded)).catch((error: unknown) => {
      outstandingAtRejection = h.outstanding();
      throw error;
    });
    for (let i = 0; i < 20 && h.sends.length < 3; i++) await tick();
    // The third send fails first, then the second; the first succeeds last.
    h.sends[2]!.settle(new Error('third failed'));
    await tick();
    h.sends[1]!.settle(new Error('second failed'));
    await tick();
    h.sends[0]!.settle();
    // A send made meanwhile (the first one's place came free) succeeds.
    let settled = 3;
    let done = false;
    const outcome = write.then(
      () => ({}),
      (error: Error) => ({ error }),
    );
    void outcome.then(() => {
      done = true;
    });
    while (!done) {
      await tick();
      while (h.sends.length > settled) h.sends[settled++]!.settle();
    }
    expect(((await outcome) as { error: Error }).error.message).toBe('second failed');
    expect(outstandingAtRejection).toBe(0);
    expect(h.sends.length).toBeLessThan(10);
  });

  test('writeEncoded sends through the same path as write(): that many sends outstanding, in order, each within max_bytes_in_flight', async () => {
    const h = heldProducer([], 3);
    await h.sink.open([table]);
    const list = events(100, []);
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't', max_bytes_in_flight: 4096 });
    const batch = await createEncoder({ config, compacted: [], registryIds: [] })(list);
    const write = h.sink.writeEncoded(batch, {
      count: list.length,
      first: list[0]!.position,
      last: list[99]!.position,
    });
    for (let i = 0; i < 20 && h.sends.length < 3; i++) await tick();
    expect(h.sends).toHaveLength(3);
    expect(h.outstanding()).toBe(3);
    const outcome = await driveSends(h, write);
    expect(outcome).toEqual({ value: undefined });
    expect(h.mostOutstanding()).toBe(3);
    const keys = h.sends.flatMap((s) => s.messages.map((m) => m.key?.toString()));
    expect(keys).toEqual(Array.from({ length: 100 }, (_, i) => `[${i + 1}]`));
    for (const s of h.sends) expect(s.messages.reduce((n, m) => n + m.size, 0)).toBeLessThanOrEqual(h.maxBytes);
  });

  test('exactly_once sends one at a time whatever the seam says', async () => {
    const encoded: number[] = [];
    const h = heldProducer(encoded, 3, { delivery: 'exactly_once' });
    await h.sink.open([table]);
    const outcome = await driveSends(h, h.sink.write(events(100, encoded)));
    expect(outcome).toEqual({ value: undefined });
    expect(h.sends.length).toBeGreaterThan(3);
    expect(h.mostOutstanding()).toBe(1);
  });

  test('a requestsInFlight below 1 is refused', () => {
    const config = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 't' });
    const context: ConnectorContext = { pipeline: 'p', logger: quiet, signal: new AbortController().signal };
    expect(() => new KafkaSink(config, context, undefined, { requestsInFlight: 0 })).toThrow(/requestsInFlight/);
  });
});
