import { mulberry32 } from '@nanosync/connector-testkit';
import type { ChangeEvent } from '@nanosync/core';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { Framed, frameRecords, getU32, putU32, readFramed, unframeRecords } from '../../src/encoded.js';
import { clientProduceRequest, fastProduceRequest } from '../../src/fast-produce.js';
import { FramedRun, PackedRecords, packRecords, RecordSequences } from '../../src/packed-records.js';
import { javaPartitioner } from '../../src/partitioner.js';
import type { ProduceMessage, ProduceOptions } from '../../src/produce-request.js';
import type { OutgoingMessage, RecordHeaders } from '../../src/producer.js';

const NOW = 1_764_930_000_000;
const PARTITIONS: Record<string, number> = { orders: 6, 'public.customers': 3, tópico: 1 };
const partitionsOf = (topic: string) => PARTITIONS[topic];

afterEach(() => {
  vi.restoreAllMocks();
});

function bytes(random: () => number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = random() < 0.7 ? 97 + (i % 7) : Math.floor(random() * 256);
  return b;
}

/** A framed batch's string count, and the byte after its string table (where the record count is). */
function stringTable(batch: Buffer): { strings: number; end: number } {
  const strings = batch.readUInt32LE(4);
  let end = 8;
  for (let i = 0; i < strings; i++) end += 4 + batch.readUInt32LE(end);
  return { strings, end };
}

/** Records as the sink hands them to the producer: keys, values and headers of every shape it makes. */
function outgoing(seed: number, count: number): OutgoingMessage[] {
  const random = mulberry32(seed);
  const topics = Object.keys(PARTITIONS);
  const sizes = [0, 1, 63, 64, 200, 8191, 8192, 20_000];
  const out: OutgoingMessage[] = [];
  for (let i = 0; i < count; i++) {
    const headers: RecordHeaders = {
      'ns-op': random() < 0.5 ? 'u' : 'c',
      'ns-table': 'public.orders',
      'ns-position': `0/${(1_000_000 + i).toString(16).toUpperCase()}`,
    };
    if (random() < 0.3) headers['ns-chunk'] = undefined;
    if (random() < 0.3) headers['ns-unicode'] = 'café ☕ '.repeat(Math.floor(random() * 20));
    if (random() < 0.2) headers['ns-bytes'] = bytes(random, sizes[Math.floor(random() * 4)]!);
    if (random() < 0.05) headers[`ns-${'n'.repeat(200)}`] = 'long name';
    const key = random() < 0.1 ? null : bytes(random, 1 + Math.floor(random() * 40));
    const value = random() < 0.1 ? null : bytes(random, sizes[Math.floor(random() * sizes.length)]!);
    const topic = topics[Math.floor(random() * topics.length)]!;
    out.push({ topic, key, value, headers, table: 'public.orders', size: 0, event: i });
  }
  return out;
}

/** The same records as the producer gives them to the client one by one (its sendOnce without packs). */
function unpacked(messages: readonly OutgoingMessage[]): ProduceMessage[] {
  return messages.map((m) => {
    const headers = new Map<Buffer, Buffer>();
    for (const name in m.headers) {
      const v = m.headers[name];
      if (v !== undefined) headers.set(Buffer.from(name), typeof v === 'string' ? Buffer.from(v) : v);
    }
    return {
      topic: m.topic,
      partition: javaPartitioner(m, m.key) % PARTITIONS[m.topic]!,
      key: m.key ?? undefined,
      value: m.value ?? undefined,
      headers,
    };
  });
}

/** The client's sequence numbers as it counts them: one per message of each partition. */
class ClientSequences {
  readonly next = new Map<string, number>();
  snapshot(messages: readonly ProduceMessage[]): ProduceOptions['sequences'] {
    const firsts = new Map<string, number>();
    for (const m of messages) {
      const key = `${m.topic}:${m.partition}`;
      if (!firsts.has(key)) firsts.set(key, this.next.get(key) ?? 0);
      this.next.set(key, (this.next.get(key) ?? 0) + 1);
    }
    return { getWithDefault: (key, fallback) => firsts.get(key) ?? fallback };
  }
}

const options = (compression: string, sequences: ProduceOptions['sequences']): ProduceOptions => ({
  compression,
  producerId: 4242n,
  producerEpoch: 3,
  sequences,
});

describe('packRecords', () => {
  test('one pack per partition, in the order partitions first appear, records in order', () => {
    const messages = outgoing(5, 300);
    const packs = packRecords(messages, partitionsOf)!;
    const expected = new Map<string, number>();
    for (const m of unpacked(messages)) {
      const key = `${m.topic}:${m.partition}`;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    expect(packs.map((p) => `${p.topic}:${p.partition}`)).toEqual([...expected.keys()]);
    expect(packs.map((p) => p.value.count)).toEqual([...expected.values()]);
    for (const p of packs) expect(p.value).toBeInstanceOf(PackedRecords);
  });

  test('records read back from a framed batch pack into the same bytes, copied from the batch', () => {
    const messages = outgoing(8, 400);
    const events = messages.map(
      (_, i) =>
        ({
          op: i % 5 === 0 ? 'read' : 'update',
          position: `0000000016B3C4D8:${i.toString(16).toUpperCase().padStart(8, '0')}`,
          ...(i % 5 === 0 ? { chunk: 'c1' } : {}),
        }) as unknown as ChangeEvent,
    );
    const framed = unframeRecords(frameRecords(messages, events));
    expect(framed[0]).toBeInstanceOf(Framed);
    const fromFrames = packRecords(framed, partitionsOf)!;
    const fromMessages = packRecords(messages, partitionsOf)!;
    expect(fromFrames.map((p) => [p.topic, p.partition, p.value.count])).toEqual(
      fromMessages.map((p) => [p.topic, p.partition, p.value.count]),
    );
    fromFrames.forEach((p, i) => {
      expect(p.value.bytes.equals(fromMessages[i]!.value.bytes), `pack ${i}`).toBe(true);
    });
    // What is read from the bytes on demand is what was framed.
    expect(framed.map((r) => [r.key, r.value, r.position])).toEqual(
      messages.map((m, i) => [m.key, m.value, events[i]!.position]),
    );
  });

  test('a run of framed records from several batches packs into the bytes of its records as objects', () => {
    const messages = outgoing(11, 500);
    const eventsOf = (from: number, to: number) =>
      messages.slice(from, to).map(
        (_, i) =>
          ({
            op: i % 3 === 0 ? 'read' : 'insert',
            position: `0000000016B3C4D8:${(from + i).toString(16).padStart(8, '0')}`,
            ...(i % 3 === 0 ? { chunk: `c${from}` } : {}),
          }) as unknown as ChangeEvent,
      );
    // Three batches, as a write of three stream parts: each batch numbers its own events from 0.
    const cuts = [0, 120, 121, 500];
    const batches = cuts.slice(1).map((to, b) => {
      const from = cuts[b]!;
      const part = messages.slice(from, to).map((m, i) => ({ ...m, event: i, size: 100 + from + i }));
      return frameRecords(part, eventsOf(from, to));
    });
    const framed = readFramed(batches, cuts.slice(0, -1));
    expect(framed.length).toBe(500);
    const objects = framed.records();
    expect(objects.map((r) => r.event)).toEqual(messages.map((_, i) => i));
    expect(framed.indexOfEvent(121)).toBe(121);
    expect(framed.indexOfEvent(500)).toBe(-1);
    // Runs that start and end inside batches and across them, and one of the whole write.
    for (const [from, to] of [
      [0, 500],
      [100, 130],
      [120, 122],
      [499, 500],
    ] as const) {
      const run = new FramedRun(framed, from, to);
      const packed = packRecords(run, partitionsOf)!;
      const expected = packRecords(objects.slice(from, to), partitionsOf)!;
      expect(packed.map((p) => [p.topic, p.partition, p.value.count])).toEqual(
        expected.map((p) => [p.topic, p.partition, p.value.count]),
      );
      packed.forEach((p, i) => {
        expect(p.value.bytes.equals(expected[i]!.value.bytes), `run ${from}-${to}, pack ${i}`).toBe(true);
      });
      expect(run.messages().map((r) => [r.topic, r.key, r.value, r.headers, r.event])).toEqual(
        objects.slice(from, to).map((r) => [r.topic, r.key, r.value, r.headers, r.event]),
      );
    }
    // Halves for a retry of a refused request keep the order and the records' sizes.
    const run = new FramedRun(framed, 10, 15);
    const [first, second] = [run.slice(0, 3), run.slice(3, 5)];
    expect([first.from, first.to, second.from, second.to]).toEqual([10, 13, 13, 15]);
    expect(objects.slice(10, 15).map((r) => r.size)).toEqual([110, 111, 112, 113, 114]);
    expect([first.messages().map((r) => r.size), second.messages().map((r) => r.size)]).toEqual([
      [110, 111, 112],
      [113, 114],
    ]);
  });

  test('a framed batch whose record count runs past its bytes is refused before anything is read', () => {
    const batch = frameRecords(
      outgoing(12, 3),
      [0, 1, 2].map(() => ({ op: 'insert', position: 'p' }) as ChangeEvent),
    );
    // The record count follows the string table: make it far more than the bytes can hold.
    const corrupt = Buffer.from(batch);
    const at = stringTable(corrupt).end;
    expect(corrupt.readUInt32LE(at)).toBe(3);
    corrupt.writeUInt32LE(0x7fffffff, at);
    expect(() => readFramed([corrupt], [0])).toThrow(/malformed encoded batch \(record count past the end/);
  });

  test('a framed batch cut short anywhere is refused, naming where', () => {
    const batch = frameRecords(
      outgoing(13, 4),
      [0, 1, 2, 3].map(() => ({ op: 'insert', position: 'p', chunk: 'c' }) as ChangeEvent),
    );
    expect(readFramed([batch], [0]).length).toBe(4);
    for (let cut = 0; cut < batch.length; cut++) {
      expect(() => readFramed([batch.subarray(0, cut)], [0]), `cut at ${cut}`).toThrow(
        /^kafka framing: malformed encoded batch \(.* at byte \d+ of \d+\)$/,
      );
    }
    expect(() => readFramed([Buffer.concat([batch, Buffer.from([0])])], [0])).toThrow(/trailing bytes/);
  });

  test('a framed record naming a string the batch does not hold is refused', () => {
    const batch = frameRecords([outgoing(14, 1)[0]!], [{ op: 'insert', position: 'p' } as ChangeEvent]);
    const corrupt = Buffer.from(batch);
    const { strings, end: at } = stringTable(corrupt);
    // The record count, then the event index, then the topic's string number.
    corrupt.writeUInt32LE(strings, at + 8);
    expect(() => readFramed([corrupt], [0])).toThrow(`malformed encoded batch (string ${strings} of ${strings}`);
  });

  test("a framed record's header naming a string the batch does not hold is refused at that header", () => {
    const batch = frameRecords([outgoing(14, 1)[0]!], [{ op: 'insert', position: 'p' } as ChangeEvent]);
    const corrupt = Buffer.from(batch);
    const { strings, end } = stringTable(corrupt);
    let at = end;
    // Past the record count: 25 fixed bytes, the key, the value, the key text, the size, then the headers.
    const record = at + 4;
    at = record + 25 + corrupt.readUInt32LE(record + 21);
    at += 4 + corrupt.readUInt32LE(at);
    at += 4 + corrupt.readUInt32LE(at);
    at += 4;
    expect(corrupt.readUInt16LE(at)).toBeGreaterThan(0);
    at += 2;
    // The first header's name: a string number one past the table.
    expect(corrupt.readUInt32LE(at)).toBeLessThan(strings);
    corrupt.writeUInt32LE(strings, at);
    expect(() => readFramed([corrupt], [0])).toThrow(
      `kafka framing: malformed encoded batch (string ${strings} of ${strings} at byte ${at} of ${corrupt.length})`,
    );
  });

  test("the framing's integers read and write as Buffer's little-endian u32 do", () => {
    const values = [0, 1, 0xff, 0x100, 0xffff, 0x10000, 0xffffff, 0x1000000, 0x7fffffff, 0x80000000, 0xffffffff];
    const ours = Buffer.alloc(values.length * 4);
    const node = Buffer.alloc(values.length * 4);
    let at = 0;
    for (const v of values) {
      node.writeUInt32LE(v, at);
      at = putU32(ours, at, v);
    }
    expect(at).toBe(ours.length);
    expect(ours).toEqual(node);
    expect(values.map((_, i) => getU32(ours, i * 4))).toEqual(values);
  });

  test('a topic without a known partition count: no packs (the client places the records)', () => {
    const messages = outgoing(6, 20);
    expect(packRecords(messages, (topic) => (topic === 'orders' ? undefined : 3))).toBeUndefined();
    expect(packRecords(messages, () => 0)).toBeUndefined();
  });
});

describe("packed records: the client's bytes for the same records", () => {
  for (const compression of ['none', 'snappy', 'lz4', 'zstd', 'gzip']) {
    test.each([3, 7, 9, 11])(`${compression}, Produce v%i`, async (version) => {
      vi.spyOn(Date, 'now').mockReturnValue(NOW);
      for (let seed = 1; seed <= 6; seed++) {
        const messages = outgoing(seed * 31 + version, seed === 1 ? 1 : seed * 50);
        const one = unpacked(messages);
        const packs = packRecords(messages, partitionsOf)!;
        const clientSeq = new ClientSequences();
        const packedSeq = new ClientSequences();
        // The producer already wrote to some partitions: the numbers go on from there.
        clientSeq.next.set('orders:1', 17);
        packedSeq.next.set('orders:1', 17);
        const client = await clientProduceRequest(version)!(
          -1,
          30_000,
          one,
          options(compression, clientSeq.snapshot(one)),
        );
        const ours = await fastProduceRequest(version, new RecordSequences())!(
          -1,
          30_000,
          packs as unknown as ProduceMessage[],
          options(compression, packedSeq.snapshot(packs as unknown as ProduceMessage[])),
        );
        expect(ours.buffers.length).toBe(1);
        expect(ours.buffer.equals(client.buffer), `seed ${seed}: bytes differ`).toBe(true);
      }
    });
  }

  test('the next requests, a retry and a new producer epoch: the sequence numbers the records would have', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(NOW);
    const clientSeq = new ClientSequences();
    const packedSeq = new ClientSequences();
    const records = new RecordSequences();
    const ours = fastProduceRequest(11, records)!;
    const theirs = clientProduceRequest(11)!;
    const send = async (seed: number, epoch: number, retry: boolean) => {
      const messages = outgoing(seed, 40 + seed);
      const one = unpacked(messages);
      const packs = packRecords(messages, partitionsOf)! as unknown as ProduceMessage[];
      const a = { ...options('snappy', clientSeq.snapshot(one)), producerEpoch: epoch };
      const b = { ...options('snappy', packedSeq.snapshot(packs)), producerEpoch: epoch };
      const expected = (await theirs(-1, 1000, one, a)).buffer;
      expect((await ours(-1, 1000, packs, b)).buffer.equals(expected), `request ${seed}`).toBe(true);
      // The client retries a request with the same numbers: the same bytes again.
      if (retry) expect((await ours(-1, 1000, packs, b)).buffer.equals(expected), `retry ${seed}`).toBe(true);
    };
    for (let seed = 1; seed <= 8; seed++) await send(seed, 3, seed % 3 === 0);
    // A new epoch (the client cleared its numbers): both start from 0 again.
    clientSeq.next.clear();
    packedSeq.next.clear();
    for (let seed = 9; seed <= 12; seed++) await send(seed, 4, seed === 10);
  });
});

describe('RecordSequences', () => {
  test('counts records where the client counts messages', () => {
    const s = new RecordSequences();
    expect(s.first(1n, 0, 't:0', 0, 1, 100)).toBe(0);
    expect(s.first(1n, 0, 't:0', 1, 1, 50)).toBe(100);
    expect(s.first(1n, 0, 't:1', 0, 1, 7)).toBe(0);
    // A retry of the second request.
    expect(s.first(1n, 0, 't:0', 1, 1, 50)).toBe(100);
    // Unpacked messages: one record each.
    expect(s.first(1n, 0, 't:0', 2, 3, 3)).toBe(150);
    expect(s.first(1n, 0, 't:0', 5, 1, 1)).toBe(153);
  });

  test('numbers the client skipped stay a gap, so the broker refuses what follows', () => {
    const s = new RecordSequences();
    expect(s.first(1n, 0, 't:0', 0, 1, 100)).toBe(0);
    // The client counted request 1 (two messages) but never encoded it.
    expect(s.first(1n, 0, 't:0', 3, 1, 10)).toBe(102);
  });

  test('a new producer id or epoch starts over; an old request no longer known is refused', () => {
    const s = new RecordSequences();
    for (let i = 0; i < 20; i++) s.first(1n, 0, 't:0', i, 1, 10);
    expect(() => s.first(1n, 0, 't:0', 2, 1, 10)).toThrow(/no record sequence is known .* t:0/);
    expect(s.first(1n, 1, 't:0', 0, 1, 10)).toBe(0);
    expect(s.first(2n, 1, 't:0', 0, 1, 10)).toBe(0);
  });

  test('wraps to 0 after 2^31 - 1, as the broker counts', () => {
    const s = new RecordSequences();
    expect(s.first(1n, 0, 't:0', 2 ** 31 - 5, 1, 10)).toBe(2 ** 31 - 5);
    expect(s.first(1n, 0, 't:0', 2 ** 31 - 4, 1, 10)).toBe(5);
  });
});

describe('packs go only where the sink encodes them', () => {
  test("a request with a pack that would need the client's encoder fails instead of sending wrong bytes", () => {
    const packs = packRecords(outgoing(9, 10), partitionsOf)! as unknown as ProduceMessage[];
    const request = fastProduceRequest(11, new RecordSequences())!;
    expect(() => request(-1, 1000, packs, { compression: 'brotli' })).toThrow(
      /pack of records cannot go to the client/,
    );
    // A pack and another message of its partition in one request.
    const extra: ProduceMessage = { ...packs[0]!, value: Buffer.from('x'), headers: new Map() };
    expect(() => request(-1, 1000, [packs[0]!, extra], { compression: 'none' })).toThrow(
      /pack of records cannot go to the client/,
    );
  });
});
