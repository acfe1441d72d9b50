// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type ConnectorResolver,
  materializePipeline,
  parseConfig,
  resolveConfig,
  toStoredDefinitions,
} from '../../src/host.js';
import { testResolver, testSinkDefinition, testSourceDefinition, yaml } from './config-fixtures.js';

/** Two pipelines sharing one source connection, one with `sink:`, one with `sinks:` (two of them). */
const twoPipelines = yaml`
  connections:
    - name: db
      type: testdb
      dsn: testdb://app:\${env:DB_PASSWORD}@db.internal/shop
    - name: queue
      type: testq
      properties:
        brokers: q1:9092
    - name: other
      type: testq
      properties:
        brokers: q2:9092
  pipelines:
    - name: orders
      source:
        connection: db
        tables: [public.orders]
      sink:
        connection: queue
        properties:
          topic: orders-cdc
    - name: audit
      source:
        connection: db
        tables: [public.audit, public.users]
      sinks:
        - connection: queue
          properties:
            topic_prefix: audit.
          target_mappings:
            - table: public.users
              columns: [id]
        - connection: other
`;

/** The test resolver, counting every call it gets (it has no cache of its own in front). */
function countingResolver(): { resolve: ConnectorResolver; calls: string[] } {
  const inner = testResolver();
  const calls: string[] = [];
  return {
    calls,
    resolve: (kind, type, fromDir) => {
      calls.push(`${kind}:${type}`);
      return inner(kind, type, fromDir);
    },
  };
}

describe('config: one path from YAML to the engine', () => {
  it('carries the locator and each YAML node as explicit fields, with no hidden properties', () => {
    const { config } = parseConfig(twoPipelines, { env: { DB_PASSWORD: 'pw' }, file: 'pipelines.yaml' });
    expect(Object.getOwnPropertySymbols(config)).toEqual([]);
    for (const pipeline of config.pipelines) expect(Object.getOwnPropertySymbols(pipeline)).toEqual([]);
    expect(config.locate?.(['pipelines', 1, 'name'])).toEqual({ line: 22, column: 11 });
    // As written: the reference kept, while the validated value has it resolved.
    expect(config.connections[0]!.written).toEqual({
      name: 'db',
      type: 'testdb',
      dsn: 'testdb://app:${env:DB_PASSWORD}@db.internal/shop',
    });
    expect(config.connections[0]!.dsn).toBe('testdb://app:pw@db.internal/shop');
    expect(config.pipelines.map((p) => p.written?.name)).toEqual(['orders', 'audit']);
    expect(config.pipelines[0]!.written!.sink).toBeDefined();
    expect(config.pipelines[1]!.written!.sinks).toHaveLength(2);
  });

  it('resolves each connection once per role, and storing needs no second resolution', async () => {
    const { config } = parseConfig(twoPipelines, { env: { DB_PASSWORD: 'pw' } });
    const { resolve, calls } = countingResolver();
    const resolved = await resolveConfig(config, resolve);
    expect(calls.sort()).toEqual(['sink:testq', 'sink:testq', 'source:testdb']);
    await toStoredDefinitions(resolved, { secretKey: randomBytes(32) });
    expect(calls).toHaveLength(3);
  });

  it('hands the engine one object per pipeline: the pipeline, its source and every sink with its connector', async () => {
    const { config } = parseConfig(twoPipelines, { env: { DB_PASSWORD: 'pw' } });
    const { pipelines } = await resolveConfig(config, testResolver());
    expect(pipelines.map((p) => p.pipeline)).toEqual(config.pipelines);
    const audit = pipelines[1]!;
    expect(audit.source).toMatchObject({ definition: testSourceDefinition, connection: 'db' });
    expect(audit.sinks.map((s) => [s.name, s.definition, s.config])).toEqual([
      ['0:queue', testSinkDefinition, { brokers: 'q1:9092', topic_prefix: 'audit.' }],
      ['1:other', testSinkDefinition, { brokers: 'q2:9092' }],
    ]);
    expect(audit.sinks[0]!.mappings).toEqual([
      { table: 'public.users', tableRef: { schema: 'public', name: 'users' }, columns: ['id'] },
    ]);
  });

  it('stores each pipeline with its own YAML node, references kept, and the server gets the same object back', async () => {
    const { config } = parseConfig(twoPipelines, { env: {}, deferEnv: true, configDir: '/srv/ns' });
    const secretKey = randomBytes(32);
    const stored = await toStoredDefinitions(await resolveConfig(config, testResolver()), { secretKey });
    expect([...stored.keys()]).toEqual(['orders', 'audit']);
    const audit = stored.get('audit')!.definition;
    expect((audit.pipeline as { name: string }).name).toBe('audit');
    expect(Object.keys(audit.connections).sort()).toEqual(['db', 'other', 'queue']);
    expect((audit.connections.db as { dsn: string }).dsn).toBe('testdb://app:${env:DB_PASSWORD}@db.internal/shop');

    const materialized = await materializePipeline(audit, {
      env: { DB_PASSWORD: 'server-side' },
      secretKey,
      resolve: testResolver(),
    });
    expect(materialized.pipeline.name).toBe('audit');
    expect(materialized.source.config).toEqual({ dsn: 'testdb://app:server-side@db.internal/shop' });
    expect(materialized.sinks.map((s) => s.name)).toEqual(['0:queue', '1:other']);
  });

  it('reports connector issues of a config read from a file at their line, through resolveConfig', async () => {
    const { config } = parseConfig(twoPipelines.replace('topic_prefix: audit.', 'topic_prefixx: audit.'), {
      env: { DB_PASSWORD: 'pw' },
      file: 'pipelines.yaml',
    });
    const err = await resolveConfig(config, testResolver()).catch((e: unknown) => e);
    expect(err).toMatchObject({
      file: 'pipelines.yaml',
      issues: [
        {
          path: 'pipelines[1].sinks[0].properties.topic_prefixx',
          message: 'sink connection "queue": unknown property "topic_prefixx"',
          line: 29,
        },
      ],
    });
  });
});
