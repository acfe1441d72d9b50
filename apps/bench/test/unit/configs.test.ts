import { parseConfig } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import {
  connectorProperties,
  type DebeziumConnectorSpec,
  debeziumTopic,
  workerProperties,
} from '../../src/debezium/connect.js';
import { nanosyncConfigYaml } from '../../src/nanosync.js';

function props(text: string): Map<string, string> {
  return new Map(
    text
      .trim()
      .split('\n')
      .map((line) => {
        const eq = line.indexOf('=');
        return [line.slice(0, eq), line.slice(eq + 1)] as [string, string];
      }),
  );
}

const spec: DebeziumConnectorSpec = {
  name: 's2_tx100_abc',
  pgUrl: 'postgres://postgres:s3cret@127.0.0.1:54321/nanosync_bench',
  brokers: ['127.0.0.1:39092'],
  table: 'public.bench_s2_tx100',
  topicPrefix: 'dbz_s2_tx100_abc',
  slot: 'dbz_s2_tx100_abc',
  publication: 'dbz_s2_tx100_abc',
  snapshotMode: 'no_data',
  snapshotThreads: 2,
  producer: { acks: 'all', compression: 'snappy', lingerMs: 0 },
  workDir: '/tmp/work',
};

describe('Debezium properties', () => {
  it('run the PostgreSQL connector over pgoutput against the bench database, one message per change', () => {
    const p = props(connectorProperties(spec));
    expect(p.get('connector.class')).toBe('io.debezium.connector.postgresql.PostgresConnector');
    expect(p.get('plugin.name')).toBe('pgoutput');
    expect(p.get('database.hostname')).toBe('127.0.0.1');
    expect(p.get('database.port')).toBe('54321');
    expect(p.get('database.user')).toBe('postgres');
    expect(p.get('database.password')).toBe('s3cret');
    expect(p.get('database.dbname')).toBe('nanosync_bench');
    expect(p.get('slot.name')).toBe('dbz_s2_tx100_abc');
    expect(p.get('table.include.list')).toBe('public.bench_s2_tx100');
    expect(p.get('snapshot.mode')).toBe('no_data');
    expect(p.get('snapshot.max.threads')).toBe('2');
    expect(p.get('tombstones.on.delete')).toBe('false');
    expect(debeziumTopic(spec)).toBe('dbz_s2_tx100_abc.public.bench_s2_tx100');
    expect(p.has('signal.data.collection')).toBe(false);
  });

  it('with a signal table (S5): the table is captured too and named as the signal collection (schema.table)', () => {
    const p = props(connectorProperties({ ...spec, signalTable: 'public.bench_s5_dbz_signal' }));
    expect(p.get('table.include.list')).toBe('public.bench_s2_tx100,public.bench_s5_dbz_signal');
    expect(p.get('signal.data.collection')).toBe('public.bench_s5_dbz_signal');
  });

  it('give the worker schemaless JSON, file offsets and the same producer settings as the sink', () => {
    const jars = {
      debeziumVersion: '3.2.3.Final',
      kafkaVersion: '3.9.2',
      libDir: '/jars/lib',
      pluginDir: '/jars/plugin',
    };
    const p = props(workerProperties(jars, spec, 18083));
    expect(p.get('value.converter')).toBe('org.apache.kafka.connect.json.JsonConverter');
    expect(p.get('value.converter.schemas.enable')).toBe('false');
    expect(p.get('key.converter.schemas.enable')).toBe('false');
    expect(p.get('offset.storage.file.filename')).toBe('/tmp/work/offsets.dat');
    expect(p.get('plugin.path')).toBe('/jars/plugin');
    expect(p.get('producer.acks')).toBe('all');
    expect(p.get('producer.compression.type')).toBe('snappy');
    expect(p.get('producer.linger.ms')).toBe('0');
    expect(p.get('listeners')).toBe('http://127.0.0.1:18083');
  });
});

describe('nanosync config', () => {
  it('is a valid config for a Kafka pipeline with the bench settings', () => {
    const yaml = nanosyncConfigYaml({
      name: 'bench-s2-tx100-abc',
      pgUrl: 'postgres://postgres@127.0.0.1:54321/nanosync_bench',
      table: 'public.bench_s2_tx100',
      replicationType: 'cdc',
      sink: { kind: 'kafka', brokers: ['127.0.0.1:39092'], topic: 'ns_s2_tx100_abc', compression: 'snappy' },
      workDir: '/tmp/work',
    });
    const { config } = parseConfig(yaml, { env: {} });
    const pipeline = config.pipelines[0];
    expect(pipeline?.name).toBe('bench-s2-tx100-abc');
    expect(pipeline?.replication_type).toBe('cdc');
    expect(pipeline?.source.tables).toEqual(['public.bench_s2_tx100']);
    expect(pipeline?.sinks[0]?.properties).toMatchObject({
      topic: 'ns_s2_tx100_abc',
      message_format: 'json',
      compression: 'snappy',
      tombstones: false,
    });
    expect(config.connections.find((c) => c.name === 'sink')?.properties).toMatchObject({ brokers: '127.0.0.1:39092' });
  });

  it('is a valid config for a file snapshot', () => {
    const yaml = nanosyncConfigYaml({
      name: 'bench-s1-file-abc',
      pgUrl: 'postgres://postgres@127.0.0.1:54321/nanosync_bench',
      table: 'public.bench_s1',
      replicationType: 'snapshot',
      sink: { kind: 'file', file: '/tmp/work/out/bench_s1.jsonl' },
      workDir: '/tmp/work',
      snapshotConcurrency: 4,
    });
    const { config } = parseConfig(yaml, { env: {} });
    expect(config.pipelines[0]?.replication_type).toBe('snapshot');
    expect(config.pipelines[0]?.snapshot.concurrency).toBe(4);
    expect(config.pipelines[0]?.sinks[0]?.properties).toEqual({ file: '/tmp/work/out/bench_s1.jsonl' });
  });

  it('carries the S5 snapshot settings (mode, chunk bounds) into a valid cdc_backfill config', () => {
    const yaml = nanosyncConfigYaml({
      name: 'bench-s5-blocking-abc',
      pgUrl: 'postgres://postgres@127.0.0.1:54321/nanosync_bench',
      table: 'public.bench_s5',
      replicationType: 'cdc_backfill',
      snapshotMode: 'blocking',
      snapshotChunkRows: 5000,
      snapshotChunkBytes: 4 * 1024 * 1024,
      sink: { kind: 'kafka', brokers: ['127.0.0.1:39092'], topic: 'ns_s5', compression: 'snappy' },
      workDir: '/tmp/work',
    });
    const { config } = parseConfig(yaml, { env: {} });
    expect(config.pipelines[0]?.snapshot).toMatchObject({
      mode: 'blocking',
      chunk_rows: 5000,
      chunk_bytes: 4 * 1024 * 1024,
    });
  });
});
