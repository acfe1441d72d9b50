// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/index.js';
import {
  ConfigError,
  isEncryptedSecret,
  literalSecretPaths,
  materializePipeline,
  parseConfig,
  type NanosyncConfig,
  redactConfig,
  type ResolvedConfig,
  resolveConfig,
  secretNamesOfDefinition,
  toStoredDefinitions,
} from '../../src/host.js';
import { testResolver, testSinkDefinition, testSourceDefinition, yaml } from './config-fixtures.js';

const secretKey = randomBytes(32);
const resolve = testResolver();

const text = yaml`
  connections:
    - name: db
      type: testdb
      dsn: "testdb://app:LiteralDbPass1@db.internal/shop"
      properties:
        tls_key_passphrase: PassphraseLiteral2
    - name: db-env
      type: testdb
      dsn: "testdb://app:\${env:DB_PASSWORD}@db.internal/shop"
    - name: queue
      type: testq
      properties:
        brokers: q1:9092
        sasl_username: nanosync
        sasl_password: SaslLiteral3
  pipelines:
    - name: orders
      source:
        connection: db
        tables: [public.orders]
      sink:
        connection: queue
        properties:
          topic: orders-cdc
          client_cert_passphrase: CertLiteral4
    - name: audit
      replication_type: cdc
      source:
        connection: db-env
        tables: [public.audit]
      sink: { connection: queue, properties: { topic: ignored } }
      sinks:
        - connection: queue
          properties:
            topic_prefix: audit.
            sasl_password: \${env:AUDIT_SASL}
`;
const literalSecrets = ['LiteralDbPass1', 'PassphraseLiteral2', 'SaslLiteral3', 'CertLiteral4'];
const env = { DB_PASSWORD: 'EnvDbPass5', AUDIT_SASL: 'EnvSasl6' };

/**
 * A config paired with the test connectors without running their schemas: storing does not
 * validate properties (the server does when it materializes), so these tests can store
 * definitions the connectors would refuse.
 */
function withoutConnectorCheck(config: NanosyncConfig): ResolvedConfig {
  return {
    config,
    pipelines: config.pipelines.map((pipeline) => ({
      pipeline,
      source: { definition: testSourceDefinition, config: {}, connection: pipeline.source.connection },
      sinks: pipeline.sinks.map((sink) => ({
        name: sink.name,
        definition: testSinkDefinition,
        config: {},
        mappings: sink.target_mappings,
      })),
    })),
  };
}

async function stored(source = text, key = secretKey) {
  const { config } = parseConfig(source, { env, configDir: '/srv/nanosync' });
  return toStoredDefinitions(await resolveConfig(config, resolve), { secretKey: key });
}

describe('secrets: stored pipeline definitions', () => {
  it('stores one self-contained definition per pipeline, with only the connections it uses', async () => {
    const definitions = await stored();
    expect([...definitions.keys()]).toEqual(['orders', 'audit']);
    const orders = definitions.get('orders')!;
    expect(orders.replicationType).toBe('cdc_backfill');
    expect(orders.definition.configDir).toBe('/srv/nanosync');
    expect(Object.keys(orders.definition.connections)).toEqual(['db', 'queue']);
    expect(Object.keys(definitions.get('audit')!.definition.connections)).toEqual(['db-env', 'queue']);
    expect(definitions.get('audit')!.replicationType).toBe('cdc');
  });

  it('encrypts every literal secret and keeps ${env:…} references unresolved', async () => {
    const definitions = await stored();
    const json = JSON.stringify([...definitions.values()]);
    for (const secret of [...literalSecrets, ...Object.values(env)]) expect(json).not.toContain(secret);

    const orders = definitions.get('orders')!.definition as any;
    expect(isEncryptedSecret(orders.connections.db.dsn)).toBe(true);
    expect(isEncryptedSecret(orders.connections.db.properties.tls_key_passphrase)).toBe(true);
    expect(isEncryptedSecret(orders.connections.queue.properties.sasl_password)).toBe(true);
    expect(orders.connections.queue.properties.sasl_username).toBe('nanosync');
    expect(isEncryptedSecret(orders.pipeline.sink.properties.client_cert_passphrase)).toBe(true);
    expect(orders.pipeline.sink.properties.topic).toBe('orders-cdc');

    const audit = definitions.get('audit')!.definition as any;
    expect(audit.connections['db-env'].dsn).toBe('testdb://app:${env:DB_PASSWORD}@db.internal/shop');
    expect(audit.pipeline.sinks[0].properties.sasl_password).toBe('${env:AUDIT_SASL}');
    expect(audit.pipeline.sink).toBeUndefined();
  });

  it('literalSecretPaths finds clear-text secrets in a definition, and none in a stored one', async () => {
    for (const { definition } of (await stored()).values()) expect(literalSecretPaths(definition)).toEqual([]);
    const plain = parseConfig(text, { env, configDir: '/srv/nanosync' }).config;
    expect(
      literalSecretPaths({ connections: { db: plain.connections[0]!.written, queue: plain.connections[2]!.written } }),
    ).toEqual(['connections.db.dsn', 'connections.queue.properties.sasl_password']);
    expect(literalSecretPaths({ c: { dsn: 'host=h password=x' }, n: [{ api_token: 7 }] })).toEqual([
      'c.dsn',
      'n[0].api_token',
    ]);
  });

  it('hashes the unencrypted definition: the same file gives the same hash despite random IVs', async () => {
    const first = await stored();
    const second = await stored();
    expect(first.get('orders')!.definition).not.toEqual(second.get('orders')!.definition);
    expect(first.get('orders')!.hash).toBe(second.get('orders')!.hash);
    expect(first.get('audit')!.hash).toBe(second.get('audit')!.hash);
    expect(first.get('orders')!.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('hashes independently of key order, and changes when a value changes', async () => {
    const base = (await stored()).get('orders')!.hash;
    const reordered = text.replace(
      '        brokers: q1:9092\n        sasl_username: nanosync\n',
      '        sasl_username: nanosync\n        brokers: q1:9092\n',
    );
    expect((await stored(reordered)).get('orders')!.hash).toBe(base);
    expect((await stored(text.replace('SaslLiteral3', 'SaslLiteral3b'))).get('orders')!.hash).not.toBe(base);
    expect((await stored(text.replace('topic: orders-cdc', 'topic: orders-v2'))).get('orders')!.hash).not.toBe(base);
    // A change in a connection the pipeline does not use leaves it unchanged.
    expect((await stored(text.replace('app:${env:DB_PASSWORD}', 'other:${env:DB_PASSWORD}'))).get('orders')!.hash).toBe(
      base,
    );
  });

  it('materialises a stored definition: secrets decrypted, env resolved at run time, connector configs parsed', async () => {
    const definitions = await stored();
    const orders = await materializePipeline(definitions.get('orders')!.definition, { env: {}, secretKey, resolve });
    expect(orders.pipeline.name).toBe('orders');
    expect(orders.source.definition).toBe(testSourceDefinition);
    expect(orders.source.connection).toBe('db');
    expect(orders.source.config).toEqual({
      dsn: 'testdb://app:LiteralDbPass1@db.internal/shop',
      tls_key_passphrase: 'PassphraseLiteral2',
    });
    expect(orders.sinks).toEqual([
      {
        name: '0:queue',
        definition: testSinkDefinition,
        config: {
          brokers: 'q1:9092',
          sasl_username: 'nanosync',
          sasl_password: 'SaslLiteral3',
          topic: 'orders-cdc',
          client_cert_passphrase: 'CertLiteral4',
        },
        mappings: [],
        onError: 'fail',
        maxSpillBytes: 4 * 1024 ** 3,
      },
    ]);

    const audit = await materializePipeline(definitions.get('audit')!.definition, {
      env: { DB_PASSWORD: 'RotatedPass', AUDIT_SASL: 'x' },
      secretKey,
      resolve,
    });
    expect(audit.source.config).toEqual({ dsn: 'testdb://app:RotatedPass@db.internal/shop' });
    expect(audit.sinks.map((s) => [s.name, (s.config as any).sasl_password, (s.config as any).topic_prefix])).toEqual([
      ['0:queue', 'x', 'audit.'],
    ]);
  });

  it('names the variable and path when a reference is unset at run time', async () => {
    const definitions = await stored();
    const err = await materializePipeline(definitions.get('audit')!.definition, {
      env: { AUDIT_SASL: 'x' },
      secretKey,
      resolve,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual([
      expect.objectContaining({
        path: 'connections["db-env"].dsn',
        message: 'environment variable DB_PASSWORD is not set',
      }),
    ]);
    expect((err as ConfigError).message).toContain('stored definition of pipeline "audit"');
  });

  it('fails clearly with another key, without revealing secrets', async () => {
    const definitions = await stored();
    const err = await materializePipeline(definitions.get('orders')!.definition, {
      env,
      secretKey: randomBytes(32),
      resolve,
    }).catch((e: unknown) => e);
    expect(NanosyncError.is(err, ErrorCode.SecretKey)).toBe(true);
    expect((err as Error).message).toMatch(/cannot decrypt connection "db"\.dsn/);
    for (const secret of literalSecrets) expect((err as Error).message).not.toContain(secret);
  });

  it('keeps secrets out of materialisation errors about connector properties', async () => {
    const broken = text.replace(
      '"testdb://app:LiteralDbPass1@db.internal/shop"',
      '"mysql://app:LiteralDbPass1@db.internal/shop"',
    );
    const { config } = parseConfig(broken, { env, configDir: '/srv/nanosync' });
    const definitions = await toStoredDefinitions(withoutConnectorCheck(config), { secretKey });
    const err = (await materializePipeline(definitions.get('orders')!.definition, { env, secretKey, resolve }).catch(
      (e: unknown) => e,
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.issues[0]!.path).toBe('connections["db"].dsn');
    for (const secret of literalSecrets) expect(err.message).not.toContain(secret);
  });

  it('redacts stored definitions and raw configs for display', async () => {
    const definitions = await stored();
    const orders = definitions.get('orders')!.definition;
    const names = await secretNamesOfDefinition(orders, resolve);
    expect(names.sort()).toEqual(['client_cert_passphrase', 'tls_key_passphrase']);
    const shown = JSON.stringify(redactConfig(orders, names));
    expect(shown).not.toContain('enc:v1:');
    expect(shown).toContain('"sasl_password":"***"');
    expect(shown).toContain('"topic":"orders-cdc"');

    const { config } = parseConfig(text, { env });
    const raw = {
      connections: config.connections.map((c) => c.written),
      pipelines: config.pipelines.map((p) => p.written),
    };
    const rawShown = redactConfig(raw, names) as any;
    const rawJson = JSON.stringify(rawShown);
    for (const secret of literalSecrets) expect(rawJson).not.toContain(secret);
    expect(rawShown.connections[0].dsn).toBe('testdb://app:***@db.internal/shop');
    expect(rawShown.connections[1].dsn).toBe('testdb://app:${env:DB_PASSWORD}@db.internal/shop');
    expect(rawShown.pipelines[1].sinks[0].properties.sasl_password).toBe('${env:AUDIT_SASL}');
  });

  it('redacts secret-looking names even without connector information', () => {
    const shown = redactConfig({
      password: 'a1',
      api_token: 'b2',
      client_secret: 'c3',
      credentials_json: { private_key: 'd4' },
      nested: { sasl_password: 'e5', note: 'keep' },
      list: [{ token: 'f6' }],
      dsn: 'host=db user=app password=g7 dbname=x',
    });
    expect(JSON.stringify(shown)).not.toMatch(/a1|b2|c3|d4|e5|f6|g7/);
    expect((shown as any).nested.note).toBe('keep');
  });

  it('encrypts a key-value DSN with a literal password as a whole, wherever it is written', async () => {
    const kv = yaml`
      connections:
        - name: db
          type: testdb
          dsn: "testdb://x"
          properties:
            dsn: "host=db password=KvPass7"
        - name: queue
          type: testq
          dsn: "host=q password='Quoted Pass8'"
      pipelines:
        - name: p
          source: { connection: db, tables: [public.t] }
          sink: { connection: queue }
    `;
    const { config } = parseConfig(kv, { env: {} });
    const definitions = await toStoredDefinitions(withoutConnectorCheck(config), { secretKey });
    const p = definitions.get('p')!.definition as any;
    expect(p.connections.db.dsn).toBe('testdb://x');
    expect(isEncryptedSecret(p.connections.db.properties.dsn)).toBe(true);
    expect(isEncryptedSecret(p.connections.queue.dsn)).toBe(true);
    expect(JSON.stringify(p)).not.toMatch(/KvPass7|Quoted Pass8/);
  });
});
