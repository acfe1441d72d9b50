/**
 * A partition's records handed to the client as one message (`PackedRecords`): written here
 * straight into their final bytes, the record layout of a v2 record batch, so the client makes
 * no message object and no header maps per record and the Produce encoder copies (or
 * compresses) them as they are. Only with the sink's Produce encoder (fast-produce.ts), which
 * knows these messages; the client's own would not.
 *
 * Every record of a pack has timestamp delta 0 (the request's one timestamp, as the client
 * gives records without one) and offset delta = its index in the pack, so a pack must be the
 * only message of its partition in a request: the producer makes one pack per partition and
 * send, and the client never merges sends.
 *
 * The client counts a pack as one message in the producer's sequence numbers; the broker
 * counts its records. `RecordSequences` turns the client's numbers into the records'.
 */
import { copyRange } from '@nanosync/core';
import { BYTES, Framed, STRING } from './encoded.js';
import { javaPartitioner, murmur2 } from './partitioner.js';
import type { OutgoingMessage } from './producer.js';

/** The records of one partition of one send, in their batch's record layout. */
export class PackedRecords {
  constructor(
    /** The records, each with its length, attributes, timestamp and offset deltas. */
    readonly bytes: Buffer,
    readonly count: number,
  ) {}
}

/** A pack as the client's `send` takes it: topic and partition given, no key, no headers. */
export interface PackedMessage {
  topic: string;
  partition: number;
  value: PackedRecords;
}

export const sizeOfUnsignedVarInt = (value: number): number => {
  let bytes = 1;
  while ((value & 0xffffff80) !== 0) {
    bytes++;
    value >>>= 7;
  }
  return bytes;
};
/** Zigzag as the client does it (`(v << 1) ^ (v >> 31)`, then read as unsigned 32 bits). */
export const sizeOfVarInt = (value: number): number => sizeOfUnsignedVarInt((value << 1) ^ (value >> 31));

export function writeUnsignedVarInt(buf: Buffer, pos: number, value: number): number {
  while ((value & 0xffffff80) !== 0) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value & 0x7f;
  return pos;
}
export const writeVarInt = (buf: Buffer, pos: number, value: number): number =>
  writeUnsignedVarInt(buf, pos, (value << 1) ^ (value >> 31));

const headerCache = new Map<string, Buffer>();

/**
 * The bytes of a header name, or of a value that repeats: made once, not per record. The
 * cache stops growing at 4,096 entries.
 */
export function headerBytes(text: string): Buffer {
  let bytes = headerCache.get(text);
  if (bytes === undefined) {
    bytes = Buffer.from(text);
    if (headerCache.size < 4096) headerCache.set(text, bytes);
  }
  return bytes;
}

/** One partition's share of a send while it is packed. */
interface Pack {
  topic: string;
  partition: number;
  count: number;
  bytes: number;
  /** Where its next record goes in the shared buffer. */
  at: number;
  start: number;
}

/**
 * `messages` as one pack per partition, in the order each partition first appears; each
 * partition's records keep their order. Keys are placed like `javaPartitioner` places them
 * (records without a key on partition 0), modulo the topic's partition count, which
 * `partitionsOf` gives; undefined when it knows no count for a topic (the client then places
 * the records itself, and learns the count).
 *
 * The records' bytes are what the client's encoder writes for the same messages: key, value
 * and the headers that are not undefined, in their order, string values as UTF-8.
 */
export function packRecords(
  messages: readonly OutgoingMessage[],
  partitionsOf: (topic: string) => number | undefined,
): PackedMessage[] | undefined {
  const n = messages.length;
  const bodies = new Int32Array(n);
  const owners = new Array<Pack>(n);
  const packs: Pack[] = [];
  // Packs by topic, then partition; the last topic's are at hand.
  const byTopic = new Map<string, Pack[]>();
  let lastTopic: string | undefined;
  let lastPacks: Pack[] = [];
  let lastCount = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    if (m.topic !== lastTopic) {
      const count = partitionsOf(m.topic);
      if (count === undefined || !(count > 0)) return undefined;
      lastTopic = m.topic;
      lastCount = count;
      let list = byTopic.get(m.topic);
      if (list === undefined) {
        list = [];
        byTopic.set(m.topic, list);
      }
      lastPacks = list;
    }
    const framed = m instanceof Framed ? m : undefined;
    const partition =
      (framed === undefined
        ? javaPartitioner(m, m.key)
        : framed.keyLength < 0
          ? 0
          : murmur2(framed.frame.bytes, framed.keyAt, framed.keyAt + framed.keyLength) & 0x7fffffff) % lastCount;
    let pack = lastPacks[partition];
    if (pack === undefined) {
      pack = { topic: m.topic, partition, count: 0, bytes: 0, at: 0, start: 0 };
      lastPacks[partition] = pack;
      packs.push(pack);
    }
    // attributes, timestamp delta 0, offset delta, key, value, headers
    const body = 2 + sizeOfVarInt(pack.count) + (framed === undefined ? fieldsSize(m) : framedFieldsSize(framed));
    bodies[i] = body;
    owners[i] = pack;
    const size = sizeOfVarInt(body) + body;
    pack.count++;
    pack.bytes += size;
    total += size;
  }
  const buf = Buffer.allocUnsafe(total);
  let start = 0;
  for (const pack of packs) {
    pack.start = start;
    pack.at = start;
    start += pack.bytes;
    pack.count = 0;
  }
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    const pack = owners[i]!;
    let pos = writeVarInt(buf, pack.at, bodies[i]!);
    buf[pos++] = 0; // attributes
    buf[pos++] = 0; // timestamp delta
    pos = writeVarInt(buf, pos, pack.count++);
    pack.at = m instanceof Framed ? writeFramedFields(buf, pos, m) : writeFields(buf, pos, m);
  }
  const out = new Array<PackedMessage>(packs.length);
  for (let p = 0; p < packs.length; p++) {
    const pack = packs[p]!;
    if (pack.at !== pack.start + pack.bytes)
      throw new Error(`kafka packed records: wrote ${pack.at - pack.start} bytes, measured ${pack.bytes}`);
    out[p] = {
      topic: pack.topic,
      partition: pack.partition,
      value: new PackedRecords(buf.subarray(pack.start, pack.at), pack.count),
    };
  }
  return out;
}

/** Key, value and headers of a record: their size in a batch. */
function fieldsSize(m: OutgoingMessage): number {
  let body = m.key === null ? 1 : sizeOfVarInt(m.key.length) + m.key.length;
  body += m.value === null ? 1 : sizeOfVarInt(m.value.length) + m.value.length;
  let headers = 0;
  const h = m.headers;
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    headers++;
    const nameLength = headerBytes(name).length;
    const valueLength = typeof v === 'string' ? Buffer.byteLength(v) : v.length;
    body += sizeOfVarInt(nameLength) + nameLength + sizeOfVarInt(valueLength) + valueLength;
  }
  return body + sizeOfVarInt(headers);
}

function writeFields(buf: Buffer, pos: number, m: OutgoingMessage): number {
  pos = writeBytes(buf, pos, m.key);
  pos = writeBytes(buf, pos, m.value);
  const h = m.headers;
  let headers = 0;
  for (const name in h) if (h[name] !== undefined) headers++;
  pos = writeVarInt(buf, pos, headers);
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    pos = writeBytes(buf, pos, headerBytes(name));
    if (typeof v === 'string') {
      const length = Buffer.byteLength(v);
      pos = writeVarInt(buf, pos, length);
      pos += buf.write(v, pos, length, 'utf8');
    } else pos = writeBytes(buf, pos, v);
  }
  return pos;
}

/** `fieldsSize` of a framed record, read from its batch's bytes (encoded.ts) without making its fields. */
function framedFieldsSize(m: Framed): number {
  const { bytes, lengths } = m.frame;
  let body = m.keyLength < 0 ? 1 : sizeOfVarInt(m.keyLength) + m.keyLength;
  body += m.valueLength < 0 ? 1 : sizeOfVarInt(m.valueLength) + m.valueLength;
  let at = m.headersAt;
  const count = bytes.readUInt16LE(at);
  at += 2;
  let headers = 0;
  for (let h = 0; h < count; h++) {
    const nameLength = lengths[bytes.readUInt32LE(at)]!;
    const kind = bytes[at + 4];
    at += 5;
    let valueLength: number;
    if (kind === STRING) {
      valueLength = lengths[bytes.readUInt32LE(at)]!;
      at += 4;
    } else if (kind === BYTES) {
      valueLength = bytes.readUInt32LE(at);
      at += 4 + valueLength;
    } else continue;
    headers++;
    body += sizeOfVarInt(nameLength) + nameLength + sizeOfVarInt(valueLength) + valueLength;
  }
  return body + sizeOfVarInt(headers);
}

/** `writeFields` of a framed record: its bytes copied from its batch's. */
function writeFramedFields(buf: Buffer, pos: number, m: Framed): number {
  const { bytes, starts, lengths } = m.frame;
  pos = writeRange(buf, pos, bytes, m.keyAt, m.keyLength);
  pos = writeRange(buf, pos, bytes, m.valueAt, m.valueLength);
  let at = m.headersAt;
  const count = bytes.readUInt16LE(at);
  at += 2;
  let headers = 0;
  for (let h = 0, scan = at; h < count; h++) {
    const kind = bytes[scan + 4];
    scan += 5;
    if (kind === STRING) scan += 4;
    else if (kind === BYTES) scan += 4 + bytes.readUInt32LE(scan);
    else continue;
    headers++;
  }
  pos = writeVarInt(buf, pos, headers);
  for (let h = 0; h < count; h++) {
    const name = bytes.readUInt32LE(at);
    const kind = bytes[at + 4];
    at += 5;
    if (kind === STRING) {
      pos = writeRange(buf, pos, bytes, starts[name]!, lengths[name]!);
      const value = bytes.readUInt32LE(at);
      at += 4;
      pos = writeRange(buf, pos, bytes, starts[value]!, lengths[value]!);
    } else if (kind === BYTES) {
      pos = writeRange(buf, pos, bytes, starts[name]!, lengths[name]!);
      const length = bytes.readUInt32LE(at);
      pos = writeRange(buf, pos, bytes, at + 4, length);
      at += 4 + length;
    }
  }
  return pos;
}

/**
 * A field of `length` bytes from `from` at `start` (length -1: none, written as null). Keys
 * and headers are a few bytes each: `copyRange` copies those in a loop, cheaper than a call.
 */
function writeRange(buf: Buffer, pos: number, from: Buffer, start: number, length: number): number {
  if (length < 0) {
    buf[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarInt(buf, pos, length);
  return copyRange(buf, pos, from, start, start + length);
}

function writeBytes(buf: Buffer, pos: number, value: Buffer | null): number {
  if (value === null) {
    buf[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarInt(buf, pos, value.length);
  return pos + value.copy(buf, pos);
}

/** Kafka's sequence numbers wrap to 0 after 2^31 − 1. */
const SEQUENCE_SPAN = 2 ** 31;
/** Request starts remembered per partition, for retries of a recent request. */
const REMEMBERED = 8;

interface PartitionSequences {
  /** The client's number after the last request, and the records' number it stands for. */
  nextClient: number;
  nextRecord: number;
  /** Request starts seen: the client's number → the records'. */
  starts: Map<number, number>;
}

/**
 * One producer's record sequence numbers, from the client's: the client counts messages, and
 * a pack is one message of many records. For each request and partition, `first` gets the
 * client's first number for it and how many messages and records the request holds there, and
 * returns the first record's number, which the broker expects.
 *
 * Without packs both counts agree and so do the numbers. A retry of a request (the same
 * client number) gets the same numbers again. Numbers the client skipped (a request it
 * counted but never encoded) stay a gap of the same size, so the broker refuses what follows
 * with OUT_OF_ORDER_SEQUENCE_NUMBER as it would without packs, instead of taking new records
 * for a duplicate. A new producer id or epoch starts over, as the client's numbers do.
 */
export class RecordSequences {
  private producer: string | undefined;
  private readonly partitions = new Map<string, PartitionSequences>();

  first(
    producerId: bigint | undefined,
    producerEpoch: number | undefined,
    key: string,
    client: number,
    messages: number,
    records: number,
  ): number {
    const producer = `${producerId}:${producerEpoch}`;
    if (producer !== this.producer) {
      this.producer = producer;
      this.partitions.clear();
    }
    let p = this.partitions.get(key);
    let first: number;
    if (p === undefined) {
      first = client;
      p = { nextClient: client, nextRecord: client, starts: new Map() };
      this.partitions.set(key, p);
    } else {
      const known = p.starts.get(client);
      if (known !== undefined) first = known;
      else if (client >= p.nextClient) first = p.nextRecord + (client - p.nextClient);
      else
        throw new Error(
          `kafka produce: no record sequence is known for the client's sequence ${client} of ${key} (the oldest kept is ${p.starts.keys().next().value})`,
        );
    }
    p.starts.delete(client);
    p.starts.set(client, first);
    if (p.starts.size > REMEMBERED) p.starts.delete(p.starts.keys().next().value!);
    if (client + messages >= p.nextClient) {
      p.nextClient = client + messages;
      p.nextRecord = first + records;
    }
    return first % SEQUENCE_SPAN;
  }
}
