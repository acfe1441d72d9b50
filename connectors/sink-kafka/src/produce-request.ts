/**
 * The Produce request body of @platformatic/kafka 2.12.1, encoded straight into one buffer.
 *
 * The client builds every record with a Writer over a list of small buffers (one per field and
 * per varint, about twenty per record with the sink's four headers), gathers the lists and
 * concatenates them per batch, and subtracts BigInt timestamps per record: about a third of the
 * main thread and half of all allocation when the sink writes to Kafka. This module computes
 * every size first and then writes the request into a single buffer (through one scratch
 * buffer per compressed batch), with the timestamp deltas as numbers.
 *
 * The bytes are the client's own, bit for bit (test/unit/produce-request.test.ts compares them
 * with the client's `createRequest` of every Produce version): the same record layout, the same
 * order of topics and partitions, the same CRC-32C (the client's) and the same compressors (the
 * client's `compressionsAlgorithms`; gzip in zlib's thread pool, as the client does, so such a
 * request is returned as a promise). Inputs the fast path does not cover go to the client's
 * own encoder: keys, values or header fields that
 * are not Buffers (or null/undefined), headers that are not a Map, timestamps that are not
 * BigInts or that lie 2^31 ms or more from the batch's first one.
 *
 * A message whose value is a `PackedRecords` (packed-records.ts) holds its partition's records
 * already in their final layout: they are copied (or compressed) as they are, and the batch's
 * first sequence number comes from the producer's `RecordSequences`, which counts records where
 * the client counts messages.
 */
import { compressionsAlgorithms, crc32c, Writer } from '@platformatic/kafka';
import {
  PackedRecords,
  type RecordSequences,
  sizeOfUnsignedVarInt,
  sizeOfVarInt,
  writeUnsignedVarInt,
  writeVarInt,
} from './packed-records.js';

/** A message as the client's producer hands it to the Produce API (already serialized). */
export interface ProduceMessage {
  topic: string;
  partition?: number;
  key?: Buffer | null | undefined;
  /** A pack of records (packed-records.ts) instead of one record's value: its partition's only message. */
  value?: Buffer | PackedRecords | null | undefined;
  headers?: Map<Buffer | null | undefined, Buffer | null | undefined>;
  timestamp?: bigint;
}

/** The options the client's producer passes to the Produce API. */
export interface ProduceOptions {
  compression?: string;
  producerId?: bigint;
  producerEpoch?: number;
  sequences?: { getWithDefault(key: string, fallback: number): number };
  transactionalId?: string | null;
  partitionLeaderEpoch?: number;
}

export type RequestWriter = InstanceType<typeof Writer>;
/** A Produce request builder with the client's signature (its own, or ours). */
export type CreateRequest = (
  acks: number,
  timeout: number,
  topicData: ProduceMessage[],
  options?: ProduceOptions,
) => RequestWriter | Promise<RequestWriter>;

/** FirstOffset .. Records count: the fixed part of a record batch (v2). */
const BATCH_OVERHEAD = 61;
/** From FirstOffset to the CRC's end: what the CRC does not cover. */
const CRC_START = 21;
const IS_TRANSACTIONAL = 1 << 4;
const INT31 = 0x80000000;

const sizeOfVarIntBytes = (value: Buffer | null | undefined): number =>
  value == null ? 1 : sizeOfVarInt(value.length) + value.length;

function writeVarIntBytes(buf: Buffer, pos: number, value: Buffer | null | undefined): number {
  if (value == null) {
    buf[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarInt(buf, pos, value.length);
  return pos + value.copy(buf, pos);
}

/** One partition's records: the messages, their sizes and, when compressed, the compressed bytes. */
interface PartitionBatch {
  partition: string;
  messages: ProduceMessage[];
  /** Records in the batch: the messages, or the records of the partition's one pack. */
  count: number;
  /** The partition's one pack, written as its records already are. */
  packed: PackedRecords | undefined;
  /** Bytes of the records (uncompressed), then the batch's records part as sent. */
  recordsSize: number;
  /** Each record's body size (without its own length varint). */
  sizes: Int32Array;
  deltas: Int32Array;
  firstTimestamp: bigint;
  maxTimestamp: bigint;
  /** The producer's next sequence for the partition, read when the batch is measured (as the client does). */
  firstSequence: number;
  compressed: Buffer | undefined;
}

const isBytes = (v: unknown): v is Buffer | null | undefined => v == null || Buffer.isBuffer(v);

/**
 * Sizes of every record of one partition, or undefined when a message is outside what this
 * encoder covers (then the client's encoder takes the whole request).
 */
function measure(partition: string, messages: ProduceMessage[]): PartitionBatch | undefined {
  const n = messages.length;
  const packed = messages[0]!.value;
  if (packed instanceof PackedRecords) {
    const timestamp = messages[0]!.timestamp;
    if (n !== 1 || typeof timestamp !== 'bigint') return undefined;
    return {
      partition,
      messages,
      count: packed.count,
      packed,
      recordsSize: packed.bytes.length,
      sizes: NO_SIZES,
      deltas: NO_SIZES,
      firstTimestamp: timestamp,
      maxTimestamp: timestamp,
      firstSequence: 0,
      compressed: undefined,
    };
  }
  const sizes = new Int32Array(n);
  const deltas = new Int32Array(n);
  const firstTimestamp = messages[0]!.timestamp as bigint;
  let maxTimestamp = firstTimestamp;
  let lastTimestamp = firstTimestamp;
  let lastDelta = 0;
  let recordsSize = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    const ts = m.timestamp;
    if (typeof ts !== 'bigint') return undefined;
    if (ts !== lastTimestamp) {
      const delta = ts - firstTimestamp;
      if (delta >= INT31 || delta < -INT31) return undefined;
      lastTimestamp = ts;
      lastDelta = Number(delta);
      if (ts > maxTimestamp) maxTimestamp = ts;
    }
    deltas[i] = lastDelta;
    const { key, value, headers } = m;
    if (!isBytes(key) || !isBytes(value) || !(headers instanceof Map)) return undefined;
    let size = 1 + sizeOfVarInt(lastDelta) + sizeOfVarInt(i) + sizeOfVarIntBytes(key) + sizeOfVarIntBytes(value);
    headersSize = 0;
    headers.forEach(measureHeader);
    if (headersSize < 0) return undefined;
    size += sizeOfVarInt(headers.size) + headersSize;
    sizes[i] = size;
    recordsSize += sizeOfVarInt(size) + size;
  }
  return {
    partition,
    messages,
    count: n,
    packed: undefined,
    recordsSize,
    sizes,
    deltas,
    firstTimestamp,
    maxTimestamp,
    firstSequence: 0,
    compressed: undefined,
  };
}

const NO_SIZES = new Int32Array(0);

function writeRecords(buf: Buffer, pos: number, batch: PartitionBatch): number {
  if (batch.packed !== undefined) return pos + batch.packed.bytes.copy(buf, pos);
  const { messages, sizes, deltas } = batch;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    pos = writeVarInt(buf, pos, sizes[i]!);
    buf[pos++] = 0; // attributes
    pos = writeVarInt(buf, pos, deltas[i]!);
    pos = writeVarInt(buf, pos, i);
    pos = writeVarIntBytes(buf, pos, m.key);
    pos = writeVarIntBytes(buf, pos, m.value as Buffer | null | undefined);
    const headers = m.headers!;
    pos = writeVarInt(buf, pos, headers.size);
    target = buf;
    position = pos;
    headers.forEach(writeHeader);
    pos = position;
  }
  target = EMPTY;
  return pos;
}

// Headers are measured and written by `Map.forEach` with these two functions and the state
// below, not by `for … of`, which would make an entry array per header.
let headersSize = 0;
let target: Buffer = Buffer.alloc(0);
let position = 0;
const EMPTY = target;

function measureHeader(value: unknown, key: unknown): void {
  if (!isBytes(key) || !isBytes(value)) headersSize = Number.NEGATIVE_INFINITY;
  else headersSize += sizeOfVarIntBytes(key) + sizeOfVarIntBytes(value);
}

function writeHeader(value: Buffer | null | undefined, key: Buffer | null | undefined): void {
  position = writeVarIntBytes(target, position, key);
  position = writeVarIntBytes(target, position, value);
}

/** Topics, then partitions, in the order the client sends them (its `groupByProperty`). */
function groupBy<T>(entries: T[], property: keyof T): [string, T[]][] {
  const buckets: Record<string, T[]> = Object.create(null);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const key = e[property] as unknown as string;
    // biome-ignore lint/suspicious/noAssignInExpressions: the client's grouping, kept as it is
    (buckets[key] ||= []).push(e);
  }
  return Object.entries(buckets);
}

/**
 * The Produce request body (the part after the request header) for `version` (3 to 11), as
 * the client's `createRequest` encodes it; `fallback` is the client's own encoder for that
 * version, used for what this one does not cover. Like the client's, it fills in a message's
 * missing partition (0) and timestamp (now, one value for the request), so a retry of the
 * request sends the same timestamps.
 */
export function encodeProduceRequest(
  version: number,
  fallback: CreateRequest,
  acks: number,
  timeout: number,
  topicData: ProduceMessage[],
  options: ProduceOptions = {},
  sequences?: RecordSequences,
): RequestWriter | Promise<RequestWriter> {
  const compression = options.compression ?? 'none';
  const algorithm =
    compression === 'none' ? undefined : (compressionsAlgorithms as Record<string, CompressionAlgorithm>)[compression];
  if (compression !== 'none' && !algorithm)
    return viaClient(fallback, acks, timeout, topicData, options, sequences, `compression ${compression}`);
  // gzip: compressed off the main thread (zlib's thread pool), as the client does it; its
  // asynchronous request fills in a missing partition or timestamp with `??=`.
  const compressAsync = compression === 'gzip' ? algorithm?.compress : undefined;

  const now = BigInt(Date.now());
  for (const message of topicData) {
    if (compressAsync !== undefined) {
      message.partition ??= 0;
      message.timestamp ??= now;
      continue;
    }
    if (typeof message.partition === 'undefined') message.partition = 0;
    if (typeof message.timestamp === 'undefined') message.timestamp = now;
  }

  const flexible = version >= 9;
  const topics = groupBy(topicData, 'topic');
  const grouped: [Buffer, PartitionBatch[]][] = new Array(topics.length);
  let size = 2 + 4; // acks, timeout
  const transactionalId = options.transactionalId == null ? null : Buffer.from(options.transactionalId);
  size += transactionalId === null ? (flexible ? 1 : 2) : stringSize(transactionalId.length, flexible);
  size += arraySize(topics.length, flexible);
  for (let t = 0; t < topics.length; t++) {
    const [topic, messages] = topics[t]!;
    const name = Buffer.from(topic);
    const partitions = groupBy(messages, 'partition');
    const batches: PartitionBatch[] = new Array(partitions.length);
    size += stringSize(name.length, flexible) + arraySize(partitions.length, flexible) + (flexible ? 1 : 0);
    for (let p = 0; p < partitions.length; p++) {
      const [partition, partitionMessages] = partitions[p]!;
      const batch = measure(partition, partitionMessages);
      if (batch === undefined)
        return viaClient(fallback, acks, timeout, topicData, options, sequences, `partition ${topic}:${partition}`);
      const key = `${topic}:${partition}`;
      const client = options.sequences?.getWithDefault(key, 0);
      batch.firstSequence =
        client === undefined
          ? 0
          : sequences === undefined
            ? client
            : sequences.first(
                options.producerId,
                options.producerEpoch,
                key,
                client,
                partitionMessages.length,
                batch.count,
              );
      size += 4 + (flexible ? 1 : 0); // the partition's index and tagged fields
      batches[p] = batch;
    }
    grouped[t] = [name, batches];
  }
  if (flexible) size += 1; // the request's tagged fields
  const finish = () =>
    writeRequest(size, grouped, flexible, transactionalId, acks, timeout, options, algorithm?.bitmask ?? 0);
  if (!algorithm) return finish();
  // Every partition is measured and the request is ours: only now compress (a partition that
  // sent the request to the client's encoder above would have left these compressions unused).
  const pending: Promise<void>[] = [];
  for (const [, batches] of grouped)
    for (const batch of batches) {
      let records = batch.packed?.bytes;
      if (records === undefined) {
        records = Buffer.allocUnsafe(batch.recordsSize);
        writeRecords(records, 0, batch);
      }
      if (compressAsync !== undefined) pending.push(compressInto(batch, records, compressAsync));
      else batch.compressed = algorithm.compressSync(records);
    }
  return pending.length > 0 ? Promise.all(pending).then(finish) : finish();
}

/**
 * The client's encoder for a request this one does not cover, with the records' sequence
 * numbers (`sequences`) in place of the client's. Packs of records are this encoder's own:
 * one in such a request is a fault, thrown rather than sent wrong.
 */
function viaClient(
  fallback: CreateRequest,
  acks: number,
  timeout: number,
  topicData: ProduceMessage[],
  options: ProduceOptions,
  sequences: RecordSequences | undefined,
  why: string,
): RequestWriter | Promise<RequestWriter> {
  if (topicData.some((m) => m.value instanceof PackedRecords))
    throw new Error(`kafka produce: a pack of records cannot go to the client's encoder (${why})`);
  const client = options.sequences;
  if (sequences === undefined || client === undefined) return fallback(acks, timeout, topicData, options);
  const counts = new Map<string, number>();
  for (const m of topicData) {
    const key = `${m.topic}:${m.partition ?? 0}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const firsts = new Map<string, number>();
  for (const [key, count] of counts)
    firsts.set(
      key,
      sequences.first(options.producerId, options.producerEpoch, key, client.getWithDefault(key, 0), count, count),
    );
  return fallback(acks, timeout, topicData, {
    ...options,
    sequences: { getWithDefault: (key, fallbackValue) => firsts.get(key) ?? fallbackValue },
  });
}

/** Starts `compress` at once; even a synchronous throw becomes this promise's rejection (awaited by `Promise.all`). */
async function compressInto(
  batch: PartitionBatch,
  records: Buffer,
  compress: (data: Buffer) => Promise<Buffer>,
): Promise<void> {
  batch.compressed = await compress(records);
}

/** Writes the measured (and, where asked, compressed) request into one buffer. */
function writeRequest(
  measured: number,
  grouped: [Buffer, PartitionBatch[]][],
  flexible: boolean,
  transactionalId: Buffer | null,
  acks: number,
  timeout: number,
  options: ProduceOptions,
  compressionBitmask: number,
): RequestWriter {
  let size = measured;
  for (const [, batches] of grouped)
    for (const batch of batches) {
      const batchSize = BATCH_OVERHEAD + (batch.compressed?.length ?? batch.recordsSize);
      size += (flexible ? sizeOfUnsignedVarInt(batchSize + 1) : 4) + batchSize;
    }
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  if (transactionalId === null) {
    if (flexible) buf[pos++] = 0;
    else pos = buf.writeInt16BE(-1, pos);
  } else pos = writeString(buf, pos, transactionalId, flexible);
  pos = buf.writeInt16BE(acks, pos);
  pos = buf.writeInt32BE(timeout, pos);
  pos = writeArrayLength(buf, pos, grouped.length, flexible);
  const attributes = (options.transactionalId ? IS_TRANSACTIONAL : 0) | compressionBitmask;
  const producerId = options.producerId ?? -1n;
  const producerEpoch = options.producerEpoch ?? 0;
  const partitionLeaderEpoch = options.partitionLeaderEpoch ?? 0;
  for (const [name, batches] of grouped) {
    pos = writeString(buf, pos, name, flexible);
    pos = writeArrayLength(buf, pos, batches.length, flexible);
    for (const batch of batches) {
      const n = batch.count;
      const batchSize = BATCH_OVERHEAD + (batch.compressed?.length ?? batch.recordsSize);
      pos = buf.writeInt32BE(Number(batch.partition), pos);
      pos = flexible ? writeUnsignedVarInt(buf, pos, batchSize + 1) : buf.writeInt32BE(batchSize, pos);
      const start = pos;
      pos = buf.writeBigInt64BE(0n, pos); // FirstOffset
      pos = buf.writeInt32BE(batchSize - 12, pos); // Length: what follows it
      pos = buf.writeInt32BE(partitionLeaderEpoch, pos);
      buf[pos++] = 2; // Magic
      pos += 4; // CRC, below
      pos = buf.writeInt16BE(attributes, pos);
      pos = buf.writeInt32BE(n - 1, pos);
      pos = buf.writeBigInt64BE(batch.firstTimestamp, pos);
      pos = buf.writeBigInt64BE(batch.maxTimestamp, pos);
      pos = buf.writeBigInt64BE(producerId, pos);
      pos = buf.writeInt16BE(producerEpoch, pos);
      pos = buf.writeInt32BE(batch.firstSequence, pos);
      pos = buf.writeInt32BE(n, pos);
      pos = batch.compressed ? pos + batch.compressed.copy(buf, pos) : writeRecords(buf, pos, batch);
      buf.writeUInt32BE(crc32c(buf.subarray(start + CRC_START, pos)), start + CRC_START - 4);
      if (flexible) buf[pos++] = 0; // the partition's tagged fields
    }
    if (flexible) buf[pos++] = 0; // the topic's tagged fields
  }
  if (flexible) buf[pos++] = 0;
  if (pos !== size) throw new Error(`Produce request encoded ${pos} bytes of the ${size} measured`);

  const writer = Writer.create().append(buf);
  if (acks === 0) writer.context.noResponse = true;
  return writer;
}

interface CompressionAlgorithm {
  compressSync(data: Buffer): Buffer;
  /** gzip only: compression in zlib's thread pool. */
  compress?(data: Buffer): Promise<Buffer>;
  bitmask: number;
}

const stringSize = (length: number, flexible: boolean): number =>
  (flexible ? sizeOfUnsignedVarInt(length + 1) : 2) + length;
const arraySize = (length: number, flexible: boolean): number => (flexible ? sizeOfUnsignedVarInt(length + 1) : 4);

function writeString(buf: Buffer, pos: number, bytes: Buffer, flexible: boolean): number {
  pos = flexible ? writeUnsignedVarInt(buf, pos, bytes.length + 1) : buf.writeInt16BE(bytes.length, pos);
  return pos + bytes.copy(buf, pos);
}

const writeArrayLength = (buf: Buffer, pos: number, length: number, flexible: boolean): number =>
  flexible ? writeUnsignedVarInt(buf, pos, length + 1) : buf.writeInt32BE(length, pos);
