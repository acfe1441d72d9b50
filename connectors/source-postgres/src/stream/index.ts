/**
 * The PostgreSQL change stream (pgoutput). Used by source.ts:
 *
 * ```ts
 * const acknowledger = createAcknowledger({ logger });
 * stream(from, { signal, tables }) {
 *   return streamChanges({ connection, slot, publication, from, signal, logger, tables, acknowledger });
 * }
 * acknowledge(position) { return acknowledger.acknowledge(position); }
 * ```
 */
export { type Acknowledger, createAcknowledger } from './acknowledger.js';
export { type BatchLimits, DEFAULT_BATCH_LIMITS } from './batch-queue.js';
export {
  DEFAULT_RECONNECT,
  type KeyShape,
  keyMemoryEntry,
  type ReconnectPolicy,
  type StreamChangesOptions,
  streamChanges,
} from './change-stream.js';
export { decodePgOutput, type PgOutputMessage, UNCHANGED_TOAST } from './pgoutput.js';
