/**
 * S4's `@platformatic/kafka` side, in its own process so its CPU and memory are its own.
 * Drives the client exactly like kafkajs-producer.ts drives kafkajs, which is how the sink
 * drives its client: one idempotent producer (acks=all, one request in flight), the Java
 * client's key → partition placement (`compatibilityPartitioner`), sends of at most
 * max_bytes_in_flight bytes (counted like the sink counts them), each awaited before the
 * next, JSON keys and the sink's three headers. Values are cycled from the payload file.
 * With `sinkEncoder`, the Produce requests are the sink's own encoding (installFastProduce),
 * as in the sink. Prints one JSON line: { records, seconds, bytes }.
 *
 * argv: <json options>
 */
import { readFile } from 'node:fs/promises';
import { HEADER_OP, HEADER_POSITION, HEADER_TABLE, installFastProduce, recordSize } from '@nanosync/sink-kafka';
import { compatibilityPartitioner, type MessageToProduce, Producer } from '@platformatic/kafka';

interface Options {
  brokers: string[];
  topic: string;
  records: number;
  payloadFile: string;
  compression: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  /** The sink's max_bytes_in_flight: bytes handed to one send. */
  maxBytesInFlight: number;
  /** Produce requests encoded by the sink's encoder (installFastProduce), as the sink's producer does. */
  sinkEncoder?: boolean;
}

// Header names and values go to the wire as given: this client wants bytes, not strings.
const TABLE = Buffer.from(HEADER_TABLE);
const OP = Buffer.from(HEADER_OP);
const POSITION = Buffer.from(HEADER_POSITION);

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as Options;
  const payloads = (await readFile(options.payloadFile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => Buffer.from(line));
  const producer = new Producer({
    clientId: 'nanosync-bench-s4',
    bootstrapBrokers: options.brokers,
    idempotent: true,
    acks: -1,
    retries: 2,
    compression: options.compression,
    partitioner: compatibilityPartitioner,
    autocreateTopics: false,
  });
  if (options.sinkEncoder) installFastProduce(producer);
  const table = Buffer.from('public.bench_s1');
  const op = Buffer.from('read');
  const started = performance.now();
  let sent = 0;
  let bytes = 0;
  while (sent < options.records) {
    const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = [];
    let batchBytes = 0;
    while (sent + messages.length < options.records) {
      const i = sent + messages.length;
      const value = payloads[i % payloads.length] as Buffer;
      const key = Buffer.from(`{"id":"${i + 1}"}`);
      const position = Buffer.from(`0000000001A2B3C4:${i.toString(16).padStart(8, '0')}`);
      const headers = new Map<Buffer, Buffer>([
        [TABLE, table],
        [OP, op],
        [POSITION, position],
      ]);
      // Counted by the sink's own function, with the same names and bytes.
      const size = recordSize(key, value, { [HEADER_TABLE]: table, [HEADER_OP]: op, [HEADER_POSITION]: position });
      if (messages.length > 0 && batchBytes + size > options.maxBytesInFlight) break;
      messages.push({ topic: options.topic, key, value, headers });
      batchBytes += size;
      bytes += value.length;
    }
    await producer.send({ messages });
    sent += messages.length;
  }
  const seconds = (performance.now() - started) / 1000;
  await producer.close();
  process.stdout.write(`${JSON.stringify({ records: sent, seconds, bytes })}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
