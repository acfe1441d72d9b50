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
import { BYTES, Framed, type FramedRecord, type FramedRecords, type FrameStrings, getU32, STRING } from './encoded.js';
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

/** The records a send packs, by index: messages, or a run of framed records. */
interface PackSource {
  readonly length: number;
  topic(i: number): string;
  /** The record's partition hash as `javaPartitioner` takes it (0 without a key), before the modulo. */
  hash(i: number): number;
  /** The size of the record's key, value and headers in a batch. */
  fieldsSize(i: number): number;
  /** Writes the record's key, value and headers at `pos`; returns the end. */
  writeFields(buf: Buffer, pos: number, i: number): number;
}

/** Messages as a pack source: a framed record's fields are copied from its batch's bytes. */
class MessagesSource implements PackSource {
  constructor(private readonly messages: readonly OutgoingMessage[]) {}
  get length(): number {
    return this.messages.length;
  }
  topic(i: number): string {
    return this.messages[i]!.topic;
  }
  hash(i: number): number {
    const m = this.messages[i]!;
    if (!(m instanceof Framed)) return javaPartitioner(m, m.key);
    return m.keyLength < 0 ? 0 : murmur2(m.frame.bytes, m.keyAt, m.keyAt + m.keyLength) & 0x7fffffff;
  }
  fieldsSize(i: number): number {
    const m = this.messages[i]!;
    return m instanceof Framed ? framedFieldsSize(m.frame, m.keyLength, m.valueLength, m.headersAt) : fieldsSize(m);
  }
  writeFields(buf: Buffer, pos: number, i: number): number {
    const m = this.messages[i]!;
    return m instanceof Framed
      ? writeFramedFields(buf, pos, m.frame, m.keyAt, m.keyLength, m.valueAt, m.valueLength, m.headersAt)
      : writeFields(buf, pos, m);
  }
}

/** Records `from` to `to` of a write's framed records, sent together without an object per record. */
export class FramedRun implements PackSource {
  constructor(
    readonly records: FramedRecords,
    readonly from: number,
    readonly to: number,
  ) {}
  get length(): number {
    return this.to - this.from;
  }
  topic(i: number): string {
    return this.records.topic(this.from + i);
  }
  hash(i: number): number {
    const r = this.records;
    const n = this.from + i;
    const length = r.keyLength(n);
    if (length < 0) return 0;
    const at = r.keyAt(n);
    return murmur2(r.frameOf(n).bytes, at, at + length) & 0x7fffffff;
  }
  fieldsSize(i: number): number {
    const r = this.records;
    const n = this.from + i;
    return framedFieldsSize(r.frameOf(n), r.keyLength(n), r.valueLength(n), r.headersAt(n));
  }
  writeFields(buf: Buffer, pos: number, i: number): number {
    const r = this.records;
    const n = this.from + i;
    return writeFramedFields(
      buf,
      pos,
      r.frameOf(n),
      r.keyAt(n),
      r.keyLength(n),
      r.valueAt(n),
      r.valueLength(n),
      r.headersAt(n),
    );
  }
  /** Record `i` of the run as an object. */
  message(i: number): FramedRecord {
    return this.records.record(this.from + i);
  }
  /** The run's records as objects (for what needs messages: the client's encoder, a transaction). */
  messages(): FramedRecord[] {
    const out: FramedRecord[] = new Array(this.length);
    for (let i = 0; i < out.length; i++) out[i] = this.records.record(this.from + i);
    return out;
  }
  /** Records `from` to `to` of this run (indexes within it). */
  slice(from: number, to: number): FramedRun {
    return new FramedRun(this.records, this.from + from, this.from + to);
  }
}

/**
 * `messages` as one pack per partition, in the order each partition first appears; each
 * partition's records keep their order. Keys are placed like `javaPartitioner` places them
 * (records without a key on partition 0), modulo the topic's partition count, which
 * `partitionsOf` gives; undefined when it knows no count for a topic (the client then places
 * the records itself, and learns the count).
 *
 * The records' bytes are what the client's encoder writes for the same messages: key, value
 * and the headers that are not undefined, in their order, string values as UTF-8. A
 * `FramedRun` packs into the same bytes as its records as objects would.
 */
export function packRecords(
  messages: readonly OutgoingMessage[] | FramedRun,
  partitionsOf: (topic: string) => number | undefined,
): PackedMessage[] | undefined {
  const source: PackSource = messages instanceof FramedRun ? messages : new MessagesSource(messages);
  const n = source.length;
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
    const topic = source.topic(i);
    if (topic !== lastTopic) {
      const count = partitionsOf(topic);
      if (count === undefined || !(count > 0)) return undefined;
      lastTopic = topic;
      lastCount = count;
      let list = byTopic.get(topic);
      if (list === undefined) {
        list = [];
        byTopic.set(topic, list);
      }
      lastPacks = list;
    }
    const partition = source.hash(i) % lastCount;
    let pack = lastPacks[partition];
    if (pack === undefined) {
      pack = { topic, partition, count: 0, bytes: 0, at: 0, start: 0 };
      lastPacks[partition] = pack;
      packs.push(pack);
    }
    // attributes, timestamp delta 0, offset delta, key, value, headers
    const body = 2 + sizeOfVarInt(pack.count) + source.fieldsSize(i);
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
    const pack = owners[i]!;
    let pos = writeVarInt(buf, pack.at, bodies[i]!);
    buf[pos++] = 0; // attributes
    buf[pos++] = 0; // timestamp delta
    pos = writeVarInt(buf, pos, pack.count++);
    pack.at = source.writeFields(buf, pos, i);
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
function framedFieldsSize(frame: FrameStrings, keyLength: number, valueLength: number, headersAt: number): number {
  const { bytes, lengths } = frame;
  let body = keyLength < 0 ? 1 : sizeOfVarInt(keyLength) + keyLength;
  body += valueLength < 0 ? 1 : sizeOfVarInt(valueLength) + valueLength;
  let at = headersAt;
  const count = bytes[at]! | (bytes[at + 1]! << 8);
  at += 2;
  let headers = 0;
  for (let h = 0; h < count; h++) {
    const nameLength = lengths[getU32(bytes, at)]!;
    const kind = bytes[at + 4];
    at += 5;
    let valueLength: number;
    if (kind === STRING) {
      valueLength = lengths[getU32(bytes, at)]!;
      at += 4;
    } else if (kind === BYTES) {
      valueLength = getU32(bytes, at);
      at += 4 + valueLength;
    } else continue;
    headers++;
    body += sizeOfVarInt(nameLength) + nameLength + sizeOfVarInt(valueLength) + valueLength;
  }
  return body + sizeOfVarInt(headers);
}

/** `writeFields` of a framed record: its bytes copied from its batch's. */
function writeFramedFields(
  buf: Buffer,
  pos: number,
  frame: FrameStrings,
  keyAt: number,
  keyLength: number,
  valueAt: number,
  valueLength: number,
  headersAt: number,
): number {
  const { bytes, starts, lengths } = frame;
  pos = writeRange(buf, pos, bytes, keyAt, keyLength);
  pos = writeRange(buf, pos, bytes, valueAt, valueLength);
  let at = headersAt;
  const count = bytes[at]! | (bytes[at + 1]! << 8);
  at += 2;
  let headers = 0;
  for (let h = 0, scan = at; h < count; h++) {
    const kind = bytes[scan + 4];
    scan += 5;
    if (kind === STRING) scan += 4;
    else if (kind === BYTES) scan += 4 + getU32(bytes, scan);
    else continue;
    headers++;
  }
  pos = writeVarInt(buf, pos, headers);
  for (let h = 0; h < count; h++) {
    const name = getU32(bytes, at);
    const kind = bytes[at + 4];
    at += 5;
    if (kind === STRING) {
      pos = writeRange(buf, pos, bytes, starts[name]!, lengths[name]!);
      const value = getU32(bytes, at);
      at += 4;
      pos = writeRange(buf, pos, bytes, starts[value]!, lengths[value]!);
    } else if (kind === BYTES) {
      pos = writeRange(buf, pos, bytes, starts[name]!, lengths[name]!);
      const length = getU32(bytes, at);
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
