// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/index.js';
import { parseConfig, validateConnectors } from '../../src/host.js';
import { baseConfig, testResolver, yaml } from './config-fixtures.js';

async function connectorIssues(text: string, env: NodeJS.ProcessEnv = {}) {
  const { config } = parseConfig(text, { env, file: 'pipelines.yaml' });
  return validateConnectors(config, { resolve: testResolver() });
}

describe('config: each connector validates its own properties', () => {
  it('accepts a valid config', async () => {
    expect(await connectorIssues(baseConfig)).toEqual([]);
  });

  it('reports topic with topic_prefix at the pipeline property that set it', async () => {
    const issues = await connectorIssues(
      baseConfig.replace('topic: orders-cdc', 'topic: orders-cdc\n        topic_prefix: ns.'),
    );
    expect(issues).toEqual([
      {
        path: 'pipelines[0].sink.properties.topic',
        message: 'topic and topic_prefix are mutually exclusive',
        line: 17,
        column: 16,
      },
    ]);
  });

  it('maps a bad key from the connection to the connection, and one from the pipeline to the pipeline', async () => {
    const text = yaml`
      connections:
        - name: db
          type: testdb
          dsn: mysql://wrong
        - name: queue
          type: testq
          properties:
            brokers: q1:9092
            compression: brotli
      pipelines:
        - name: orders
          source: { connection: db, tables: [public.orders] }
          sinks:
            - connection: queue
              properties: { num_partitions: many }
    `;
    const issues = await connectorIssues(text);
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['connections[0].dsn', 4],
      ['connections[1].properties.compression', 9],
      ['pipelines[0].sinks[0].properties.num_partitions', 15],
    ]);
    expect(issues[0]!.message).toBe('dsn must start with testdb://, got mysql://wrong');
  });

  it('lets pipeline properties override connection properties', async () => {
    const text = baseConfig
      .replace('brokers: q1:9092', 'brokers: q1:9092\n      compression: brotli')
      .replace('topic: orders-cdc', 'topic: orders-cdc\n        compression: gzip');
    expect(await connectorIssues(text)).toEqual([]);
  });

  it('reports an unknown connector property under the field that supplied it', async () => {
    const issues = await connectorIssues(baseConfig.replace('topic: orders-cdc', 'topik: orders-cdc'));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('pipelines[0].sink.properties.topik');
    expect(issues[0]!.message).toMatch(/topik/);
  });

  it("reports each unknown connector property at its own field, the connection's ones included", async () => {
    const text = baseConfig
      .replace('brokers: q1:9092', 'brokers: q1:9092\n      sasl_pasword: x')
      .replace('topic: orders-cdc', 'topik: orders-cdc');
    const issues = await connectorIssues(text);
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['connections[1].properties.sasl_pasword', 9],
      ['pipelines[0].sink.properties.topik', 18],
    ]);
    expect(issues[0]!.message).toMatch(/sasl_pasword/);
    expect(issues[0]!.message).not.toMatch(/topik/);
  });

  it('reports a missing required property with where it can be set', async () => {
    const issues = await connectorIssues(baseConfig.replace('    properties:\n      brokers: q1:9092\n', ''));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('pipelines[0].sink.properties.brokers');
    expect(issues[0]!.message).toMatch(
      /set brokers under connections\[1\]\.properties or pipelines\[0\]\.sink\.properties/,
    );
  });

  it('validates the connector config after ${env:…} substitution', async () => {
    const text = baseConfig.replace('dsn: testdb://app@db.internal/shop', 'dsn: ${env:SHOP_DSN}');
    expect(await connectorIssues(text, { SHOP_DSN: 'testdb://x@y/z' })).toEqual([]);
    expect((await connectorIssues(text, { SHOP_DSN: 'http://x' }))[0]!.path).toBe('connections[0].dsn');
  });

  it('refuses a connection used as a sink when its type has only a source connector', async () => {
    const text = baseConfig.replace('connection: queue', 'connection: db');
    const issues = await connectorIssues(
      text.replace('  - name: queue\n    type: testq\n    properties:\n      brokers: q1:9092\n', ''),
    );
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'connections[0].type', line: 3, code: ErrorCode.ConnectorNotFound });
    expect(issues[0]!.message).toMatch(/connection "db" used as a sink: no sink connector found for type "testdb"/);
    expect(issues[0]!.message).toContain('"@nanosync/sink-testdb", "nanosync-sink-testdb"');
  });

  it('never echoes a secret value in a connector message', async () => {
    const text = baseConfig.replace(
      'topic: orders-cdc',
      'topic: orders-cdc\n        compression: hunter2-secret\n        sasl_password: hunter2-secret',
    );
    const issues = await connectorIssues(text);
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('pipelines[0].sink.properties.compression');
    expect(JSON.stringify(issues)).not.toContain('hunter2-secret');
  });

  it('never echoes a DSN password in a connector message', async () => {
    const text = baseConfig.replace('dsn: testdb://app@db.internal/shop', 'dsn: "postgres://app:Sup3rSecret@db/shop"');
    const issues = await connectorIssues(text);
    expect(issues[0]!.path).toBe('connections[0].dsn');
    expect(issues[0]!.message).toContain('postgres://app:***@db/shop');
    expect(JSON.stringify(issues)).not.toContain('Sup3rSecret');
  });
});
