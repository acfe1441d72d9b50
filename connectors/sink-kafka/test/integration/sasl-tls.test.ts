import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ChangeEvent, NanosyncError, type TableSchema } from '@nanosync/core';
import { type KafkaService, startKafka } from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { consumeAll, createSink, uniqueName } from './helpers.js';

const run = promisify(execFile);
const USER = 'nanosync';
const PASSWORD = 'Sup3r-s3cret-pw';
const STORE_PASSWORD = 'changeit';

const table: TableSchema = {
  schema: 'public',
  name: 'secure',
  keyColumns: ['id'],
  columns: [{ name: 'id', type: { kind: 'int32' }, nullable: false }],
};

let dir: string;
let kafka: KafkaService;
let secureBroker: string;
let caFile: string;

/** A throwaway CA and a broker certificate for 127.0.0.1 / localhost, in a PKCS12 keystore. */
async function makeCertificates(folder: string): Promise<{ ca: string; keystore: string }> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: folder });
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=nanosync test CA',
  );
  await openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'broker.key',
    '-out',
    'broker.csr',
    '-subj',
    '/CN=localhost',
  );
  await writeFile(join(folder, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(
    'x509',
    '-req',
    '-in',
    'broker.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'broker.crt',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  await openssl(
    'pkcs12',
    '-export',
    '-in',
    'broker.crt',
    '-inkey',
    'broker.key',
    '-certfile',
    'ca.crt',
    '-name',
    'broker',
    '-out',
    'broker.p12',
    '-passout',
    `pass:${STORE_PASSWORD}`,
  );
  return { ca: join(folder, 'ca.crt'), keystore: join(folder, 'broker.p12') };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-kafka-tls-'));
  const { ca, keystore } = await makeCertificates(dir);
  caFile = ca;
  kafka = await startKafka({
    fresh: true,
    extraListener: true,
    formatArgs: ['--add-scram', `SCRAM-SHA-256=[name=${USER},password=${PASSWORD}]`],
    serverProperties: (ports) => ({
      listeners: `PLAINTEXT://127.0.0.1:${ports.plaintext},CONTROLLER://127.0.0.1:${ports.controller},EXTRA://127.0.0.1:${ports.extra}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${ports.plaintext},EXTRA://127.0.0.1:${ports.extra}`,
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTRA:SASL_SSL',
      'sasl.enabled.mechanisms': 'SCRAM-SHA-256',
      'listener.name.extra.sasl.enabled.mechanisms': 'SCRAM-SHA-256',
      'listener.name.extra.scram-sha-256.sasl.jaas.config':
        'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'ssl.keystore.type': 'PKCS12',
      'ssl.keystore.location': keystore,
      'ssl.keystore.password': STORE_PASSWORD,
      'ssl.key.password': STORE_PASSWORD,
      'ssl.client.auth': 'none',
    }),
  });
  secureBroker = `127.0.0.1:${kafka.extraPort}`;
});

afterAll(async () => {
  await kafka?.[Symbol.asyncDispose]();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const insert = (id: number): ChangeEvent => ({ table, op: 'insert', key: { id }, after: { id }, position: `p${id}` });

describe('SASL/SCRAM over TLS', () => {
  test('writes through a SASL_SSL listener with the CA from tls_ca_cert', async () => {
    const topic = uniqueName('ns-it-scram');
    await using handle = createSink({
      brokers: secureBroker,
      topic,
      sasl_mechanism: 'SCRAM-SHA-256',
      sasl_username: USER,
      sasl_password: PASSWORD,
      tls_enabled: 'true',
      tls_ca_cert: caFile,
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(1), insert(2)]);
    const records = await consumeAll(kafka.brokers, topic);
    expect(records.map((r) => r.key)).toEqual(['[1]', '[2]']);
  });

  test('a wrong password is a clear, non-retriable auth error without the password in it', async () => {
    await using handle = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-scram-bad'),
      sasl_mechanism: 'SCRAM-SHA-256',
      sasl_username: USER,
      sasl_password: 'not-the-password',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    const error = await handle.sink.open([table]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_K6005')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as Error).message).toMatch(/sasl_password/);
    expect((error as Error).message).not.toContain('not-the-password');
  });

  test('a broker certificate from an unknown CA is a clear, non-retriable TLS error', async () => {
    await using handle = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-tls-bad'),
      sasl_mechanism: 'SCRAM-SHA-256',
      sasl_username: USER,
      sasl_password: PASSWORD,
      tls_enabled: true,
    });
    const error = await handle.sink.open([table]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_K6001')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as Error).message).toContain('tls_ca_cert');
  });
});
