import { randomBytes } from 'node:crypto';
import type { ConnectorContext, LogFields, Logger } from '@nanosync/core';
import kafkajs, { type IHeaders, type KafkaMessage } from 'kafkajs';
import { registerCompressionCodecs } from '../../src/compression.js';
import { type KafkaSinkConfig, kafkaSinkPropertiesSchema } from '../../src/config.js';
import type { DecodedChange } from '../../src/formats/index.js';
import { KafkaSink } from '../../src/sink.js';

const { Kafka, CompressionCodecs, CompressionTypes, logLevel } = kafkajs;

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Keeps log lines in memory so a test can look at them (a stand-in for core's logger). */
export function inMemoryLogger(lines: string[] = [], fields: LogFields = {}): Logger & { lines: string[] } {
  const write = (level: string) => (message: string, extra?: LogFields) => {
    lines.push(
      `${level} ${message} ${JSON.stringify({ ...fields, ...extra }, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`,
    );
  };
  return {
    lines,
    debug: write('DBG'),
    info: write('INF'),
    warn: write('WRN'),
    error: write('ERR'),
    child: (more) => inMemoryLogger(lines, { ...fields, ...more }),
  };
}

export interface SinkHandle extends AsyncDisposable {
  sink: KafkaSink;
  config: KafkaSinkConfig;
  logger: ReturnType<typeof inMemoryLogger>;
  abort: AbortController;
}

/** A sink of `properties`; `extra` adds to (or replaces) the pipeline context it is given. */
export function createSink(properties: Record<string, unknown>, extra: Partial<ConnectorContext> = {}): SinkHandle {
  const config = kafkaSinkPropertiesSchema.parse(properties);
  const logger = inMemoryLogger();
  const abort = new AbortController();
  const context: ConnectorContext = { pipeline: 'it', logger, signal: abort.signal, ...extra };
  const sink = new KafkaSink(config, context);
  return {
    sink,
    config,
    logger,
    abort,
    async [Symbol.asyncDispose]() {
      abort.abort();
      await sink.close();
    },
  };
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/**
 * Every record of `topic` from offset 0 up to the current high watermark of each
 * partition, read with a kafkajs consumer (which decompresses with the registered codecs).
 */
export async function consumeAll(
  brokers: string[],
  topic: string,
  kafkaConfig: Partial<kafkajs.KafkaConfig> = {},
): Promise<ConsumedRecord[]> {
  registerCompressionCodecs(kafkajs);
  countingCodecs();
  const kafka = new Kafka({ clientId: 'ns-test-reader', brokers, logLevel: logLevel.NOTHING, ...kafkaConfig });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(offsets.map((o) => [o.partition, BigInt(o.high) - BigInt(o.low)]));
  let left = [...remaining.values()].reduce((a, b) => a + b, 0n);
  const records: ConsumedRecord[] = [];
  if (left === 0n) return records;
  const consumer = kafka.consumer({ groupId: uniqueName('ns-test-group'), maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out reading ${topic}: ${left} records missing`)), 90_000);
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            records.push(consumedRecord(topic, partition, message));
            left -= 1n;
            if (left === 0n) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return records.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}

/** When `consumeCommitted` stops reading, and what it reads. */
export interface ConsumeOptions {
  /** Stop once this many records are read (fail after 90 s short of it). */
  count?: number;
  /** Without `count`: stop when nothing new has arrived for this long (default 4 s). */
  idleMs?: number;
  /** Read every record written, aborted ones too, not only the committed ones. */
  readUncommitted?: boolean;
}

/**
 * Every record of `topic` a read_committed consumer sees (with `readUncommitted`, every record
 * written, aborted ones too): read from the start until `count` records are read or, without a
 * count, until nothing new has arrived for `idleMs`. (Offsets cannot tell the end here: commit
 * markers and aborted records take offsets a consumer never sees.)
 */
export async function consumeCommitted(
  brokers: string[],
  topic: string,
  { count, idleMs = 4000, readUncommitted = false }: ConsumeOptions = {},
): Promise<ConsumedRecord[]> {
  registerCompressionCodecs(kafkajs); // the pipeline's records are snappy-compressed
  const kafka = new Kafka({ clientId: 'ns-eos-reader', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId: uniqueName('ns-eos-group'),
    maxWaitTimeInMs: 200,
    readUncommitted,
  });
  const records: ConsumedRecord[] = [];
  let crashed: unknown;
  consumer.on(consumer.events.CRASH, (event) => {
    crashed = event.payload.error;
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let last = Date.now();
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        last = Date.now();
        records.push(consumedRecord(topic, partition, message));
      },
    });
    const started = Date.now();
    const reading = () =>
      count === undefined
        ? Date.now() - last < idleMs || (records.length === 0 && Date.now() - started < 30_000)
        : records.length < count;
    while (reading()) {
      if (crashed) throw crashed;
      if (count !== undefined && Date.now() - started > 90_000) {
        throw new Error(`timed out reading ${topic}: ${count - records.length} of ${count} records missing`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await consumer.disconnect();
  }
  return records.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}

/** A message as kafkajs's consumer hands it over, as a `ConsumedRecord` (text key and headers). */
export function consumedRecord(topic: string, partition: number, message: KafkaMessage): ConsumedRecord {
  return {
    topic,
    partition,
    offset: message.offset,
    key: message.key ? message.key.toString('utf8') : null,
    value: message.value,
    headers: headerText(message.headers ?? {}),
  };
}

function headerText(headers: IHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = v.toString();
  return out;
}

/** How many record batches each codec decompressed while consuming, by kafkajs compression type. */
export const decompressedBatches = new Map<number, number>();

/**
 * Wrap the installed codecs so consuming counts decompressions per type: proof that the
 * records on the wire really were compressed with the configured codec.
 */
function countingCodecs(): void {
  const table = CompressionCodecs as unknown as Record<
    number,
    (() => { compress: unknown; decompress(b: Buffer): Promise<Buffer> }) & { counting?: true }
  >;
  for (const type of [CompressionTypes.GZIP, CompressionTypes.Snappy, CompressionTypes.LZ4, CompressionTypes.ZSTD]) {
    const original = table[type];
    if (!original || original.counting) continue;
    const wrapped = Object.assign(
      () => {
        const codec = original();
        return {
          compress: codec.compress,
          decompress: async (buffer: Buffer) => {
            decompressedBatches.set(type, (decompressedBatches.get(type) ?? 0) + 1);
            return codec.decompress(buffer);
          },
        };
      },
      { counting: true as const },
    );
    table[type] = wrapped;
  }
}

export async function topicPartitions(brokers: string[], topic: string): Promise<number> {
  const admin = new Kafka({ clientId: 'ns-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    return meta.topics[0]?.partitions.length ?? 0;
  } finally {
    await admin.disconnect();
  }
}

export async function createTopic(
  brokers: string[],
  topic: string,
  partitions = 1,
  configEntries: { name: string; value: string }[] = [],
): Promise<void> {
  const admin = new Kafka({ clientId: 'ns-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, configEntries }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/**
 * A topic reduced by key, in offset order (one partition): a delete or a tombstone removes its
 * key, a truncate every key seen so far, anything else keeps its after image (through `row`).
 */
export function reduceByKey<R = Record<string, unknown>>(
  records: ConsumedRecord[],
  decode: (value: Buffer) => DecodedChange,
  row: (after: Record<string, unknown>) => R = (after) => after as R,
): Map<string, R> {
  const live = new Map<string, R>();
  for (const record of records) {
    if (record.value === null) {
      live.delete(record.key!);
      continue;
    }
    const change = decode(record.value);
    if (change.op === 'truncate') live.clear();
    else if (change.op === 'delete') live.delete(record.key!);
    else live.set(record.key!, row(change.after!));
  }
  return live;
}
