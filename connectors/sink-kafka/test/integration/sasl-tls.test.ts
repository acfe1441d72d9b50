import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ChangeEvent, NanosyncError, type TableSchema } from '@nanosync/core';
import { type KafkaService, startKafka } from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import kafkajs from 'kafkajs';
import { consumeAll, createSink, uniqueName } from './helpers.js';

const run = promisify(execFile);
const USER = 'nanosync';
const PASSWORD = 'Sup3r-s3cret-pw';
const USER512 = 'nanosync512';
const PASSWORD512 = 'An0ther-s3cret-pw';
const PLAIN_USER = 'plainuser';
const PLAIN_PASSWORD = 'Pl41n-s3cret-pw';
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
let otherCaFile: string;

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

/** Another throwaway CA, which signed nothing the broker presents. */
async function makeOtherCa(folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'other.key',
      '-out',
      'other.crt',
      '-days',
      '2',
      '-subj',
      '/CN=some other CA',
    ],
    { cwd: folder },
  );
  return join(folder, 'other.crt');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-kafka-tls-'));
  const { ca, keystore } = await makeCertificates(dir);
  caFile = ca;
  otherCaFile = await makeOtherCa(join(dir, 'other'));
  kafka = await startKafka({
    fresh: true,
    extraListener: true,
    formatArgs: [
      '--add-scram',
      `SCRAM-SHA-256=[name=${USER},password=${PASSWORD}]`,
      '--add-scram',
      `SCRAM-SHA-512=[name=${USER512},password=${PASSWORD512}]`,
    ],
    // The request log shows each request with its client id; failed logins are logged by the Selector.
    logLevels: { 'kafka.request.logger': 'DEBUG', 'org.apache.kafka.common.network.Selector': 'INFO' },
    serverProperties: (ports) => ({
      listeners: `PLAINTEXT://127.0.0.1:${ports.plaintext},CONTROLLER://127.0.0.1:${ports.controller},EXTRA://127.0.0.1:${ports.extra}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${ports.plaintext},EXTRA://127.0.0.1:${ports.extra}`,
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTRA:SASL_SSL',
      'sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
      'listener.name.extra.sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
      'listener.name.extra.scram-sha-256.sasl.jaas.config':
        'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'listener.name.extra.scram-sha-512.sasl.jaas.config':
        'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'listener.name.extra.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required user_${PLAIN_USER}="${PLAIN_PASSWORD}";`,
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

/** The broker's own log so far. */
const brokerLog = async (): Promise<string> => readFile(join(kafka.logDir as string, 'server.log'), 'utf8');

/** Failed logins the broker logged so far (tests in this file run one at a time). */
const failedLogins = async (): Promise<number> =>
  (await brokerLog()).split('\n').filter((line) => line.includes('Failed authentication')).length;

/** Partitions and replicas per partition of `topic`, as the broker reports them. */
async function describeTopic(topic: string): Promise<{ partitions: number; replicas: number[] }> {
  const admin = new kafkajs.Kafka({ brokers: kafka.brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = topics[0]?.partitions ?? [];
    return { partitions: partitions.length, replicas: partitions.map((p) => p.replicas.length) };
  } finally {
    await admin.disconnect();
  }
}

const credentials = {
  PLAIN: { sasl_username: PLAIN_USER, sasl_password: PLAIN_PASSWORD },
  'SCRAM-SHA-256': { sasl_username: USER, sasl_password: PASSWORD },
  'SCRAM-SHA-512': { sasl_username: USER512, sasl_password: PASSWORD512 },
} as const;

describe('SASL over TLS', () => {
  test.each(Object.keys(credentials) as (keyof typeof credentials)[])(
    'writes with SASL %s through a SASL_SSL listener with the CA from tls_ca_cert',
    async (mechanism) => {
      const topic = uniqueName(`ns-it-${mechanism.toLowerCase()}`);
      await using handle = createSink({
        brokers: secureBroker,
        topic,
        sasl_mechanism: mechanism,
        ...credentials[mechanism],
        tls_enabled: 'true',
        tls_ca_cert: caFile,
      });
      await handle.sink.open([table]);
      await handle.sink.write([insert(1), insert(2)]);
      const records = await consumeAll(kafka.brokers, topic);
      expect(records.map((r) => r.key)).toEqual(['[1]', '[2]']);
    },
  );

  test('the broker sees the configured client_id on the sink requests', async () => {
    const clientId = uniqueName('ns-it-client');
    await using handle = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-client-id'),
      client_id: clientId,
      ...credentials['SCRAM-SHA-512'],
      sasl_mechanism: 'SCRAM-SHA-512',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(1)]);
    // The broker logs a request after it sent the response, so the produce request's line
    // may follow the write's return (and the lines of earlier requests): wait for it.
    const produceLines = async () =>
      (await brokerLog())
        .split('\n')
        .filter((line) => line.includes(`"clientId":"${clientId}"`) && /"requestApiKey":0,/.test(line)).length;
    await expect.poll(produceLines, { timeout: 30_000, interval: 200 }).toBeGreaterThan(0);
  });

  test('num_partitions and replication_factor are applied to the topics the sink creates', async () => {
    const topic = uniqueName('ns-it-create');
    await using handle = createSink({
      brokers: secureBroker,
      topic,
      num_partitions: 3,
      replication_factor: 1,
      ...credentials['SCRAM-SHA-256'],
      sasl_mechanism: 'SCRAM-SHA-256',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(1), insert(2), insert(3)]);
    // The broker's own default is one partition.
    expect(await describeTopic(topic)).toEqual({ partitions: 3, replicas: [1, 1, 1] });
  });

  test('a replication_factor the cluster cannot meet reaches the broker and fails clearly', async () => {
    const topic = uniqueName('ns-it-create-rf');
    await using handle = createSink({
      brokers: secureBroker,
      topic,
      replication_factor: 3,
      ...credentials['SCRAM-SHA-256'],
      sasl_mechanism: 'SCRAM-SHA-256',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    const error = await handle.sink
      .open([table])
      .then(() => handle.sink.write([insert(1)]))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanosyncError);
    // The error names the topic and the settings asked for, then the broker's reason.
    expect((error as Error).message).toContain(
      `create topic "${topic}" with num_partitions -1 (the broker's default) and replication_factor 3`,
    );
    expect((error as Error).message).toMatch(/replication/i);
  });

  test('doctor checks the checkpoint_topic of exactly_once, which the sink then creates', async () => {
    const topic = uniqueName('ns-it-eos-data');
    const checkpoint = uniqueName('ns-it-eos-ckpt');
    await using handle = createSink({
      brokers: secureBroker,
      topic,
      delivery: 'exactly_once',
      checkpoint_topic: checkpoint,
      ...credentials['SCRAM-SHA-512'],
      sasl_mechanism: 'SCRAM-SHA-512',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    const before = await handle.sink.check([table]);
    expect(before.find((r) => r.name === `checkpoint_topic ${checkpoint}`)).toEqual({
      name: `checkpoint_topic ${checkpoint}`,
      ok: true,
      message: 'does not exist yet; the sink creates it (creating it is allowed)',
    });
    await handle.sink.open([table]);
    await handle.sink.write([insert(1)]);
    const after = await handle.sink.check([table]);
    expect(after.find((r) => r.name === `checkpoint_topic ${checkpoint}`)).toMatchObject({
      ok: true,
      message: 'exists and is visible to this client',
    });
    expect(after.every((r) => r.ok)).toBe(true);
  });

  test.each([
    ['SCRAM-SHA-256', USER],
    ['SCRAM-SHA-512', USER512],
    ['PLAIN', PLAIN_USER],
  ] as const)(
    'a wrong %s password is a clear, non-retriable auth error, with no retry storm',
    async (mechanism, user) => {
      const before = await failedLogins();
      await using handle = createSink({
        brokers: secureBroker,
        topic: uniqueName('ns-it-sasl-bad'),
        sasl_mechanism: mechanism,
        sasl_username: user,
        sasl_password: 'not-the-password',
        tls_enabled: true,
        tls_ca_cert: caFile,
      });
      const error = await handle.sink.open([table]).catch((e: unknown) => e);
      expect(NanosyncError.is(error, 'NS_K6005')).toBe(true);
      expect((error as NanosyncError).retriable).toBe(false);
      // The message names the mechanism, the user and the broker; never the password.
      expect((error as Error).message).toContain(
        `SASL ${mechanism} authentication as user "${user}" failed at ${secureBroker}`,
      );
      expect((error as Error).message).toMatch(/sasl_mechanism/);
      expect((error as Error).message).toMatch(/sasl_password/);
      expect((error as Error).message).not.toContain('not-the-password');
      await handle[Symbol.asyncDispose]();
      // The broker saw the failed login for this mechanism, and only a handful of attempts.
      await expect.poll(() => failedLogins(), { timeout: 30_000, interval: 200 }).toBeGreaterThan(before);
      console.log(`failed ${mechanism} logins seen by the broker: ${(await failedLogins()) - before}`);
      expect((await failedLogins()) - before).toBeLessThanOrEqual(3);
    },
  );

  test('doctor reports a wrong password and an untrusted certificate with the same clear messages', async () => {
    await using wrongPassword = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-doctor-bad'),
      sasl_mechanism: 'SCRAM-SHA-512',
      sasl_username: USER512,
      sasl_password: 'not-the-password',
      tls_enabled: true,
      tls_ca_cert: caFile,
    });
    const auth = await wrongPassword.sink.check([table]);
    expect(auth.map((r) => [r.name, r.ok])).toEqual([
      ['kafka reachable', true],
      ['kafka auth', false],
    ]);
    expect(auth[1]!.message).toContain(
      `SASL SCRAM-SHA-512 authentication as user "${USER512}" failed at ${secureBroker}`,
    );
    expect(JSON.stringify(auth)).not.toContain('not-the-password');

    await using otherCa = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-doctor-tls'),
      ...credentials['SCRAM-SHA-256'],
      sasl_mechanism: 'SCRAM-SHA-256',
      tls_enabled: true,
      tls_ca_cert: otherCaFile,
    });
    const tls = await otherCa.sink.check([table]);
    expect(tls).toHaveLength(1);
    expect(tls[0]).toMatchObject({ name: 'kafka reachable', ok: false, retriable: false });
    expect(tls[0]!.message).toContain(`TLS verification of the broker certificate at ${secureBroker} failed (`);
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
    expect((error as Error).message).toContain(
      `TLS verification of the broker certificate at ${secureBroker} failed (`,
    );
    expect((error as Error).message).toContain('tls_ca_cert');
  });

  test('a tls_ca_cert that did not sign the broker certificate is a clear, non-retriable TLS error', async () => {
    await using handle = createSink({
      brokers: secureBroker,
      topic: uniqueName('ns-it-tls-other-ca'),
      ...credentials['SCRAM-SHA-256'],
      sasl_mechanism: 'SCRAM-SHA-256',
      tls_enabled: true,
      tls_ca_cert: otherCaFile,
    });
    const error = await handle.sink.open([table]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_K6001')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(false);
    expect((error as Error).message).toContain('tls_ca_cert');
    // Names the broker and the verification failure (Node's code for an untrusted issuer).
    expect((error as Error).message).toMatch(
      new RegExp(
        `^TLS verification of the broker certificate at ${secureBroker.replace(/\./g, '\\.')} failed \\((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\\)`,
      ),
    );
  });
});
