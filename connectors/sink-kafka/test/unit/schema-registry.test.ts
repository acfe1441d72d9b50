import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig } from '../../src/config.js';
import { avroSchemaFor } from '../../src/formats/avro.js';
import { protobufDescriptorFor, protobufSchemaText } from '../../src/formats/protobuf.js';
import { RegistryHttpError, SchemaRegistryClient, registryError } from '../../src/registry/client.js';
import { transactionSettings } from '../../src/sink.js';
import {
  changedColumns,
  readWireHeader,
  registryNamespace,
  subjectName,
  wireHeader,
} from '../../src/registry/codec.js';

const base = { brokers: '127.0.0.1:9092' };
const table: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'qty', type: { kind: 'int32' }, nullable: true },
  ],
};

describe('Confluent wire format', () => {
  test('magic 0, the schema id big-endian, then the payload', () => {
    const head = wireHeader(0x01020304);
    expect([...head]).toEqual([0, 1, 2, 3, 4]);
    const parsed = readWireHeader(Buffer.concat([head, Buffer.from([9, 9])]));
    expect(parsed.id).toBe(0x01020304);
    expect([...parsed.payload]).toEqual([9, 9]);
  });

  test('Protobuf message indexes: [0] as a single 0, others as zigzag varints with the count first', () => {
    expect([...wireHeader(7, [0]).subarray(5)]).toEqual([0]);
    expect([...wireHeader(7, [2]).subarray(5)]).toEqual([2, 4]);
    expect([...wireHeader(7, [1, 70]).subarray(5)]).toEqual([4, 2, 140, 1]);
    for (const indexes of [[0], [2], [1, 70]]) {
      const parsed = readWireHeader(Buffer.concat([wireHeader(7, indexes), Buffer.from([42])]), true);
      expect(parsed.indexes).toEqual(indexes);
      expect([...parsed.payload]).toEqual([42]);
    }
  });

  test('a value that does not start with 0 is refused', () => {
    expect(() => readWireHeader(Buffer.from([0x4e, 1, 2, 3, 4, 5]))).toThrow(/byte 0 is not 0/);
  });
});

describe('subjects', () => {
  test('the three strategies', () => {
    expect(subjectName('topic_name', 't', 'io.nanosync.public.orders.Envelope', false)).toBe('t-value');
    expect(subjectName('topic_name', 't', 'io.nanosync.public.orders.Key', true)).toBe('t-key');
    expect(subjectName('record_name', 't', 'io.nanosync.public.orders.Envelope', false)).toBe(
      'io.nanosync.public.orders.Envelope',
    );
    expect(subjectName('topic_record_name', 't', 'io.nanosync.public.orders.Key', true)).toBe(
      't-io.nanosync.public.orders.Key',
    );
  });

  test('one namespace per table, odd characters made identifiers', () => {
    expect(registryNamespace('avro', table)).toBe('io.nanosync.public.orders');
    expect(registryNamespace('protobuf', { ...table, schema: 'Sales', name: '2024-orders' })).toBe(
      'nanosync.Sales._2024_orders',
    );
  });
});

describe('what changed between two versions', () => {
  const v2: TableSchema = {
    ...table,
    columns: [
      table.columns[0]!,
      { name: 'qty', type: { kind: 'string' }, nullable: true },
      { name: 'n', type: { kind: 'bool' }, nullable: true },
    ],
  };
  test('Avro: added, dropped and retyped columns by name', () => {
    const before = JSON.stringify(avroSchemaFor(table, 'io.nanosync.public.orders'));
    const after = JSON.stringify(avroSchemaFor(v2, 'io.nanosync.public.orders'));
    expect(changedColumns('avro', before, after)).toEqual(['"qty" (type changed)', '"n" (added)']);
    expect(changedColumns('avro', after, before)).toEqual(['"qty" (type changed)', '"n" (dropped)']);
  });

  test('Protobuf: a dropped column by its name', () => {
    const before = protobufSchemaText(protobufDescriptorFor(table), 'nanosync.public.orders');
    const dropped = protobufSchemaText(
      protobufDescriptorFor({ ...table, columns: [table.columns[0]!] }),
      'nanosync.public.orders',
    );
    expect(changedColumns('protobuf', before, dropped)).toEqual(['"qty" (dropped)']);
    expect(changedColumns('protobuf', dropped, before)).toEqual(['"qty" (added)']);
  });
});

describe('configuration', () => {
  test('registry off by default: the embedded-schema format, at-least-once', () => {
    const config = parseKafkaSinkConfig({ ...base, message_format: 'avro' });
    expect(config.schemaRegistry).toBeUndefined();
    expect(config.delivery).toBe('at_least_once');
  });

  test('registry settings', () => {
    const config = parseKafkaSinkConfig({
      ...base,
      message_format: 'protobuf',
      schema_registry_url: 'https://registry:8081',
      schema_registry_username: 'key',
      schema_registry_password: 'secret',
      subject_name_strategy: 'topic_record_name',
    });
    expect(config.schemaRegistry).toMatchObject({
      url: 'https://registry:8081',
      subjectStrategy: 'topic_record_name',
      basic: { username: 'key', password: 'secret' },
    });
  });

  test.each([
    [{ message_format: 'json', schema_registry_url: 'http://r:8081' }, 'schema_registry_url', /avro or protobuf/],
    [{ message_format: 'avro', schema_registry_url: 'registry:8081' }, 'schema_registry_url', /http/],
    [
      { message_format: 'avro', schema_registry_url: 'http://r', schema_registry_username: 'u' },
      'schema_registry_password',
      /go together/,
    ],
    [
      {
        message_format: 'avro',
        schema_registry_url: 'http://r',
        schema_registry_token: 't',
        schema_registry_username: 'u',
        schema_registry_password: 'p',
      },
      'schema_registry_token',
      /not both/,
    ],
    [
      { message_format: 'avro', schema_registry_url: 'http://r', schema_registry_ca_cert: '/etc/hosts' },
      'schema_registry_ca_cert',
      /not https/,
    ],
    [
      { message_format: 'avro', schema_registry_url: 'https://r', schema_registry_ca_cert: '/no/such.pem' },
      'schema_registry_ca_cert',
      /not found/,
    ],
    [
      { message_format: 'avro', subject_name_strategy: 'record_name' },
      'subject_name_strategy',
      /schema_registry_url is not/,
    ],
    [{ delivery: 'exactly-once' }, 'delivery', /at_least_once/],
    [{ transactional_id: 'x' }, 'transactional_id', /exactly_once/],
  ])('%j is refused at %s', (props, path, message) => {
    const result = (() => {
      try {
        parseKafkaSinkConfig({ ...base, ...props });
        return undefined;
      } catch (err) {
        return err as { issues: { path: (string | number)[]; message: string }[] };
      }
    })();
    const issue = result?.issues.find((i) => i.path[0] === path);
    expect(issue?.message).toMatch(message);
  });
});

/**
 * Credentials on the wire. Not a registry: a local HTTP server that records the request
 * headers and answers like one, because the test registry (Apicurio) needs an OIDC server
 * for authentication.
 */
describe('registry client credentials (header capture, no real registry)', () => {
  async function capture(config: ConstructorParameters<typeof SchemaRegistryClient>[0]['basic'] | string) {
    const seen: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(req.headers.authorization ? 200 : 401, { 'content-type': 'application/json' });
      res.end(req.headers.authorization ? '[]' : '{"error_code":40101,"message":"Unauthorized"}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new SchemaRegistryClient({
      url,
      ...(typeof config === 'string' ? { bearerToken: config } : config ? { basic: config } : {}),
    });
    try {
      const outcome = await client.probe().then(
        () => 'ok',
        (e: Error) => e.message,
      );
      return { seen, outcome };
    } finally {
      client.close();
      server.close();
    }
  }

  test('basic', async () => {
    const { seen, outcome } = await capture({ username: 'key', password: 's3cret' });
    expect(outcome).toBe('ok');
    expect(seen[0]!.authorization).toBe(`Basic ${Buffer.from('key:s3cret').toString('base64')}`);
  });

  test('bearer', async () => {
    const { seen } = await capture('tok-123');
    expect(seen[0]!.authorization).toBe('Bearer tok-123');
  });

  test('a 401 names the status', async () => {
    const { outcome } = await capture(undefined);
    expect(outcome).toMatch(/answered 401: Unauthorized/);
  });
});

describe('registry refusals as the pipeline shows them', () => {
  const url = 'https://registry:8081';
  const unauthorized = (challenge?: string) =>
    new RegistryHttpError(401, 40101, 'GET /subjects answered 401', challenge);

  test('a refused bearer token: named with its setting and the registry reason, never the token, not retried', () => {
    const error = registryError(
      unauthorized('Bearer error="invalid_token", error_description="The token expired"'),
      { url, auth: 'bearer' },
      'list subjects',
    );
    expect(error.code).toBe('NS_K6007');
    expect(error.retriable).toBe(false);
    expect(error.message).toBe(
      `Schema Registry at ${url}, asked to list subjects, refused the bearer token of schema_registry_token (401; the registry says: The token expired): it has expired, was issued by an identity provider the registry does not trust, or is not meant for this registry; set a fresh token`,
    );
  });

  test('basic credentials refused, none configured, and a 403 each say which settings to look at', () => {
    expect(
      registryError(unauthorized('Basic realm="Quarkus"'), { url, auth: 'basic' }, 'list subjects').message,
    ).toContain('refused the user name and password (401): check schema_registry_username / schema_registry_password');
    expect(registryError(unauthorized('Bearer'), { url, auth: 'none' }, 'list subjects').message).toContain(
      'requires authentication (401) and none is configured: set schema_registry_username / schema_registry_password or schema_registry_token',
    );
    const forbidden = registryError(new RegistryHttpError(403, 40301, 'no'), { url, auth: 'bearer' }, 'register');
    expect(forbidden.message).toContain('denied it (403)');
    expect(forbidden.retriable).toBe(false);
  });

  test('a TLS alert for the client certificate names schema_registry_client_cert; an outage stays retriable', () => {
    const alert = Object.assign(new Error('tlsv13 alert certificate required'), {
      code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
    });
    const refused = registryError(alert, { url, auth: 'none' }, 'list subjects');
    expect(refused.message).toContain(`Schema Registry at ${url} refused the TLS client certificate`);
    expect(refused.message).toContain('schema_registry_client_cert');
    expect(refused.retriable).toBe(false);
    const down = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(registryError(down, { url, auth: 'none' }, 'list subjects').retriable).toBe(true);
  });
});

describe('exactly_once settings', () => {
  test('the transactional id is stable per pipeline and target, and can be set', () => {
    const a = transactionSettings(parseKafkaSinkConfig({ ...base, topic: 'orders', delivery: 'exactly_once' }), 'p1');
    const again = transactionSettings(
      parseKafkaSinkConfig({ ...base, topic: 'orders', delivery: 'exactly_once' }),
      'p1',
    );
    const other = transactionSettings(
      parseKafkaSinkConfig({ ...base, topic: 'other', delivery: 'exactly_once' }),
      'p1',
    );
    expect(a.transactionalId).toMatch(/^nanosync\.p1\.[0-9a-f]{10}$/);
    expect(again).toEqual(a);
    expect(other.transactionalId).not.toBe(a.transactionalId);
    expect(a.groupId).toBe(`nanosync-eos.${a.transactionalId}`);
    expect(a.checkpointTopic).toBe('nanosync.checkpoints');
    const set = transactionSettings(
      parseKafkaSinkConfig({
        ...base,
        delivery: 'exactly_once',
        transactional_id: 'shop-eos',
        checkpoint_topic: 'ops.ckpt',
      }),
      'p1',
    );
    expect(set).toEqual({ transactionalId: 'shop-eos', groupId: 'nanosync-eos.shop-eos', checkpointTopic: 'ops.ckpt' });
  });
});
