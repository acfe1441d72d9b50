/**
 * The source's worker module (`@nanosync/source-postgres/worker`, named by the definition's
 * `workerModule`): what a worker thread of a pipeline imports to decode raw snapshot chunks
 * and raw stream batches (`createChangeDecoder`, see stream/raw-changes.ts), or to write either
 * as JSON text (`createJsonRowWriter`, `createJsonChangeWriter`).
 * Loads no `pg` and nothing that needs the main thread.
 */
import type { JsonRowWriterOptions, JsonRows, Row, SourceWorkerModule, TableSchema } from '@nanosync/core';
import { jsonRowWriter } from './snapshot/json-rows.js';
import { type RawDecoderSetup, rawRowsDecoder } from './snapshot/raw-rows.js';
import { createJsonChangeWriter } from './stream/json-changes.js';
import { createChangeDecoder } from './stream/raw-changes.js';

export { createChangeDecoder, createJsonChangeWriter };

/** A decoder of raw chunks of `table`, from what the source's `decoderSetup(table)` returned. */
export function createRowDecoder(table: TableSchema, setup: unknown): (raw: Uint8Array) => Row[] {
  return rawRowsDecoder(table, setup as RawDecoderSetup);
}

/** A writer of raw chunks of `table` as their values' JSON text, or rows as objects (see snapshot/json-rows.ts). */
export function createJsonRowWriter(
  table: TableSchema,
  setup: unknown,
  options?: JsonRowWriterOptions,
): (raw: Uint8Array) => JsonRows | undefined {
  return jsonRowWriter(table, setup as RawDecoderSetup, options);
}

export type { RawDecoderSetup };

// Checked against the contract at compile time.
const _module: SourceWorkerModule = {
  createRowDecoder,
  createChangeDecoder,
  createJsonRowWriter,
  createJsonChangeWriter,
};
void _module;
