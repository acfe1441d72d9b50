import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import {
  type KafkaService,
  type SchemaRegistryService,
  startKafka,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { KafkaErrorCode } from '../../src/errors.js';
import { SchemaRegistryClient } from '../../src/registry/client.js';
import { readWireHeader } from '../../src/registry/codec.js';
import { consumeAll, createSink, uniqueName } from './helpers.js';

const run = promisify(execFile);

/**
 * The sink against a registry that serves HTTPS only and requires basic authentication:
 * Apicurio Registry itself, configured through its Quarkus settings (a certificate signed by
 * a throwaway CA, embedded users), not a proxy in front of it.
 */

const USER = 'nanosync';
const PASSWORD = 's3cret-registry';

let dir: string;
let kafka: KafkaService;
let registry: SchemaRegistryService;
let caFile: string;
let otherCaFile: string;

/** A CA and a certificate for 127.0.0.1 / localhost signed by it, as PEM files in `folder`. */
async function makeCertificates(folder: string, name: string): Promise<{ ca: string; cert: string; key: string }> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: folder });
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}-ca.key`,
    '-out',
    `${name}-ca.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=nanosync test ${name} CA`,
  );
  await openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    '/CN=localhost',
  );
  await writeFile(join(folder, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${name}-ca.crt`,
    '-CAkey',
    `${name}-ca.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  return { ca: join(folder, `${name}-ca.crt`), cert: join(folder, `${name}.crt`), key: join(folder, `${name}.key`) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-registry-auth-'));
  const server = await makeCertificates(dir, 'registry');
  const other = await makeCertificates(dir, 'other');
  caFile = server.ca;
  otherCaFile = other.ca;
  [kafka, registry] = await Promise.all([
    startKafka(),
    startSchemaRegistry({
      tls: { certFile: server.cert, keyFile: server.key, caFile: server.ca },
      users: { [USER]: PASSWORD },
    }),
  ]);
}, 600_000);

afterAll(async () => {
  await registry?.[Symbol.asyncDispose]();
  await kafka?.[Symbol.asyncDispose]();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const table: TableSchema = {
  schema: 'public',
  name: 'secured',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};
const insert = (n: number): ChangeEvent => ({
  table,
  op: 'insert',
  key: { id: n },
  after: { id: n, note: `n${n}` },
  position: `0000000004000000:${String(n).padStart(8, '0')}`,
});

test('https with schema_registry_ca_cert and basic authentication: schemas registered, records carry their ids', async () => {
  expect(registry.url.startsWith('https://')).toBe(true);
  const topic = uniqueName('ns-it-sr-auth');
  for (const format of ['avro', 'protobuf'] as const) {
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic: `${topic}-${format}`,
      message_format: format,
      schema_registry_url: registry.url,
      schema_registry_username: USER,
      schema_registry_password: PASSWORD,
      schema_registry_ca_cert: caFile,
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(1), insert(2)]);
  }
  const client = new SchemaRegistryClient({
    url: registry.url,
    basic: { username: USER, password: PASSWORD },
    tls: { caFile },
  });
  try {
    for (const format of ['avro', 'protobuf']) {
      const subject = `${topic}-${format}-value`;
      expect(await client.versions(subject)).toEqual([1]);
      const { id } = (await client.latest(subject))!;
      const records = await consumeAll(kafka.brokers, `${topic}-${format}`);
      expect(records).toHaveLength(2);
      for (const r of records) expect(readWireHeader(r.value!).id).toBe(id);
    }
  } finally {
    client.close();
  }
}, 180_000);

test.each([
  ['a wrong password', { schema_registry_username: USER, schema_registry_password: 'wrong' }],
  ['no credentials', {}],
])(
  '%s: the registry answers 401 and the sink stops with NS_K6007, not retried',
  async (_name, credentials) => {
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic: uniqueName('ns-it-sr-auth-refused'),
      message_format: 'avro',
      schema_registry_url: registry.url,
      schema_registry_ca_cert: caFile,
      ...credentials,
    });
    await handle.sink.open([table]);
    const failure = await handle.sink.write([insert(1)]).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(NanosyncError);
    const error = failure as NanosyncError;
    expect(error.code).toBe(KafkaErrorCode.KafkaSchemaRegistry);
    expect(error.retriable).toBe(false);
    expect(error.message).toContain('(401)');
    expect(error.message).toContain('schema_registry_username');
    expect(error.message).not.toContain('wrong');
  },
  120_000,
);

test('a schema_registry_ca_cert that did not sign the registry: NS_K6007 naming the TLS failure, not retried', async () => {
  await using handle = createSink({
    brokers: kafka.brokers.join(','),
    topic: uniqueName('ns-it-sr-auth-tls'),
    message_format: 'avro',
    schema_registry_url: registry.url,
    schema_registry_username: USER,
    schema_registry_password: PASSWORD,
    schema_registry_ca_cert: otherCaFile,
  });
  await handle.sink.open([table]);
  const failure = await handle.sink.write([insert(1)]).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(NanosyncError);
  const error = failure as NanosyncError;
  expect(error.code).toBe(KafkaErrorCode.KafkaSchemaRegistry);
  expect(error.retriable).toBe(false);
  expect(error.message).toContain(`TLS handshake with the Schema Registry at ${registry.url} failed`);
  expect(error.message).toContain('schema_registry_ca_cert');
}, 120_000);
