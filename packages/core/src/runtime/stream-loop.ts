import type { Source, TableRef } from '../contract/connector.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { ChangeEvent, Position, TableSchema } from '../model.js';
import type { FanOut } from './fan-out.js';
import type { SchemaGuard } from './schema-changes.js';
import type { StreamWorkers } from './stream-workers.js';
import type { PipelineStats, TableStats } from './stats.js';
import type { WatermarkMerge } from './watermark-merge.js';

export interface StreamLoopOptions {
  pipeline: string;
  source: Source;
  /** Strictly after this position (the minimum sink checkpoint, or L₀). */
  from: Position;
  tables: TableRef[];
  fanOut: FanOut;
  /** The `schema_changes` policy: examines each batch before any of it reaches a sink. */
  schemaGuard: Pick<SchemaGuard, 'needsReview' | 'review'>;
  /** Present while a concurrent snapshot may have chunks open. */
  merge: WatermarkMerge | undefined;
  stats: PipelineStats;
  tableStats: (table: TableSchema) => TableStats;
  /** The attempt's signal: once aborted nothing more goes to the sinks. */
  signal: AbortSignal;
  /** Ends the source's stream (teardown aborts it after the final acknowledgement). */
  streamStop: AbortSignal;
  /** Bounds of a chunk the source reads while streaming (`snapshot.chunk_rows` / `chunk_bytes`). */
  chunk?: { rows: number; bytes: number };
  /**
   * The stream's worker threads: the source is asked for raw batches (`ChangeBatch.raw`), which
   * go to the workers and reach the lanes encoded, in order. While a concurrent snapshot chunk
   * is open a raw batch is decoded here instead (the merge needs every change's key).
   */
  workers?: StreamWorkers;
}

/**
 * Step 6 of the handoff: the change stream, batch by batch to the sink lanes (the lanes
 * do steps 7 and 8). With a concurrent snapshot running, every batch is first shown to the
 * {@link WatermarkMerge}, and a chunk's rows go to the lanes at the place of its high
 * watermark, between the batches before and after it.
 *
 * Returns only once stopped; a stream that ends by itself is a retriable error.
 */
export async function runStreamLoop(options: StreamLoopOptions): Promise<'stopped'> {
  const { source, fanOut, merge, stats, signal, streamStop } = options;
  const workers = options.workers;
  let lastSchema: TableSchema | undefined;
  let lastStats: TableStats | undefined;
  const tableOf = (event: ChangeEvent) => {
    if (event.table !== lastSchema) {
      lastSchema = event.table;
      lastStats = options.tableStats(event.table);
    }
    return lastStats!;
  };
  try {
    for await (const batch of source.stream(options.from, {
      signal: streamStop,
      tables: options.tables,
      ...(options.chunk ? { chunk: options.chunk } : {}),
      ...(workers !== undefined ? { raw: true } : {}),
    })) {
      if (signal.aborted) {
        // Stopping: nothing more goes to the sinks (this batch is replayed on the next
        // start); the stream stays open until teardown has acknowledged the final checkpoint.
        await new Promise<void>((resolve) => {
          if (streamStop.aborted) resolve();
          else streamStop.addEventListener('abort', () => resolve(), { once: true });
        });
        break;
      }
      let events = batch.events;
      const raw = batch.raw;
      if (raw !== undefined) {
        // The batch's tables, for the schema policy, before any of it reaches a sink.
        const tables = raw.tables.map(({ table }) => ({ table }) as ChangeEvent);
        if (options.schemaGuard.needsReview(tables)) await options.schemaGuard.review(tables);
        if (workers === undefined)
          throw new NanosyncError(ErrorCode.Internal, 'the source handed over a raw batch that was not asked for');
        const why =
          merge?.observing === true
            ? 'a concurrent snapshot chunk is being read (its rows are matched against the keys of the changes on the main thread)'
            : workers.inlineReason(raw, fanOut.lanes);
        if (why === undefined) {
          const commitMs = raw.commitTime === undefined ? undefined : Date.parse(raw.commitTime);
          stats.onStreamBatch(batch, tableOf, commitMs);
          if (fanOut.pushEncoded(workers.encode(raw), batch.safePosition, commitMs)) await fanOut.waitForRoom();
          continue;
        }
        events = workers.decodeInline(raw, why);
      }
      if (batch.watermark !== undefined && merge !== undefined) {
        // Before the batch's own events? A watermark batch has none; it marks a place.
        const rows = merge.onWatermark(batch.watermark);
        if (rows !== undefined && rows.length > 0) {
          // Pushed in the same synchronous step as the chunk is resolved, so the reader's
          // barrier that follows is queued behind these rows.
          if (fanOut.push(rows, undefined)) await fanOut.waitForRoom();
        } else if (rows !== undefined && fanOut.full) {
          // A chunk read raw was handed to the lanes encoded (by the merge, in that same step).
          await fanOut.waitForRoom();
        }
      }
      if (events.length === 0 && batch.safePosition === undefined) continue;
      // A table whose shape changed: logged (`propagate`) or the end of this run, before
      // any of the batch reaches a sink (`pause`, `fail`).
      if (options.schemaGuard.needsReview(events)) await options.schemaGuard.review(events);
      merge?.observe(events);
      let commitMs: number | undefined;
      if (events.length > 0) {
        const commitTime = events[events.length - 1]!.commitTime;
        if (commitTime !== undefined) commitMs = Date.parse(commitTime);
      }
      stats.onStreamBatch(
        raw === undefined
          ? batch
          : batch.safePosition === undefined
            ? { events }
            : { events, safePosition: batch.safePosition },
        tableOf,
        commitMs,
      );
      if (fanOut.push(events, batch.safePosition, commitMs)) await fanOut.waitForRoom();
    }
  } catch (err) {
    merge?.abort(err);
    throw err;
  }
  const ended = new NanosyncError(
    ErrorCode.Internal,
    `the source's change stream for pipeline ${options.pipeline} ended on its own; restarting it`,
    { retriable: true },
  );
  merge?.abort(signal.aborted ? new Error('pipeline stopping') : ended);
  if (!signal.aborted) throw ended;
  return 'stopped';
}
