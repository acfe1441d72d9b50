/**
 * The file sink's worker module (`@nanosync/sink-file/worker`, named by the definition's
 * `workerModule`): a pipeline's worker thread turns events into the JSON lines `write()`
 * would append, in runs per table (see `encoded.ts`). It needs no setup and touches no file.
 */
import type { ChangeEvent, EncodedBatch, SinkWorkerModule } from '@nanosync/core';
import { encodeLines } from './encoded.js';

export function createEncoder(_setup: unknown): (events: ChangeEvent[]) => EncodedBatch {
  return encodeLines;
}

// Checked against the contract at compile time.
const _module: SinkWorkerModule = { createEncoder };
void _module;
