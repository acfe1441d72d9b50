import { defineSink } from '@nanosync/core';
import { type KafkaSinkConfig, kafkaSinkPropertiesSchema, sharedSubjectProblem } from './config.js';
import { KafkaSink } from './sink.js';
import { kafkaErrors } from './errors.js';
import { checkTopicCollisions } from './routing.js';

/** `type: kafka` sinks: change events to Kafka topics as JSON, Avro, Protobuf or CloudEvents. */
export default defineSink<KafkaSinkConfig>({
  type: 'kafka',
  configSchema: kafkaSinkPropertiesSchema,
  secretProperties: ['sasl_password', 'schema_registry_password', 'schema_registry_token'],
  errorCodes: kafkaErrors,
  // Offline (`nanosync validate`): two listed tables routed to one topic name, or sharing one
  // registry subject through `topic` and the `topic_name` strategy.
  checkTables(config, tables) {
    const shared = sharedSubjectProblem(config, tables.length);
    if (shared !== undefined) return [{ message: shared, property: 'subject_name_strategy' }];
    try {
      checkTopicCollisions(tables, config);
      return [];
    } catch (err) {
      return [
        {
          message: (err as Error).message,
          ...(config.tableTopics !== undefined ? { property: 'table_topics' } : {}),
        },
      ];
    }
  },
  create: (config, context) => new KafkaSink(config, context),
  // Records can be encoded in worker threads by ./worker (src/worker.ts under tsx).
  workerModule: new URL('./worker.js', import.meta.url).href,
});

export { KafkaSink, HEADER_OP, HEADER_POSITION, HEADER_TABLE, type KafkaEncoderSetup } from './sink.js';
export {
  type KafkaSinkConfig,
  type Compression,
  type SaslMechanism,
  kafkaSinkPropertiesSchema,
  parseKafkaSinkConfig,
  DEFAULT_TOPIC_PREFIX,
} from './config.js';
export { topicFor, messageKey, keyColumnsFor, checkTopicCollisions } from './routing.js';
export { registerCompressionCodecs, COMPRESSIONS } from './compression.js';
/** The size the sink counts a record at against max_bytes_in_flight (the bench drives clients the same way). */
export { recordSize } from './producer.js';
export { installFastProduce } from './fast-produce.js';
export {
  codecFor,
  decodeAvroMessage,
  decodeProtobufMessage,
  decodeJsonMessage,
  decodeCloudEventMessage,
  avroSchemaOf,
  protobufDescriptorOf,
  MESSAGE_FORMATS,
  type DecodedChange,
  type DecodeOptions,
  type EncodedMessage,
  type MessageCodec,
  type MessageFormat,
} from './formats/index.js';
export { avroSchemaFor } from './formats/avro.js';
export { protobufDescriptorFor, protobufSchemaText, columnFieldNumbers } from './formats/protobuf.js';
export { canonicalKeyValue } from './formats/key.js';
