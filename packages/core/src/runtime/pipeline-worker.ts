/**
 * The worker thread of a pipeline's pool (see `snapshot-workers.ts`): it imports the source's
 * and each sink's `workerModule`, decodes a raw snapshot chunk into rows and encodes the
 * records every sink will send for them. The main thread only moves bytes.
 *
 * Setup (`workerData.data`): the snapshot's tables, the source's module with one decoder setup
 * per table, each sink's module and encoder setup. A task: one chunk (its raw bytes copied
 * over, the table's index, the position and chunk id its events carry, optionally the rows to
 * keep). The result: one entry per sink, the encoded batch or the error its encoder threw
 * (that sink then writes the chunk inline, so `on_error` applies as usual).
 */
import type { EncodedBatch, SinkWorkerModule, SourceWorkerModule } from '../contract/connector.js';
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';
import { readEvents } from './read-events.js';
import { errorData, serveTasks, type TaskErrorData } from './worker-task.js';

export interface PipelineWorkerData {
  tables: TableSchema[];
  source: { module: string; setups: unknown[] };
  sinks: { module: string; setup: unknown }[];
}

export interface PipelineWorkerTask {
  /** Index into `PipelineWorkerData.tables`. */
  table: number;
  raw: ArrayBuffer;
  position: Position;
  chunk?: string;
  /** Concurrent mode, when the merge dropped some rows: 1 for each row to keep, in row order. */
  keep?: Uint8Array;
}

export type PipelineWorkerResult = { rows: number; batches: (EncodedBatch | { error: TaskErrorData })[] };

serveTasks<PipelineWorkerData, PipelineWorkerTask, PipelineWorkerResult>(async ({ data }) => {
  const source = (await import(data.source.module)) as SourceWorkerModule;
  const decoders = data.tables.map((table, i) => source.createRowDecoder(table, data.source.setups[i]));
  const encoders = await Promise.all(
    data.sinks.map(async (sink) => ((await import(sink.module)) as SinkWorkerModule).createEncoder(sink.setup)),
  );
  return async (task) => {
    const table = data.tables[task.table]!;
    const rows = decoders[task.table]!(new Uint8Array(task.raw));
    const events = readEvents(table, rows, task.position, task.chunk, task.keep);
    const batches: PipelineWorkerResult['batches'] = [];
    const transfer: ArrayBuffer[] = [];
    for (const encode of encoders) {
      try {
        // An encoder may be async (the Kafka sink's runs the sink's own async encoding path).
        const batch = await encode(events);
        batches.push(batch);
        transfer.push(batch.bytes);
      } catch (err) {
        batches.push({ error: errorData(err) });
      }
    }
    return { result: { rows: events.length, batches }, transfer };
  };
});
