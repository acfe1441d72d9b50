/**
 * The file sink's worker module (`@nanosync/sink-file/worker`, named by the definition's
 * `workerModule`): a pipeline's worker thread turns events into the JSON lines `write()`
 * would append, in runs per table (see `encoded.ts`). It needs no setup and touches no file.
 */
import type { ChangeEvent, EncodedBatch, JsonChunkEncoder, SinkWorkerModule } from '@nanosync/core';
import { encodeLines } from './encoded.js';
import { encodeJsonRows } from './json-encoded.js';

export function createEncoder(_setup: unknown): (events: ChangeEvent[]) => EncodedBatch {
  return encodeLines;
}

/** Snapshot chunks straight from their values' JSON text (see json-encoded.ts). */
export function createJsonEncoder(_setup: unknown): JsonChunkEncoder {
  return encodeJsonRows;
}

/** `encodeJsonRows` also takes rows written as JSON objects (`JsonRows.starts`). */
export const jsonRowObjects = true;

// Checked against the contract at compile time.
const _module: SinkWorkerModule = { createEncoder, createJsonEncoder, jsonRowObjects };
void _module;
