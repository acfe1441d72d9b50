import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type KafkaService, startKafka } from '@nanosync/testcontainers';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './cli-process.js';
import { CliTestContext } from './fixtures.js';

const { Kafka, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = kafkajs;
const USER = 'nanosync';
const PASSWORD = 'Kafka-S3cret-pw';

let kafka: KafkaService;
let saslBroker: string;

/** A broker with a SCRAM listener and ACLs enforced; the PLAINTEXT listener is the (super user) admin's. */
beforeAll(async () => {
  kafka = await startKafka({
    fresh: true,
    extraListener: true,
    formatArgs: ['--add-scram', `SCRAM-SHA-256=[name=${USER},password=${PASSWORD}]`],
    serverProperties: (ports) => ({
      listeners: `PLAINTEXT://127.0.0.1:${ports.plaintext},CONTROLLER://127.0.0.1:${ports.controller},EXTRA://127.0.0.1:${ports.extra}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${ports.plaintext},EXTRA://127.0.0.1:${ports.extra}`,
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTRA:SASL_PLAINTEXT',
      'sasl.enabled.mechanisms': 'SCRAM-SHA-256',
      'listener.name.extra.sasl.enabled.mechanisms': 'SCRAM-SHA-256',
      'listener.name.extra.scram-sha-256.sasl.jaas.config':
        'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
      'super.users': 'User:ANONYMOUS',
      'allow.everyone.if.no.acl.found': 'false',
    }),
  });
  saslBroker = `127.0.0.1:${kafka.extraPort}`;
  const admin = new Kafka({ brokers: kafka.brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic: 'ok_topic' },
        { topic: 'small_topic', configEntries: [{ name: 'max.message.bytes', value: '10000' }] },
        { topic: 'hidden_topic' },
      ],
    });
    const allow = (topic: string, operation: number) => ({
      resourceType: AclResourceTypes.TOPIC,
      resourceName: topic,
      resourcePatternType: ResourcePatternTypes.LITERAL,
      principal: `User:${USER}`,
      host: '*',
      operation,
      permissionType: AclPermissionTypes.ALLOW,
    });
    await admin.createAcls({
      acl: ['ok_topic', 'small_topic'].flatMap((t) => [
        allow(t, AclOperationTypes.DESCRIBE),
        allow(t, AclOperationTypes.WRITE),
        allow(t, AclOperationTypes.DESCRIBE_CONFIGS),
      ]),
    });
  } finally {
    await admin.disconnect();
  }
});

afterAll(async () => {
  await kafka?.[Symbol.asyncDispose]();
});

async function grantCreate(): Promise<void> {
  const admin = new Kafka({ brokers: kafka.brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createAcls({
      acl: [AclOperationTypes.CREATE, AclOperationTypes.DESCRIBE_CONFIGS].map((operation) => ({
        resourceType: AclResourceTypes.CLUSTER,
        resourceName: 'kafka-cluster',
        resourcePatternType: ResourcePatternTypes.LITERAL,
        principal: `User:${USER}`,
        host: '*',
        operation,
        permissionType: AclPermissionTypes.ALLOW,
      })),
    });
  } finally {
    await admin.disconnect();
  }
}

describe('nanosync doctor: Kafka beyond reachability (real broker with SCRAM and ACLs)', () => {
  it('checks auth, each topic (exists, visible, may be created) and max.message.bytes, with fixes', async () => {
    await using ctx = await CliTestContext.create(1);
    for (const t of ['a', 'b', 'c', 'd']) await ctx.db.query(`CREATE TABLE public.${t} (id int PRIMARY KEY)`);
    const config = (password: string, autoCreate: boolean) => `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(ctx.databaseUrl)}
  - name: events
    type: kafka
    properties:
      brokers: ${JSON.stringify(saslBroker)}
      sasl_mechanism: SCRAM-SHA-256
      sasl_username: ${USER}
      sasl_password: ${JSON.stringify(password)}
      auto_create_topics: ${autoCreate}
      table_topics:
        public.a: ok_topic
        public.b: small_topic
        public.c: hidden_topic
        public.d: new_topic
pipelines:
  - name: kafka_doctor
    source:
      connection: pg
      tables: [public.a, public.b, public.c, public.d]
    sink:
      connection: events
`;
    const doctor = async (file: string, text: string) => {
      await writeFile(join(ctx.dir, file), text);
      const result = await runCli(['doctor', '--file', file], { cwd: ctx.dir });
      expect(result.stdout + result.stderr).not.toContain(PASSWORD);
      return result;
    };

    const first = await doctor('acl.yaml', config(PASSWORD, true));
    expect(first.code, first.stdout + first.stderr).toBe(1);
    const out = first.stdout;
    expect(out).toContain(`✓ kafka reachable: connected to ${saslBroker} (1 broker(s))`);
    expect(out).toContain(`✓ kafka auth: authenticated as "${USER}" with SASL SCRAM-SHA-256`);
    expect(out).toContain('✓ topic ok_topic: exists and is visible to this client');
    expect(out).toContain(
      `✗ topic hidden_topic: is not visible to User:${USER} (missing, or no DESCRIBE permission), and it may not create topics`,
    );
    expect(out).toContain(`fix: kafka-topics.sh --bootstrap-server ${saslBroker} --create --topic new_topic`);
    expect(out).toContain(
      `kafka-acls.sh --bootstrap-server ${saslBroker} --add --allow-principal User:${USER} --operation Describe --operation Write --topic hidden_topic`,
    );
    expect(out).toMatch(
      /✓ max\.message\.bytes ok_topic: accepts messages up to \d+ bytes, at least the sink's largest batch/,
    );
    expect(out).toContain(
      "! max.message.bytes small_topic: accepts messages up to 10000 bytes, less than the sink's batches (max_bytes_in_flight 1048576)",
    );
    expect(out).toContain(
      `fix: kafka-configs.sh --bootstrap-server ${saslBroker} --alter --entity-type topics --entity-name small_topic --add-config max.message.bytes=1048576`,
    );

    const wrong = await doctor('wrong.yaml', config('not-the-password', true));
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain(`✓ kafka reachable: the brokers at ${saslBroker} answered`);
    expect(wrong.stdout).toMatch(/✗ kafka auth: .*(SASL|authentic)/i);
    expect(wrong.stdout).toContain('fix: check sasl_username, sasl_password and sasl_mechanism (SCRAM-SHA-256)');

    // With CREATE on the cluster, a missing topic may be created — but not when auto_create_topics is off.
    await grantCreate();
    const creatable = await doctor('create.yaml', config(PASSWORD, true));
    expect(creatable.stdout).toContain(
      '✓ topic new_topic: does not exist yet; the sink creates it (creating it is allowed)',
    );
    expect(creatable.stdout).toMatch(/✓ max\.message\.bytes new_topic: accepts messages up to \d+ bytes/);
    const noAuto = await doctor('noauto.yaml', config(PASSWORD, false));
    expect(noAuto.stdout).toContain('✗ topic new_topic: does not exist and auto_create_topics is off');
    // The dry run created nothing.
    const admin = new Kafka({ brokers: kafka.brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      expect(await admin.listTopics()).not.toContain('new_topic');
    } finally {
      await admin.disconnect();
    }
  });
});
