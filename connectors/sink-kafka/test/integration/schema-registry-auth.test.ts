import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NanosyncError } from '@nanosync/core';
import {
  type KafkaService,
  type SchemaRegistryService,
  freePort,
  startKafka,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { KafkaErrorCode } from '../../src/errors.js';
import { SchemaRegistryClient, registryError } from '../../src/registry/client.js';
import { readWireHeader } from '../../src/registry/codec.js';
import { consumeAll, createSink, uniqueName } from './helpers.js';
import { registryRefusal, securedInsert, securedTable } from './registry-helpers.js';

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
    await handle.sink.open([securedTable]);
    await handle.sink.write([securedInsert(1), securedInsert(2)]);
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
    const error = await registryRefusal(kafka.brokers, registry.url, {
      schema_registry_ca_cert: caFile,
      ...credentials,
    });
    expect(error.message).toContain('(401)');
    expect(error.message).toContain('schema_registry_username');
    expect(error.message).not.toContain('wrong');
  },
  120_000,
);

test('a schema_registry_ca_cert that did not sign the registry: NS_K6007 naming the TLS failure, not retried', async () => {
  const error = await registryRefusal(kafka.brokers, registry.url, {
    schema_registry_username: USER,
    schema_registry_password: PASSWORD,
    schema_registry_ca_cert: otherCaFile,
  });
  expect(error.message).toContain(`TLS handshake with the Schema Registry at ${registry.url} failed`);
  expect(error.message).toContain('schema_registry_ca_cert');
}, 120_000);

/**
 * Mutual TLS. Apicurio cannot be made to require client certificates (see the testcontainers
 * README: `quarkus.http.ssl.client-auth` is fixed when Apicurio is built, and its build says
 * NONE), so this part runs against a stand-in: OpenSSL's own TLS server (`openssl s_server
 * -Verify 1 -verify_return_error -www`), which requires a client certificate signed by the CA
 * it is given, ends the handshake with the TLS alert a registry's server sends otherwise
 * (certificate required, unknown CA), and answers any request with its status page. What it
 * shows is the sink's side: the certificate and key it presents, and the error when a
 * registry refuses its certificate or wants one it did not send.
 */
describe('mutual TLS against a stand-in TLS server that requires client certificates (openssl s_server, not a registry)', () => {
  let standIn: ChildProcess;
  let standInUrl: string;
  let clientCa: { ca: string; cert: string; key: string };
  let foreignClient: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    clientCa = await makeCertificates(dir, 'client');
    foreignClient = await makeCertificates(dir, 'foreign-client');
    const port = await freePort();
    standIn = spawn(
      'openssl',
      [
        's_server',
        '-accept',
        `127.0.0.1:${port}`,
        '-cert',
        join(dir, 'registry.crt'),
        '-key',
        join(dir, 'registry.key'),
        '-CAfile',
        clientCa.ca,
        '-Verify',
        '1',
        '-verify_return_error',
        '-www',
        '-quiet',
      ],
      { stdio: 'ignore' },
    );
    standInUrl = `https://127.0.0.1:${port}`;
    // Up once it accepts TCP connections.
    for (let attempt = 0; ; attempt++) {
      const up = await new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => resolve(true));
        socket.on('error', () => resolve(false));
        socket.on('connect', () => socket.destroy());
      });
      if (up) break;
      if (attempt > 100 || standIn.exitCode !== null) throw new Error(`openssl s_server did not listen on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(() => {
    standIn?.kill();
  });

  async function probe(tls: { certFile?: string; keyFile?: string }): Promise<unknown> {
    const client = new SchemaRegistryClient({ url: standInUrl, tls: { caFile, ...tls } });
    try {
      return await client.probe().catch((e: unknown) => registryError(e, client, 'list subjects'));
    } finally {
      client.close();
    }
  }

  test('schema_registry_client_cert and _key signed by the CA the server trusts: the request is served', async () => {
    // The status page is no subject list: 0 subjects. The same server refuses a request
    // without a certificate (next test), so this one presented ours and it was verified.
    expect(await probe({ certFile: clientCa.cert, keyFile: clientCa.key })).toBe(0);
  });

  test.each([
    ['no client certificate', () => ({})],
    [
      'a certificate from a CA the server does not trust',
      () => ({ certFile: foreignClient.cert, keyFile: foreignClient.key }),
    ],
  ])('%s: NS_K6007 saying the registry refused the client certificate, not retried', async (_name, tls) => {
    const error = await probe(tls());
    expect(error).toBeInstanceOf(NanosyncError);
    expect((error as NanosyncError).code).toBe(KafkaErrorCode.KafkaSchemaRegistry);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as NanosyncError).message).toContain(
      `Schema Registry at ${standInUrl} refused the TLS client certificate`,
    );
    expect((error as NanosyncError).message).toContain('schema_registry_client_cert');
  });
});
