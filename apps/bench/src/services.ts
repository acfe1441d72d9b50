import { cpus } from 'node:os';
import { errorMessage, log } from './util.js';

/**
 * The PostgreSQL and Kafka the bench runs against. By default a fresh local server and a
 * fresh broker from @nanosync/testcontainers, owned and torn down by the bench; or an
 * existing PostgreSQL/Kafka given by NANOSYNC_BENCH_PG_URL / NANOSYNC_BENCH_KAFKA_BROKERS
 * (with NANOSYNC_BENCH_KAFKA_LIB naming a Kafka jars folder for ProducerPerformance).
 */
export interface BenchPostgres {
  /** Superuser URL of the bench's own database. */
  url: string;
  close(): Promise<void>;
}

export interface BenchKafka {
  brokers: string[];
  close(): Promise<void>;
}

/** Server settings for the bench: logical decoding, room for several slots, no checkpoint storms while generating a backlog. */
export const PG_SETTINGS: Record<string, string> = {
  wal_level: 'logical',
  max_wal_senders: '20',
  max_replication_slots: '20',
  max_wal_size: '8GB',
  shared_buffers: '512MB',
  max_worker_processes: String(Math.max(8, cpus().length * 2)),
};

export async function startBenchPostgres(): Promise<BenchPostgres> {
  const external = process.env.NANOSYNC_BENCH_PG_URL;
  const pg = await import('pg');
  if (external) {
    const name = `nanosync_bench_${Date.now().toString(36)}`;
    const admin = new pg.default.Client({ connectionString: external });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(external);
    url.pathname = `/${name}`;
    log(`using PostgreSQL from NANOSYNC_BENCH_PG_URL, database ${name}`);
    return {
      url: url.toString(),
      async close() {
        const client = new pg.default.Client({ connectionString: external });
        try {
          await client.connect();
          await client.query(
            `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`,
            [name],
          );
          await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } catch (error) {
          log(`could not drop database ${name}: ${errorMessage(error)}`);
        } finally {
          await client.end().catch(() => {});
        }
      },
    };
  }
  const { startPostgres } = await import('@nanosync/testcontainers');
  const service = await startPostgres({ fresh: true, settings: PG_SETTINGS });
  const url = await service.createDatabase('nanosync_bench');
  // Disposing (not just stopping) also removes the server's data folder.
  return { url, close: async () => await service[Symbol.asyncDispose]() };
}

export async function startBenchKafka(): Promise<BenchKafka> {
  const external = process.env.NANOSYNC_BENCH_KAFKA_BROKERS;
  if (external) {
    log('using Kafka from NANOSYNC_BENCH_KAFKA_BROKERS');
    return { brokers: external.split(',').map((s) => s.trim()), close: async () => {} };
  }
  const { startKafka } = await import('@nanosync/testcontainers');
  const service = await startKafka({ fresh: true });
  return { brokers: service.brokers, close: async () => await service[Symbol.asyncDispose]() };
}

/** A folder with the Kafka jars (kafka-tools for ProducerPerformance, kafka-clients for the version). */
export async function benchKafkaLibDir(): Promise<string> {
  if (process.env.NANOSYNC_BENCH_KAFKA_LIB) return process.env.NANOSYNC_BENCH_KAFKA_LIB;
  const { kafkaLibDir } = await import('@nanosync/testcontainers');
  return kafkaLibDir();
}
