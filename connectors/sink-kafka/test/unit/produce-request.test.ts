import { mulberry32 } from '@nanosync/connector-testkit';
import * as kafka from '@platformatic/kafka';
import { kGetApi, Producer } from '@platformatic/kafka';
import { afterEach, describe, expect, test, vi } from 'vitest';
import {
  CHECKED_CLIENT_VERSION,
  clientProduceRequest,
  fastProduceRequest,
  installFastProduce,
} from '../../src/fast-produce.js';
import { encodeProduceRequest, type ProduceMessage, type ProduceOptions } from '../../src/produce-request.js';

/** Deterministic pseudo-random numbers (the testkit's mulberry32), so a failure names a reproducible case. */
const rng = mulberry32;

// Sizes around the varint steps: one byte up to 63 (zigzag), two up to 8191, three beyond.
const SIZES = [0, 1, 7, 63, 64, 127, 128, 200, 8191, 8192, 16383, 16384, 20_000];
const TOPICS = ['orders', 'public.customers', '123', 'tópico', '7', 'x'];
const NOW = 1_764_930_000_000;

function bytes(random: () => number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  // Repetitive enough for the compressors to find something, varied enough to be checked.
  for (let i = 0; i < size; i++) b[i] = random() < 0.7 ? 97 + (i % 7) : Math.floor(random() * 256);
  return b;
}

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

function field(random: () => number): Buffer | null | undefined {
  const r = random();
  if (r < 0.1) return null;
  if (r < 0.15) return undefined;
  return bytes(random, pick(random, SIZES));
}

interface Case {
  acks: number;
  timeout: number;
  messages: ProduceMessage[];
  options: ProduceOptions;
}

function generate(seed: number, compression: string): Case {
  const random = rng(seed);
  const count = 1 + Math.floor(random() * (random() < 0.2 ? 300 : 12));
  const topics = TOPICS.slice(0, 1 + Math.floor(random() * 4));
  const givenTimestamps = random();
  const messages: ProduceMessage[] = [];
  for (let i = 0; i < count; i++) {
    const headers = new Map<Buffer | null | undefined, Buffer | null | undefined>();
    const headerCount = Math.floor(random() * 6);
    for (let h = 0; h < headerCount; h++)
      headers.set(Buffer.from(`ns-h${h}${'n'.repeat(random() < 0.1 ? 200 : 0)}`), field(random));
    const message: ProduceMessage = { topic: pick(random, topics), key: field(random), value: field(random), headers };
    if (random() < 0.9) message.partition = Math.floor(random() * 6);
    // Absent (the request's now), all given, or a mix; deltas both ways, some past 2^21.
    if (givenTimestamps > 0.6 || (givenTimestamps > 0.3 && random() < 0.5)) {
      const spread = random() < 0.3 ? 5_000_000 : 1_000;
      message.timestamp = BigInt(NOW + Math.floor((random() - 0.5) * spread));
    }
    messages.push(message);
  }
  const sequences = new Map<string, number>();
  for (const t of topics)
    for (let p = 0; p < 6; p++) if (random() < 0.7) sequences.set(`${t}:${p}`, Math.floor(random() * 2 ** 31));
  const options: ProduceOptions = { compression };
  if (random() < 0.8) options.producerId = BigInt(Math.floor(random() * 2 ** 40)) * (random() < 0.1 ? -1n : 1n);
  if (random() < 0.8) options.producerEpoch = Math.floor(random() * 32_767);
  if (random() < 0.7) options.sequences = { getWithDefault: (key, fallback) => sequences.get(key) ?? fallback };
  const tx = random();
  if (tx < 0.3) options.transactionalId = `nanosync-${seed}-${'t'.repeat(random() < 0.2 ? 150 : 3)}`;
  else if (tx < 0.4) options.transactionalId = null;
  else if (tx < 0.45) options.transactionalId = '';
  if (random() < 0.1) options.partitionLeaderEpoch = Math.floor(random() * 100);
  return { acks: pick(random, [-1, -1, 1, 0]), timeout: Math.floor(random() * 60_000), messages, options };
}

/** A deep copy, so each encoder gets (and may fill in) its own messages. */
function copy(c: Case): Case {
  return {
    ...c,
    options: { ...c.options },
    messages: c.messages.map((m) => ({ ...m, headers: m.headers instanceof Map ? new Map(m.headers) : m.headers })),
  };
}

type Writer = InstanceType<typeof kafka.Writer>;

async function encodeBoth(version: number, c: Case): Promise<{ client: Writer; ours: Writer; a: Case; b: Case }> {
  const a = copy(c);
  const b = copy(c);
  const client = await clientProduceRequest(version)!(a.acks, a.timeout, a.messages, a.options);
  const ours = await fastProduceRequest(version)!(b.acks, b.timeout, b.messages, b.options);
  return { client, ours, a, b };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('produce request: the same bytes as @platformatic/kafka', () => {
  test('the encoder is checked against the installed client version', () => {
    expect(kafka.clientSoftwareVersion).toBe(CHECKED_CLIENT_VERSION);
  });

  const versions = [3, 4, 5, 6, 7, 8, 9, 10, 11];
  for (const compression of ['none', 'snappy', 'lz4', 'zstd', 'gzip']) {
    test.each(versions)(`${compression}, Produce v%i: 25 generated requests`, async (version) => {
      vi.spyOn(Date, 'now').mockReturnValue(NOW);
      for (let seed = 1; seed <= 25; seed++) {
        const c = generate(seed * 1009 + version, compression);
        const { client, ours, a, b } = await encodeBoth(version, c);
        // One buffer: the sink's encoder wrote it, not the client's fallback.
        expect(ours.buffers.length, `seed ${seed}`).toBe(1);
        expect(ours.buffer.equals(client.buffer), `seed ${seed}: bytes differ`).toBe(true);
        expect(ours.context).toEqual(client.context);
        // Both fill in the same partitions and timestamps (a retry re-encodes these messages).
        expect(b.messages.map((m) => [m.partition, m.timestamp])).toEqual(
          a.messages.map((m) => [m.partition, m.timestamp]),
        );
      }
    });
  }

  test('a retry of the same messages encodes the same bytes', async () => {
    const c = generate(77, 'snappy');
    const request = fastProduceRequest(11)!;
    const first = (await request(c.acks, c.timeout, c.messages, c.options)).buffer;
    vi.spyOn(Date, 'now').mockReturnValue(NOW + 5_000);
    const again = (await request(c.acks, c.timeout, c.messages, c.options)).buffer;
    expect(again.equals(first)).toBe(true);
  });

  test('timestamps 2^31 ms or more apart go to the client encoder, with the same bytes', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(NOW);
    const c = generate(5, 'none');
    c.messages = [
      { topic: 't', key: Buffer.from('a'), value: Buffer.from('1'), headers: new Map(), timestamp: BigInt(NOW) },
      {
        topic: 't',
        key: Buffer.from('b'),
        value: Buffer.from('2'),
        headers: new Map(),
        timestamp: BigInt(NOW) + 2n ** 31n,
      },
    ];
    const { client, ours } = await encodeBoth(11, c);
    expect(ours.buffers.length).toBeGreaterThan(1);
    expect(ours.buffer.equals(client.buffer)).toBe(true);
  });

  test.each([
    ['string key', { key: 'k' }],
    ['string value', { value: 'v' }],
    ['headers as an object', { headers: { a: Buffer.from('b') } }],
    ['string header value', { headers: new Map([[Buffer.from('a'), 'b']]) }],
    ['number timestamp', { timestamp: NOW }],
  ])('%s: the client encoder, with its own outcome', async (_, override) => {
    vi.spyOn(Date, 'now').mockReturnValue(NOW);
    const c = generate(11, 'lz4');
    c.messages[0] = { ...c.messages[0]!, ...(override as object) };
    const outcome = async (run: () => Promise<Writer> | Writer) => {
      try {
        const w = await run();
        return { bytes: w.buffer.toString('hex'), buffers: w.buffers.length };
      } catch (err) {
        return { error: String(err) };
      }
    };
    const a = copy(c);
    const b = copy(c);
    const client = await outcome(() => clientProduceRequest(11)!(a.acks, a.timeout, a.messages, a.options));
    const ours = await outcome(() => fastProduceRequest(11)!(b.acks, b.timeout, b.messages, b.options));
    expect(ours).toEqual(client);
  });

  test('gzip: compressed asynchronously, as the client does (a promise of the request)', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(NOW);
    const c = generate(3, 'gzip');
    const b = copy(c);
    const request = fastProduceRequest(11)!(b.acks, b.timeout, b.messages, b.options);
    expect(request).toBeInstanceOf(Promise);
    const { client, ours } = await encodeBoth(11, c);
    expect(ours.buffers.length).toBe(1);
    expect(ours.buffer.equals(client.buffer)).toBe(true);
  });
});

describe('produce request: compression starts only once the request is known to be ours', () => {
  const message = (topic: string, partition: number, key: unknown = Buffer.from('k')): ProduceMessage =>
    ({
      topic,
      partition,
      key,
      value: Buffer.alloc(300, 97),
      headers: new Map(),
      timestamp: BigInt(NOW),
    }) as ProduceMessage;
  /** Rejections nobody handled while `run` ran and the event loop turned twice. */
  async function unhandledDuring(run: () => Promise<unknown>): Promise<unknown[]> {
    const seen: unknown[] = [];
    const onUnhandled = (reason: unknown) => seen.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await run().catch(() => {});
      for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    return seen;
  }

  test.each([
    ['a later partition of the topic', [message('a', 0), message('a', 1), message('a', 2, 'string key')]],
    ['a partition of a later topic', [message('a', 0), message('a', 1), message('b', 0), message('b', 1, 'k')]],
  ])('gzip, %s goes to the client encoder: no gzip started, no unhandled rejection', async (_, messages) => {
    const gzip = vi
      .spyOn(kafka.compressionsAlgorithms.gzip, 'compress')
      .mockImplementation(() => Promise.reject(new Error('gzip failed')));
    const fallbackWriter = kafka.Writer.create();
    const fallback = vi.fn(() => fallbackWriter);
    let result: unknown;
    const unhandled = await unhandledDuring(async () => {
      result = await encodeProduceRequest(11, fallback, -1, 1000, messages, { compression: 'gzip' });
    });
    expect(fallback).toHaveBeenCalledTimes(1);
    expect(result).toBe(fallbackWriter);
    expect(gzip).not.toHaveBeenCalled();
    expect(unhandled).toEqual([]);
  });

  test('gzip, every partition ours: one gzip per partition, and a failing one rejects the request (handled)', async () => {
    const gzip = vi
      .spyOn(kafka.compressionsAlgorithms.gzip, 'compress')
      .mockImplementation(() => Promise.reject(new Error('gzip failed')));
    const fallback = vi.fn(() => kafka.Writer.create());
    const messages = [message('a', 0), message('a', 1), message('b', 0)];
    let error: unknown;
    const unhandled = await unhandledDuring(async () => {
      try {
        await encodeProduceRequest(11, fallback, -1, 1000, messages, { compression: 'gzip' });
      } catch (err) {
        error = err;
      }
    });
    expect(fallback).not.toHaveBeenCalled();
    expect(gzip).toHaveBeenCalledTimes(3);
    expect(String(error)).toContain('gzip failed');
    expect(unhandled).toEqual([]);
  });
});

describe('installFastProduce', () => {
  test("the producer's Produce API encodes with the sink's encoder; other APIs are the client's", async () => {
    const producer = new Producer({ clientId: 'test', bootstrapBrokers: ['127.0.0.1:1'] });
    try {
      const internals = producer as unknown as {
        [kGetApi]: (name: string, cb: (err: Error | null, api?: unknown) => void) => void;
      };
      // The broker's negotiation, without a broker: the client's own APIs of version 11.
      const clientApis: Record<string, unknown> = { Produce: kafka.produceV11.api, Metadata: kafka.metadataV12.api };
      internals[kGetApi] = (name, cb) => cb(null, clientApis[name]);
      installFastProduce(producer);
      const get = (name: string) =>
        new Promise<{ version: number; key: number }>((resolve, reject) =>
          internals[kGetApi](name, (err, api) =>
            err ? reject(err) : resolve(api as { version: number; key: number }),
          ),
        );
      const produce = await get('Produce');
      expect(produce).not.toBe(kafka.produceV11.api);
      expect([produce.key, produce.version]).toEqual([0, 11]);
      expect(await get('Metadata')).toBe(kafka.metadataV12.api);

      // What the API sends: the request the sink's encoder builds.
      vi.spyOn(Date, 'now').mockReturnValue(NOW);
      const c = generate(21, 'snappy');
      let sent: Writer | undefined;
      const connection = {
        send: (_key: number, _version: number, create: () => Writer) => {
          sent = create();
        },
      };
      (produce as unknown as (...args: unknown[]) => void)(connection, c.acks, c.timeout, c.messages, c.options);
      expect(sent?.buffers.length).toBe(1);
      const expected = copy(generate(21, 'snappy'));
      const client = await clientProduceRequest(11)!(
        expected.acks,
        expected.timeout,
        expected.messages,
        expected.options,
      );
      expect(sent?.buffer.equals(client.buffer)).toBe(true);
    } finally {
      await producer.close();
    }
  });
});
