import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import sinkDefinition from '../../src/index.js';
import { kafkaSinkPropertiesSchema } from '../../src/config.js';

const parse = (input: Record<string, unknown>) =>
  kafkaSinkPropertiesSchema.safeParse({ brokers: '127.0.0.1:9092', ...input });
const issues = (input: Record<string, unknown>) => {
  const result = parse(input);
  return result.success ? [] : result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
};

describe('kafka sink properties', () => {
  test('defaults', () => {
    const result = parse({});
    expect(result.success && result.data).toEqual({
      brokers: ['127.0.0.1:9092'],
      clientId: 'nanosync-sink',
      topicPrefix: 'nanosync.',
      messageFormat: 'json',
      compression: 'snappy',
      autoCreateTopics: true,
      numPartitions: -1,
      replicationFactor: -1,
      maxRetries: 5,
      retryBackoffMs: 2000,
      retryBackoffMaxMs: 60000,
      tombstones: true,
      maxBytesInFlight: 1048576,
      requestTimeoutMs: 30000,
      delivery: 'at_least_once',
      checkpointTopic: 'nanosync.checkpoints',
    });
  });

  test('the definition is a kafka sink whose passwords and tokens are secret', () => {
    expect(sinkDefinition).toMatchObject({
      kind: 'sink',
      type: 'kafka',
      apiVersion: 1,
      secretProperties: ['sasl_password', 'schema_registry_password', 'schema_registry_token'],
    });
  });

  test('accepts YAML-quoted booleans and numbers and comma lists', () => {
    const result = parse({
      brokers: 'a:1, b:2',
      auto_create_topics: 'false',
      num_partitions: '12',
      replication_factor: 3,
      max_retries: '0',
      tombstones: 'false',
      primary_keys: 'tenant_id, id',
      message_format: 'avro',
      compression: 'zstd',
      topic: 'orders-cdc',
    });
    expect(result.success).toBe(true);
    expect(result.success && result.data).toMatchObject({
      brokers: ['a:1', 'b:2'],
      autoCreateTopics: false,
      numPartitions: 12,
      replicationFactor: 3,
      maxRetries: 0,
      tombstones: false,
      primaryKeys: ['tenant_id', 'id'],
      messageFormat: 'avro',
      compression: 'zstd',
      topic: 'orders-cdc',
    });
  });

  test('table_topics maps tables to topics; bad names are issues at their own path', () => {
    const result = parse({ table_topics: { 'public.order.items': 'dotted-items' } });
    expect(result.success && result.data.tableTopics).toEqual({ 'public.order.items': 'dotted-items' });
    expect(issues({ table_topics: { orders: 'x', 'public.a': 'bad topic!' } })).toEqual([
      { path: 'table_topics.orders', message: '"orders" is not schema.table' },
      {
        path: 'table_topics.public.a',
        message: 'a topic name is 1 to 249 characters among letters, digits, ".", "_" and "-"',
      },
    ]);
  });

  test('topic and topic_prefix together is an issue on topic', () => {
    expect(issues({ topic: 'a', topic_prefix: 'p.' })).toEqual([
      { path: 'topic', message: expect.stringContaining('mutually exclusive') },
    ]);
  });

  test('brokers are required and must be host:port', () => {
    expect(kafkaSinkPropertiesSchema.safeParse({}).success).toBe(false);
    expect(issues({ brokers: 'localhost' })).toEqual([{ path: 'brokers', message: '"localhost" is not host:port' }]);
    expect(parse({ brokers: undefined, dsn: 'kafka://h1:9092,h2:9093' }).data?.brokers).toEqual(['h1:9092', 'h2:9093']);
  });

  test('SASL PLAIN without TLS is refused unless explicitly allowed as insecure', () => {
    const plain = { sasl_mechanism: 'PLAIN', sasl_username: 'u', sasl_password: 'p' };
    expect(issues(plain)).toEqual([
      { path: 'sasl_mechanism', message: expect.stringContaining('allow_insecure_plain') },
    ]);
    expect(issues({ ...plain, tls_enabled: 'true' })).toEqual([]);
    expect(issues({ ...plain, allow_insecure_plain: true })).toEqual([]);
    expect(issues({ ...plain, sasl_mechanism: 'SCRAM-SHA-512' })).toEqual([]);
    expect(parse({ ...plain, sasl_mechanism: 'scram-sha-256' }).data?.sasl).toEqual({
      mechanism: 'SCRAM-SHA-256',
      username: 'u',
      password: 'p',
    });
  });

  test('SASL needs its credentials, and credentials need a mechanism', () => {
    expect(issues({ sasl_mechanism: 'SCRAM-SHA-256', sasl_username: 'u' }).map((i) => i.path)).toEqual([
      'sasl_password',
    ]);
    expect(issues({ sasl_username: 'u' }).map((i) => i.path)).toEqual(['sasl_username']);
    expect(issues({ sasl_mechanism: 'GSSAPI', sasl_username: 'u', sasl_password: 'p' }).map((i) => i.path)).toEqual([
      'sasl_mechanism',
    ]);
  });

  test('TLS files must exist and need tls_enabled', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ns-kafka-config-'));
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, 'x');
    expect(issues({ tls_enabled: true, tls_ca_cert: ca })).toEqual([]);
    expect(parse({ tls_enabled: true, tls_ca_cert: ca }).data?.tls).toEqual({ caFile: ca });
    expect(issues({ tls_enabled: true, tls_ca_cert: join(dir, 'missing.pem') })).toEqual([
      { path: 'tls_ca_cert', message: `file not found: ${join(dir, 'missing.pem')}` },
    ]);
    expect(issues({ tls_ca_cert: ca }).map((i) => i.path)).toEqual(['tls_ca_cert']);
    expect(issues({ tls_enabled: true, tls_client_cert: ca }).map((i) => i.path)).toEqual(['tls_client_key']);
  });

  test('unknown keys, bad enums and bad numbers are issues', () => {
    expect(issues({ topik: 'x' })[0]?.message).toContain('topik');
    expect(issues({ message_format: 'xml' }).map((i) => i.path)).toEqual(['message_format']);
    expect(issues({ compression: 'brotli' }).map((i) => i.path)).toEqual(['compression']);
    expect(issues({ num_partitions: 0 }).map((i) => i.path)).toEqual(['num_partitions']);
    expect(issues({ max_retries: -1 }).map((i) => i.path)).toEqual(['max_retries']);
    expect(issues({ topic: 'has space' }).map((i) => i.path)).toEqual(['topic']);
    expect(issues({ primary_keys: ' , ' }).map((i) => i.path)).toEqual(['primary_keys']);
  });

  test('validate refuses one shared topic with the topic_name subject strategy once two tables share it', () => {
    const tables = [
      { schema: 'public', name: 'orders' },
      { schema: 'public', name: 'customers' },
    ];
    const registry = { message_format: 'avro', schema_registry_url: 'http://registry:8081', topic: 'cdc' };
    const check = (props: Record<string, unknown>, listed = tables) => {
      const config = parse(props);
      if (!config.success) throw config.error;
      return sinkDefinition.checkTables!(config.data, listed);
    };
    // The default strategy is topic_name.
    for (const props of [registry, { ...registry, subject_name_strategy: 'topic_name' }]) {
      expect(check(props)).toEqual([
        {
          property: 'subject_name_strategy',
          message: expect.stringMatching(
            /^with topic "cdc" the 2 tables of this pipeline share one topic, so subject_name_strategy topic_name would register all their schemas under the one subject "cdc-value".*set subject_name_strategy to record_name or topic_record_name/,
          ),
        },
      ]);
    }
    expect(check({ ...registry, subject_name_strategy: 'record_name' })).toEqual([]);
    expect(check({ ...registry, subject_name_strategy: 'topic_record_name' })).toEqual([]);
    // One table on its own topic, one topic per table, or no registry: one subject per table anyway.
    expect(check(registry, tables.slice(0, 1))).toEqual([]);
    const { topic: _topic, ...perTable } = registry;
    expect(check(perTable)).toEqual([]);
    expect(check({ topic: 'cdc', message_format: 'avro' })).toEqual([]);
  });
});
