import {
  type KafkaService,
  type OidcProviderService,
  type PostgresService,
  type SchemaRegistryService,
  kafkaLibDir,
  startKafka,
  startOidcProvider,
  startPostgres,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { SchemaRegistryClient } from '../../src/registry/client.js';
import { readWireHeader } from '../../src/registry/codec.js';
import { NanosyncProcess, e2eWorkspace, eventually, writePipelines } from './e2e-helpers.js';
import { consumeAll, uniqueName } from './helpers.js';
import { type RegistryReaders, javaConsume, registryReaders, registryRefusal } from './registry-helpers.js';

/**
 * Bearer tokens against a real registry: Apicurio Registry checking tokens through its
 * OpenID Connect support (Quarkus OIDC: discovery, JWKS, issuer, expiry) against a real
 * OpenID provider (panva's certified `oidc-provider`, started by @nanosync/testcontainers),
 * tokens obtained with the client_credentials grant. The pipeline runs through the CLI and a
 * Java consumer decodes what it wrote, fetching schemas with the same token.
 */

let postgres: PostgresService;
let kafka: KafkaService;
let idp: OidcProviderService;
/** A second provider with keys and an issuer the registry knows nothing of. */
let foreignIdp: OidcProviderService;
let registry: SchemaRegistryService;
let readers: RegistryReaders | undefined;
let kafkaLib: string;

beforeAll(async () => {
  [idp, foreignIdp] = await Promise.all([startOidcProvider(), startOidcProvider()]);
  [postgres, kafka, registry, readers, kafkaLib] = await Promise.all([
    startPostgres(),
    startKafka(),
    startSchemaRegistry({ oidc: { issuer: idp.issuer } }),
    registryReaders(),
    kafkaLibDir(),
  ]);
}, 600_000);

afterAll(async () => {
  await registry?.[Symbol.asyncDispose]();
  await kafka?.[Symbol.asyncDispose]();
  await postgres?.[Symbol.asyncDispose]();
  await idp?.[Symbol.asyncDispose]();
  await foreignIdp?.[Symbol.asyncDispose]();
});

test(
  'a client_credentials token in schema_registry_token: the pipeline registers and writes Avro and Protobuf, a Java consumer decodes every record with the token, and the registry refuses the same reads without it',
  { timeout: 600_000 },
  async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
    const { accessToken } = await idp.clientCredentialsToken();
    // The registry really checks: without a token its API answers 401.
    const anonymous = new SchemaRegistryClient({ url: registry.url });
    const withToken = new SchemaRegistryClient({ url: registry.url, bearerToken: accessToken });
    await using workspace = await e2eWorkspace(postgres, 'ns-registry-token-');
    const { url, db, dir } = workspace;
    const run = uniqueName('sr-token');
    const topicOf = (format: string) => `${run}-${format}`;
    let nanosync: NanosyncProcess | undefined;
    try {
      expect(await anonymous.probe().catch((e: unknown) => e)).toMatchObject({ status: 401 });
      await db.query('CREATE TABLE public.secured (id int PRIMARY KEY, note text)');
      await db.query(`INSERT INTO public.secured SELECT g, 'row ' || g FROM generate_series(1, 5) g`);
      const { args } = await writePipelines(dir, {
        postgresUrl: url,
        brokers: kafka.brokers,
        pipelines: (['avro', 'protobuf'] as const).map((format) => ({
          name: `token_${format}`,
          tables: ['public.secured'],
          sink: {
            topic: topicOf(format),
            message_format: format,
            schema_registry_url: registry.url,
            schema_registry_token: accessToken,
            num_partitions: 1,
          },
        })),
      });
      nanosync = new NanosyncProcess(args);
      const running = nanosync;
      const count = async (topic: string) => (await consumeAll(kafka.brokers, topic).catch(() => [])).length;
      await eventually(
        async () => ((await count(topicOf('avro'))) >= 5 && (await count(topicOf('protobuf'))) >= 5 ? true : undefined),
        'the snapshot of both pipelines in Kafka',
        240_000,
        () => running.output.slice(-3000),
      );
      await db.query(`INSERT INTO public.secured VALUES (6, 'streamed')`);
      await eventually(
        async () => ((await count(topicOf('avro'))) >= 6 && (await count(topicOf('protobuf'))) >= 6 ? true : undefined),
        'the streamed insert in Kafka',
        120_000,
        () => running.output.slice(-3000),
      );

      // A secret: the pipeline's log never shows it.
      expect(running.output).not.toContain(accessToken);
      for (const format of ['avro', 'protobuf'] as const) {
        const topic = topicOf(format);
        expect(await withToken.versions(`${topic}-value`)).toEqual([1]);
        const { id } = (await withToken.latest(`${topic}-value`))!;
        const stored = await consumeAll(kafka.brokers, topic);
        for (const r of stored) expect(readWireHeader(r.value!).id).toBe(id);
        const records = await javaConsume({
          readers,
          kafkaLib,
          brokers: kafka.brokers,
          registryUrl: registry.url,
          topics: [topic],
          expected: 6,
          bearerToken: accessToken,
        });
        expect(records.map((r) => r.valueId)).toEqual(Array(6).fill(id));
        const notes = records.map((r) => JSON.parse(r.fields.find((f) => f.field === 'note')!.value) as string);
        expect(notes.sort()).toEqual(['row 1', 'row 2', 'row 3', 'row 4', 'row 5', 'streamed']);
        expect(records.map((r) => r.op).sort()).toEqual(['INSERT', 'READ', 'READ', 'READ', 'READ', 'READ']);
        // The same schema fetch without the token is refused by the registry.
        await expect(
          javaConsume({
            readers,
            kafkaLib,
            brokers: kafka.brokers,
            registryUrl: registry.url,
            topics: [topic],
            expected: 1,
          }),
        ).rejects.toThrow(/401/);
      }
    } finally {
      anonymous.close();
      withToken.close();
      await nanosync?.kill('SIGTERM').catch(() => undefined);
    }
  },
);

test('an expired token: NS_K6007 naming the registry and the refused bearer token, not retried, the token not shown', async () => {
  const { accessToken, expiresIn } = await idp.clientCredentialsToken({ ttl: 1 });
  expect(expiresIn).toBe(1);
  // Past its exp claim (whole seconds) by a margin: no clock is compared with a deadline here.
  const exp = (JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp;
  while (Date.now() / 1000 < exp + 2) await new Promise((r) => setTimeout(r, 250));
  const error = await registryRefusal(kafka.brokers, registry.url, { schema_registry_token: accessToken });
  expect(error.message).toContain('refused the bearer token of schema_registry_token (401');
  expect(error.message).not.toContain(accessToken);
  expect(error.message).not.toContain(accessToken.split('.')[2]!);
}, 120_000);

test('a token from an identity provider the registry does not trust: NS_K6007 naming the refused bearer token, not retried', async () => {
  const { accessToken } = await foreignIdp.clientCredentialsToken();
  const error = await registryRefusal(kafka.brokers, registry.url, { schema_registry_token: accessToken });
  expect(error.message).toContain('refused the bearer token of schema_registry_token (401');
  expect(error.message).not.toContain(accessToken.split('.')[2]!);
}, 120_000);

test('no token: NS_K6007 saying the registry requires authentication and which settings give it', async () => {
  const error = await registryRefusal(kafka.brokers, registry.url, {});
  expect(error.message).toContain('requires authentication (401');
  expect(error.message).toContain('schema_registry_token');
}, 120_000);
