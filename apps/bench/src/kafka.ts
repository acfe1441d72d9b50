import { registerCompressionCodecs } from '@nanosync/sink-kafka';
import kafkajs, { type Admin, type Consumer, Kafka, logLevel } from 'kafkajs';

export function kafkaClient(brokers: string[], clientId = 'nanosync-bench'): Kafka {
  // kafkajs reads only gzip by itself; the topics hold snappy/lz4/zstd batches from both tools.
  registerCompressionCodecs(kafkajs);
  return new Kafka({ clientId, brokers, logLevel: logLevel.NOTHING, retry: { retries: 8 } });
}

/** Creates a topic whose message timestamps are the broker's arrival time (for latency). */
export async function createTopic(admin: Admin, topic: string, partitions = 1): Promise<void> {
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      {
        topic,
        numPartitions: partitions,
        replicationFactor: 1,
        configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }],
      },
    ],
  });
}

/** Messages stored in a topic (sum over partitions of high watermark − low watermark); 0 if it does not exist yet. */
export async function countMessages(admin: Admin, topic: string): Promise<number> {
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    let total = 0;
    for (const partition of offsets) total += Number(partition.high) - Number(partition.low);
    return total;
  } catch {
    return 0;
  }
}

export interface LatencySample {
  /** Commit time at the source, epoch ms (may carry a fraction). */
  committedAtMs: number;
  /** Broker arrival time (LogAppendTime), epoch ms. */
  arrivedAtMs: number;
  /** When the tool itself handled the event, if the message says (Debezium's envelope `ts_us`). */
  processedAtMs?: number;
}

/** Debezium's envelope-level `ts_us`/`ts_ms`: when the connector processed the event (not in nanosync's envelope). */
export function processedTimeOf(value: unknown): number | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  if (!record.source) return undefined;
  if (typeof record.ts_us === 'number') return record.ts_us / 1000;
  if (typeof record.ts_ms === 'number') return record.ts_ms;
  return undefined;
}

/**
 * Pulls the source commit time (epoch ms, with a fraction) out of a message value: nanosync's
 * `_ns_committed_at` (microseconds since the epoch, as a number or a numeric string; an ISO
 * timestamp is accepted too), Debezium's `source.ts_us` / `source.ts_ms`.
 */
export function commitTimeOf(value: unknown): number | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  const nanosync = record._ns_committed_at;
  if (typeof nanosync === 'number') return nanosync / 1000;
  if (typeof nanosync === 'string') {
    if (/^\d+$/.test(nanosync)) return Number(nanosync) / 1000;
    const ms = parseIsoMicros(nanosync);
    return Number.isFinite(ms) ? ms : undefined;
  }
  const source = record.source;
  if (source && typeof source === 'object') {
    const s = source as Record<string, unknown>;
    if (typeof s.ts_us === 'number') return s.ts_us / 1000;
    if (typeof s.ts_ms === 'number') return s.ts_ms;
  }
  return undefined;
}

/** ISO-8601 timestamp → epoch ms, keeping sub-millisecond digits that Date.parse drops. */
export function parseIsoMicros(text: string): number {
  const match = /^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(text.trim());
  if (!match) return Date.parse(text);
  const base = Date.parse(`${match[1]}${match[3] ?? 'Z'}`);
  const fraction = match[2] ? Number(`0${match[2]}`) * 1000 : 0;
  return base + fraction;
}

/**
 * A consumer that records (commit time, broker time) for every message of a topic from the
 * beginning. Runs in the bench process; its own speed does not matter because the broker
 * stamped the arrival time on append, but its CPU does on a machine whose cores the measured
 * pipeline shares: S3 keeps it paused while a load runs (`pause`) and lets it read the
 * phase's messages once they are all on the broker (`resume`).
 */
export class LatencyCollector {
  readonly samples: LatencySample[] = [];
  unparsed = 0;
  /** Set when the consumer crashed (it does not restart): the reason. */
  crashed: string | undefined;
  private consumer: Consumer | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: string,
  ) {}

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: `nanosync-bench-${this.topic}-${Date.now()}`,
      maxWaitTimeInMs: 100,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, (event) => {
      this.crashed = event.payload.error.message;
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          const arrivedAtMs = Number(message.timestamp);
          let committedAtMs: number | undefined;
          let processedAtMs: number | undefined;
          try {
            const value: unknown = message.value ? JSON.parse(message.value.toString('utf8')) : undefined;
            committedAtMs = commitTimeOf(value);
            processedAtMs = processedTimeOf(value);
          } catch {
            committedAtMs = undefined;
          }
          if (committedAtMs === undefined || !Number.isFinite(arrivedAtMs)) this.unparsed++;
          else
            this.samples.push(
              processedAtMs === undefined
                ? { committedAtMs, arrivedAtMs }
                : { committedAtMs, arrivedAtMs, processedAtMs },
            );
        }
      },
    });
  }

  /** Stops fetching (a fetch under way may still be recorded); `start` must have run. */
  pause(): void {
    this.consumer?.pause([{ topic: this.topic }]);
  }

  resume(): void {
    this.consumer?.resume([{ topic: this.topic }]);
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => {});
    this.consumer = undefined;
  }
}
