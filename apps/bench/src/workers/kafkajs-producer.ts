/**
 * S4's kafkajs side, in its own process so its CPU and memory are its own. Drives kafkajs
 * the way nanosync's Kafka sink does: one idempotent producer with one request in flight,
 * acks=all, the sink's compression codecs, `sendBatch` calls of at most max_bytes_in_flight
 * (counted like the sink counts them), each awaited before the next, JSON keys and the
 * sink's three headers. Values are cycled from the payload file.
 * Prints one JSON line: { records, seconds, bytes }.
 *
 * argv: <json options>
 */
import { readFile } from 'node:fs/promises';
import { HEADER_OP, HEADER_POSITION, HEADER_TABLE, recordSize, registerCompressionCodecs } from '@nanosync/sink-kafka';
import kafkajs, { type IHeaders, type Message } from 'kafkajs';

interface Options {
  brokers: string[];
  topic: string;
  records: number;
  payloadFile: string;
  compression: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  /** The sink's max_bytes_in_flight: bytes handed to one sendBatch. */
  maxBytesInFlight: number;
}

const COMPRESSION_CODES = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as Options;
  registerCompressionCodecs(kafkajs);
  const payloads = (await readFile(options.payloadFile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => Buffer.from(line));
  const kafka = new kafkajs.Kafka({
    clientId: 'nanosync-bench-s4',
    brokers: options.brokers,
    logLevel: kafkajs.logLevel.NOTHING,
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  const started = performance.now();
  let sent = 0;
  let bytes = 0;
  while (sent < options.records) {
    const messages: Message[] = [];
    let batchBytes = 0;
    while (sent + messages.length < options.records) {
      const i = sent + messages.length;
      const value = payloads[i % payloads.length] as Buffer;
      const key = Buffer.from(`{"id":"${i + 1}"}`);
      const headers: IHeaders = {
        [HEADER_TABLE]: 'public.bench_s1',
        [HEADER_OP]: 'read',
        [HEADER_POSITION]: `0000000001A2B3C4:${i.toString(16).padStart(8, '0')}`,
      };
      const size = recordSize(key, value, headers);
      if (messages.length > 0 && batchBytes + size > options.maxBytesInFlight) break;
      messages.push({ key, value, headers });
      batchBytes += size;
      bytes += value.length;
    }
    await producer.sendBatch({
      acks: -1,
      compression: COMPRESSION_CODES[options.compression],
      topicMessages: [{ topic: options.topic, messages }],
    });
    sent += messages.length;
  }
  const seconds = (performance.now() - started) / 1000;
  await producer.disconnect();
  process.stdout.write(`${JSON.stringify({ records: sent, seconds, bytes })}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
