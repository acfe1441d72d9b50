import { existsSync } from 'node:fs';
import type { Admin, Kafka } from 'kafkajs';
import type { BenchOptions } from './args.js';
import type { ProducerSettings } from './debezium/connect.js';
import type { DebeziumJars } from './debezium/resolve.js';

/** Everything a scenario needs, prepared once by main. */
export interface BenchContext {
  options: BenchOptions;
  /** Short suffix that keeps this run's slots, topics and pipelines apart from anyone else's. */
  runId: string;
  workRoot: string;
  pgUrl: string;
  pgMajor: string;
  brokers: string[];
  kafka: Kafka;
  admin: Admin;
  /** Jars for Kafka Connect + Debezium, or why Debezium cannot run. */
  debezium: DebeziumJars | { unavailable: string };
  /** Kafka jars folder (ProducerPerformance), or why it is missing. */
  kafkaLib: { dir: string } | { unavailable: string };
  producer: ProducerSettings;
  cores: number;
  /** nanosync's S2 drain rate (100-row transactions), events/s: S3 loads at fractions of it. */
  s2Rate?: number;
}

/** A PostgreSQL client binary of the server's major version when installed, else the one on PATH. */
export function pgBinary(ctx: Pick<BenchContext, 'pgMajor'>, name: string): string {
  const versioned = `/usr/lib/postgresql/${ctx.pgMajor}/bin/${name}`;
  return existsSync(versioned) ? versioned : name;
}

export function debeziumReason(ctx: BenchContext): string | undefined {
  if (ctx.options.skipDebezium) return 'skipped (--skip-debezium)';
  return 'unavailable' in ctx.debezium ? ctx.debezium.unavailable : undefined;
}
