import { registerSinkTests } from '@nanosync/connector-testkit';
import { startKafka } from '@nanosync/testcontainers';
import definition, { codecFor, MESSAGE_FORMATS, topicFor } from '../../src/index.js';
import { consumeAll, inMemoryLogger } from './helpers.js';

// One suite per message format. The reader is a kafkajs consumer of its own reading the
// table's topic from offset 0; tombstones (which follow deletes) carry no change and are skipped.
for (const format of MESSAGE_FORMATS) {
  registerSinkTests(
    async () => {
      const kafka = await startKafka();
      const codec = codecFor(format);
      const prefix = (target: string) => `${target}.`;
      return {
        async createSink(target) {
          const parsed = definition.configSchema.safeParse({
            brokers: kafka.brokers.join(','),
            topic_prefix: prefix(target),
            message_format: format,
          });
          if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
          return definition.create(parsed.data, {
            pipeline: 'kit',
            logger: inMemoryLogger(),
            signal: new AbortController().signal,
          });
        },
        async read(target, table) {
          const topic = topicFor(table, { topicPrefix: prefix(target) });
          const records = [];
          for (const message of await consumeAll(kafka.brokers, topic)) {
            if (message.value === null) continue;
            const change = codec.decode(message.value);
            const [id] = message.key === null ? [] : (JSON.parse(message.key) as unknown[]);
            records.push({
              op: change.op,
              key: change.op === 'truncate' ? {} : { id },
              ...(change.after ? { after: change.after } : {}),
              ...(change.unchanged ? { unchanged: change.unchanged } : {}),
              position: change.position,
            });
          }
          return { records };
        },
        dispose: () => kafka[Symbol.asyncDispose](),
      };
    },
    {
      name: `kafka (${format})`,
      unrepresentable: [
        { type: { kind: 'int64' }, value: '12 apples', description: 'int64 text that is not a number' },
      ],
    },
  );
}
