/**
 * The sink's worker module (`@nanosync/sink-kafka/worker`, named by the definition's
 * `workerModule`): what a pipeline's worker thread imports to encode records off the main
 * thread. `createEncoder(setup)` takes what `KafkaSink.encoderSetup` returned and encodes
 * events with the sink's own code (so the records are the ones `write()` sends: topic, key,
 * value, headers, size), framed for `KafkaSink.writeEncoded` (see `encoded.ts`). It never
 * connects to a broker or a registry: topics were created and schemas registered by
 * `encoderSetup` on the main thread.
 */
import type {
  ChangeEvent,
  ConnectorContext,
  EncodedBatch,
  JsonChangesEncoder,
  JsonChunkEncoder,
  Logger,
  SinkWorkerModule,
} from '@nanosync/core';
import { frameRecords } from './encoded.js';
import { jsonChangesEncoder } from './json-changes.js';
import { jsonRowsEncoder } from './json-encoded.js';
import type { KafkaProducer, OutgoingMessage } from './producer.js';
import type { SchemaRegistryClient } from './registry/client.js';
import { type KafkaEncoderSetup, KafkaSink, registryIdKey } from './sink.js';

const silent: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silent;
  },
} as unknown as Logger;

const DONE = Promise.resolve();

/** An encoder of events into framed records, from `KafkaSink.encoderSetup`'s result. */
export function createEncoder(setup: unknown): (events: ChangeEvent[]) => Promise<EncodedBatch> {
  const { config, compacted, registryIds } = setup as KafkaEncoderSetup;
  const compacts = new Set(compacted);
  const ids = new Map(registryIds);
  // The sink's producer and registry as far as encoding uses them: topics exist, schemas are registered.
  const producer = {
    ensureTopics: async () => {},
    isCompacted: (topic: string) => compacts.has(topic),
  } as unknown as KafkaProducer;
  const registry = {
    url: config.schemaRegistry?.url ?? '',
    register: async (subject: string, schema: string) => {
      const id = ids.get(registryIdKey(subject, schema));
      if (id === undefined)
        throw new Error(
          `kafka worker encoder: no schema id for subject "${subject}" (encoderSetup did not register this table's schema)`,
        );
      return id;
    },
    close() {},
  } as unknown as SchemaRegistryClient;
  const context: ConnectorContext = { pipeline: 'worker', logger: silent, signal: new AbortController().signal };
  const sink = new KafkaSink(config, context, producer, { registryClient: registry });
  return async (events) => {
    const records: OutgoingMessage[] = [];
    let size = 0;
    await sink.encodeEvents(events, (message) => {
      records.push(message);
      size += message.size;
      return DONE;
    });
    const framed = frameRecords(records, events);
    return { bytes: framed.buffer as ArrayBuffer, records: records.length, size };
  };
}

/**
 * Snapshot chunks straight from their values' JSON text, for `message_format: json` without a
 * schema registry (see json-encoded.ts); undefined for any other format.
 */
export function createJsonEncoder(setup: unknown): JsonChunkEncoder | undefined {
  return jsonRowsEncoder((setup as KafkaEncoderSetup).config);
}

/**
 * Stream batches straight from their row images' JSON text, for `message_format: json` without
 * a schema registry (see json-changes.ts); undefined for any other format.
 */
export function createJsonChangeEncoder(setup: unknown): JsonChangesEncoder | undefined {
  return jsonChangesEncoder((setup as KafkaEncoderSetup).config);
}

/** The snapshot encoder from JSON text also takes rows written as JSON objects (`JsonRows.starts`). */
export const jsonRowObjects = true;

// Checked against the contract at compile time.
const _module: SinkWorkerModule = { createEncoder, createJsonEncoder, createJsonChangeEncoder, jsonRowObjects };
void _module;
