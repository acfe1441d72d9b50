/**
 * What a pipeline's worker thread does with a task (see `pipeline-worker.ts`, which serves it
 * in each thread, and `snapshot-workers.ts`): it imports the source's and each sink's
 * `workerModule`, decodes a raw snapshot chunk into rows and encodes the records every sink
 * will send for them. The main thread only moves bytes.
 *
 * Setup: the snapshot's tables, the source's module with one decoder setup per table, each
 * sink's module and encoder setup. A task: one chunk (its raw bytes, the table's index, the
 * position and chunk id its events carry, optionally the rows to keep). The result: one entry
 * per sink, the encoded batch or the error its encoder threw (that sink then writes the chunk
 * decoded on the main thread, so `on_error` applies as usual).
 *
 * A sink whose module has `createJsonEncoder`, with a source whose module has
 * `createJsonRowWriter`, gets a chunk encoded from its values' JSON text, never decoded into
 * rows (the same bytes as from the rows); a chunk the writer or that sink declines is decoded.
 *
 * Only `node:` imports and core's light modules here: a worker thread loads this file without
 * the rest of core.
 */
import type {
  EncodedBatch,
  JsonChanges,
  JsonRows,
  SinkWorkerModule,
  SourceWorkerModule,
} from '../contract/connector.js';
import type { ChangeEvent, Position, TableSchema } from '../model.js';
import { readEvents } from './read-events.js';
import { errorData, type TaskErrorData, type TaskHandler } from './worker-task.js';

export interface PipelineWorkerData {
  tables: TableSchema[];
  source: { module: string; setups: unknown[] };
  sinks: { module: string; setup: unknown }[];
}

/** A task: a snapshot chunk, or a raw stream batch (`kind: 'changes'`). */
export type PipelineWorkerTask = ChunkTask | ChangesTask;

/**
 * A raw stream batch (`ChangeBatch.raw`): decoded with the source's `createChangeDecoder`,
 * encoded for every sink. Its bytes go back with the result (moved, not copied), for the main
 * thread's fallbacks.
 */
export interface ChangesTask {
  kind: 'changes';
  raw: ArrayBuffer;
  setup: unknown;
}

export interface ChunkTask {
  kind?: undefined;
  /** Index into `PipelineWorkerData.tables`. */
  table: number;
  raw: ArrayBuffer;
  position: Position;
  chunk?: string;
  /** Concurrent mode, when the merge dropped some rows: 1 for each row to keep, in row order. */
  keep?: Uint8Array;
}

export type PipelineWorkerResult = {
  rows: number;
  batches: (EncodedBatch | { error: TaskErrorData })[];
  /** A `changes` task's raw bytes, handed back. */
  raw?: ArrayBuffer;
};

/**
 * The handler of a pipeline's tasks, set up from `data`: what each worker thread runs, and what
 * core runs on the main thread for a snapshot without worker threads whose source and sinks
 * all take the JSON text path (see `SnapshotWorkers.start`).
 */
export async function createPipelineHandler(
  data: PipelineWorkerData,
): Promise<TaskHandler<PipelineWorkerTask, PipelineWorkerResult>> {
  const source = (await import(data.source.module)) as SourceWorkerModule;
  const decoders = data.tables.map((table, i) => source.createRowDecoder(table, data.source.setups[i]));
  const sinkModules = await Promise.all(
    data.sinks.map(async (sink) => (await import(sink.module)) as SinkWorkerModule),
  );
  const encoders = sinkModules.map((module, i) => module.createEncoder(data.sinks[i]!.setup));
  // Chunks straight from their values' JSON text, for the sinks that encode from it (and back
  // to the decoded rows for a chunk the writer or the sink declines).
  const jsonEncoders = sinkModules.map((module, i) => module.createJsonEncoder?.(data.sinks[i]!.setup));
  // Rows as whole JSON objects when every such sink takes them: each copies a row in one piece.
  const objects = sinkModules.every((module, i) => jsonEncoders[i] === undefined || module.jsonRowObjects === true);
  const jsonWriters = jsonEncoders.some((e) => e !== undefined)
    ? data.tables.map((table, i) => source.createJsonRowWriter?.(table, data.source.setups[i], { objects }))
    : [];
  let decodeChanges: ((raw: Uint8Array, setup: unknown) => ChangeEvent[]) | undefined;
  // Stream batches straight from their row images' JSON text, likewise.
  const changeEncoders = sinkModules.map((module, i) => module.createJsonChangeEncoder?.(data.sinks[i]!.setup));
  const writeChanges = changeEncoders.some((e) => e !== undefined) ? source.createJsonChangeWriter?.() : undefined;
  return async (task) => {
    const transfer: ArrayBuffer[] = [];
    if (task.kind === 'changes') {
      const raw = task.raw;
      transfer.push(raw);
      if (source.createChangeDecoder === undefined)
        throw new Error(`the source's worker module ${data.source.module} has no createChangeDecoder`);
      let json: JsonChanges | undefined;
      try {
        json = writeChanges?.(new Uint8Array(raw), task.setup);
      } catch {
        // The decoder below decides, and throws what the decoded stream throws.
        json = undefined;
      }
      // As for chunks: every sink that encodes from the JSON text first, in one synchronous step.
      const batches: PipelineWorkerResult['batches'] = new Array(encoders.length);
      const decodedSinks: number[] = [];
      for (let i = 0; i < encoders.length; i++) {
        const encodeJson = changeEncoders[i];
        const fromJson = json === undefined || encodeJson === undefined ? undefined : encodeJson(json);
        if (fromJson === undefined) decodedSinks.push(i);
        else {
          batches[i] = fromJson;
          transfer.push(fromJson.bytes);
        }
      }
      if (decodedSinks.length === 0) return { result: { rows: json!.count, batches, raw }, transfer };
      decodeChanges ??= source.createChangeDecoder();
      let events: ChangeEvent[];
      try {
        events = decodeChanges(new Uint8Array(raw), task.setup);
      } catch (err) {
        // Every such sink writes this batch decoded on the main thread, which throws the same error there.
        const error = errorData(err);
        for (const i of decodedSinks) batches[i] = { error };
        return { result: { rows: 0, batches, raw }, transfer };
      }
      for (const i of decodedSinks) {
        try {
          const batch = await encoders[i]!(events);
          batches[i] = batch;
          transfer.push(batch.bytes);
        } catch (err) {
          batches[i] = { error: errorData(err) };
        }
      }
      return { result: { rows: events.length, batches, raw }, transfer };
    }
    const table = data.tables[task.table]!;
    const writer = jsonWriters[task.table];
    let json: JsonRows | undefined;
    try {
      json = writer?.(new Uint8Array(task.raw));
    } catch {
      // The decoded path below decides, and throws what the decoded read throws.
      json = undefined;
    }
    let decoded: ChangeEvent[] | undefined;
    const decode = () => {
      decoded ??= readEvents(
        table,
        decoders[task.table]!(new Uint8Array(task.raw)),
        task.position,
        task.chunk,
        task.keep,
      );
      return decoded;
    };
    // Every sink that encodes from the JSON text does so first, in one synchronous step: the
    // writer's buffers are shared, and on the main thread another chunk's task may run while
    // this one awaits a decoded sink's encoder below.
    const batches: PipelineWorkerResult['batches'] = new Array(encoders.length);
    const decodedSinks: number[] = [];
    for (let i = 0; i < encoders.length; i++) {
      const encodeJson = jsonEncoders[i];
      const fromJson =
        json === undefined || encodeJson === undefined
          ? undefined
          : encodeJson(table, json, task.position, task.chunk, task.keep);
      if (fromJson === undefined) decodedSinks.push(i);
      else {
        batches[i] = fromJson;
        transfer.push(fromJson.bytes);
      }
    }
    const rows = task.keep !== undefined ? countKept(task.keep) : json !== undefined ? json.rows : decode().length;
    for (const i of decodedSinks) {
      // A chunk that does not decode throws here, failing the task as before.
      const events = decode();
      try {
        const batch = await encoders[i]!(events);
        batches[i] = batch;
        transfer.push(batch.bytes);
      } catch (err) {
        batches[i] = { error: errorData(err) };
      }
    }
    return { result: { rows, batches }, transfer };
  };
}

function countKept(keep: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < keep.length; i++) if (keep[i] === 1) n++;
  return n;
}
