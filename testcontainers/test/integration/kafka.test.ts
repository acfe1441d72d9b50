import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { startKafka } from '../../src/index.js';

async function roundTrip(brokers: string[], topic: string, values: string[]): Promise<string[]> {
  const kafka = new Kafka({ clientId: 'nanosync-tc-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: values.map((value, i) => ({ key: `k${i}`, value })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `${topic}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const received: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            received.push(message.value?.toString() ?? '');
            if (received.length >= values.length) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return received;
}

describe('startKafka', () => {
  it('shares one broker through NANOSYNC_TEST_KAFKA_BROKERS and round-trips messages with kafkajs', async () => {
    expect(process.env.NANOSYNC_TEST_KAFKA_BROKERS).toMatch(/^127\.0\.0\.1:\d+$/);
    await using kafka = await startKafka();
    expect(kafka.owned).toBe(false);
    const topic = `ns-tc-roundtrip-${Date.now()}`;
    const values = ['one', 'two', JSON.stringify({ id: 3, name: 'three' })];
    expect(await roundTrip(kafka.brokers, topic, values)).toEqual(values);
  });

  it('keeps ports and data across stop/start of a fresh broker with a SCRAM listener on the extra port', async () => {
    await using kafka = await startKafka({
      fresh: true,
      extraListener: true,
      formatArgs: ['--add-scram', 'SCRAM-SHA-512=[name=alice,password=alice-secret]'],
      serverProperties: () => ({
        'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTRA:SASL_PLAINTEXT',
        'sasl.enabled.mechanisms': 'SCRAM-SHA-512',
        'listener.name.extra.scram-sha-512.sasl.jaas.config':
          'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      }),
    });
    expect(kafka.owned).toBe(true);
    expect(kafka.extraPort).toBeGreaterThan(0);
    const topic = `ns-tc-outage-${Date.now()}`;
    expect(await roundTrip(kafka.brokers, topic, ['before'])).toEqual(['before']);
    await kafka.stop();
    const probe = new Kafka({
      clientId: 'probe',
      brokers: kafka.brokers,
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 500,
    }).admin();
    await expect(probe.connect()).rejects.toThrow();
    await kafka.start();
    const kafkaClient = new Kafka({ clientId: 'after', brokers: kafka.brokers, logLevel: logLevel.NOTHING });
    const admin = kafkaClient.admin();
    await admin.connect();
    try {
      expect(await admin.listTopics()).toContain(topic);
      const offsets = await admin.fetchTopicOffsets(topic);
      expect(offsets[0]?.high).toBe('1');
    } finally {
      await admin.disconnect();
    }
    // The extra listener authenticates with the SCRAM user created at format time.
    const extraBrokers = [`127.0.0.1:${kafka.extraPort}`];
    const wrongPassword = new Kafka({
      clientId: 'extra-bad',
      brokers: extraBrokers,
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      sasl: { mechanism: 'scram-sha-512', username: 'alice', password: 'wrong' },
    }).admin();
    await expect(wrongPassword.connect()).rejects.toThrow(/SASL|authentication/i);
    const viaExtra = new Kafka({
      clientId: 'extra',
      brokers: extraBrokers,
      logLevel: logLevel.NOTHING,
      sasl: { mechanism: 'scram-sha-512', username: 'alice', password: 'alice-secret' },
    }).admin();
    await viaExtra.connect();
    try {
      expect(await viaExtra.listTopics()).toContain(topic);
    } finally {
      await viaExtra.disconnect();
    }
  });
});
