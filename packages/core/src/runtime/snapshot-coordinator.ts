import { DEFAULT_SNAPSHOT_CHUNK_BYTES } from '../config/validate.js';
import type { PartitionSpec, Source } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { isRetriable } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';
import type { PartitionRecord, StateStore } from '../state/store.js';
import { backoffDelay, type RetryPolicy, sleep } from './backoff.js';
import type { FanOut } from './fan-out.js';
import type { PipelineStats, TableStats } from './stats.js';
import type { WatermarkMerge } from './watermark-merge.js';

export interface SnapshotOptions {
  pipeline: string;
  source: Source;
  store: StateStore;
  fanOut: FanOut;
  /** Tables to snapshot (those without a plan, or with pending partitions). */
  tables: readonly TableSchema[];
  /** The store key of a table (`schema.table`). */
  tableKey: (table: TableSchema) => string;
  /** Blocking mode: carried by every snapshot row, the position the stream resumes from after the snapshot. */
  position: Position;
  /**
   * Concurrent mode: each partition is one chunk read between two watermarks and merged into
   * the running stream (see {@link WatermarkMerge}); `position` is then unused.
   */
  merge?: WatermarkMerge;
  /** The exported snapshot from this run's `open()`, if it gave one. Never persisted. */
  snapshotToken: string | undefined;
  concurrency: number;
  targetRowsPerPartition: number;
  /** Blocking mode: rows per batch handed to the sinks. */
  chunkRows: number;
  /**
   * Concurrent mode: the bounds of one chunk read between two watermarks (`snapshot.chunk_rows`
   * and `snapshot.chunk_bytes`); a partition larger than that is read as several chunks.
   */
  concurrentChunk?: { rows: number; bytes: number };
  retry: RetryPolicy;
  signal: AbortSignal;
  logger: Logger;
  stats: PipelineStats;
}

/**
 * Stored in place of a plan when the source planned no partition (an empty table), so the
 * table counts as planned and is not planned again on the next run.
 */
const EMPTY_PLAN_ID = '__nanosync_empty__';
const EMPTY_KEY: Row = Object.freeze({}) as Row;
const PROGRESS_LOG_INTERVAL_MS = 10_000;

interface WorkItem {
  table: TableSchema;
  key: string;
  stats: TableStats;
  record: PartitionRecord;
  total: number;
}

/**
 * The snapshot phase of one run.
 *
 * Each table is planned once (the plan is stored before any partition is read, and an
 * existing plan is never replaced), then one pool of `concurrency` workers reads the
 * pending partitions of all tables, taking them from the tables in turn (so every table is
 * being read from the start, not one after the other). Rows become `read` events at `position` and go to every
 * sink; a partition is marked done only after a barrier behind its last row has passed
 * every sink's queue, i.e. after every sink has written all of it durably. A partition
 * interrupted by a crash or a pause is read again from its start on the next run.
 */
export class SnapshotCoordinator {
  private readonly abort = new AbortController();
  private failure: unknown;
  private readonly completions = new Set<Promise<void>>();
  private readonly lastProgressLog = new Map<string, number>();

  constructor(private readonly options: SnapshotOptions) {}

  /** Resolves when every partition is done; returns early (without error) when `signal` aborts. */
  async run(): Promise<void> {
    const { signal } = this.options;
    const onAbort = () => this.abort.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.options.stats.startSnapshot(this.options.tables.map((t) => this.options.tableKey(t)));
    try {
      const work = await this.plan();
      if (signal.aborted) return;
      this.options.stats.snapshotPlanned();
      let next = 0;
      const worker = async () => {
        while (!this.abort.signal.aborted && next < work.length) {
          const item = work[next++]!;
          try {
            await this.readWithRetry(item);
          } catch (err) {
            this.fail(err);
          }
        }
      };
      const workers = Math.max(1, Math.min(this.options.concurrency, work.length));
      await Promise.all(Array.from({ length: workers }, worker));
      while (this.completions.size > 0) await Promise.allSettled([...this.completions]);
      if (this.failure !== undefined) throw this.failure;
    } finally {
      this.options.stats.endSnapshot();
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Resolves when no partition is waiting to be marked done (used while stopping). */
  async idle(): Promise<void> {
    while (this.completions.size > 0) await Promise.allSettled([...this.completions]);
  }

  private fail(err: unknown): void {
    if (this.failure === undefined && !this.options.signal.aborted) this.failure = err;
    this.abort.abort();
  }

  /**
   * The pending partitions of every table, interleaved: the first partition of each table,
   * then the second of each, and so on, so that the pool reads all tables at once instead of
   * finishing one table before it starts the next.
   */
  private async plan(): Promise<WorkItem[]> {
    const perTable = await this.planTables();
    const total = perTable.reduce((n, items) => n + items.length, 0);
    const work: WorkItem[] = [];
    for (let round = 0; work.length < total; round++) {
      for (const items of perTable) {
        const item = items[round];
        if (item !== undefined) work.push(item);
      }
    }
    return work;
  }

  private async planTables(): Promise<WorkItem[][]> {
    const { pipeline, source, store, stats, logger } = this.options;
    const perTable: WorkItem[][] = [];
    for (const table of this.options.tables) {
      const work: WorkItem[] = [];
      perTable.push(work);
      if (this.options.signal.aborted) return [];
      const key = this.options.tableKey(table);
      let records = await store.listPartitions(pipeline, key);
      if (records.length === 0) {
        const specs = await source.planPartitions(table, {
          targetRowsPerPartition: this.options.targetRowsPerPartition,
        });
        const plan =
          specs.length === 0
            ? [{ id: EMPTY_PLAN_ID, ordinal: 0, bounds: null, estimatedRows: 0 }]
            : specs.map((spec, ordinal) => {
                const p: { id: string; ordinal: number; bounds: unknown; estimatedRows?: number } = {
                  id: spec.id,
                  ordinal,
                  bounds: spec.bounds ?? null,
                };
                if (spec.estimatedRows !== undefined) p.estimatedRows = spec.estimatedRows;
                return p;
              });
        records = await store.savePartitions(pipeline, key, plan);
        logger.info('snapshot planned', {
          table: key,
          partitions: records.length,
          estimated_rows: plan.reduce((n, p) => n + (p.estimatedRows ?? 0), 0),
        });
      }
      const t = stats.table(key);
      t.partitionsTotal = records.length;
      t.partitionsDone = 0;
      t.rowsEstimated = 0;
      t.rowsSnapshotted = 0;
      for (const r of records) {
        t.rowsEstimated += r.estimatedRows ?? 0;
        if (r.status === 'done') {
          t.partitionsDone++;
          t.rowsSnapshotted += r.rowsRead ?? 0;
        }
      }
      if (t.partitionsDone > 0) this.logProgress(key, t, true);
      for (const record of records) {
        if (record.status === 'done') continue;
        if (record.id === EMPTY_PLAN_ID) {
          await store.markPartitionDone(pipeline, key, record.id, 0);
          t.partitionsDone++;
          continue;
        }
        work.push({ table, key, stats: t, record, total: records.length });
      }
    }
    return perTable;
  }

  private async readWithRetry(item: WorkItem): Promise<void> {
    const { retry, logger } = this.options;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.readPartition(item);
        return;
      } catch (err) {
        if (this.abort.signal.aborted || !isRetriable(err) || attempt >= retry.maxAttempts) throw err;
        const delay = backoffDelay(attempt, retry);
        logger.warn('snapshot read failed, retrying the partition', {
          table: item.key,
          partition: `${item.record.ordinal + 1}/${item.total}`,
          attempt,
          retry_in_ms: delay,
          error: describeError(err),
        });
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private async readPartition(item: WorkItem): Promise<void> {
    const { source, fanOut, stats, position, logger } = this.options;
    const { table, record } = item;
    logger.info('snapshotting', { table: item.key, partition: `${record.ordinal + 1}/${item.total}` });
    const spec: PartitionSpec = { id: record.id, bounds: record.bounds };
    if (record.estimatedRows !== undefined) spec.estimatedRows = record.estimatedRows;
    if (this.options.merge !== undefined) return this.readChunk(item, spec, this.options.merge);
    const readOptions: { snapshotToken?: string; maxRowsPerChunk: number; signal: AbortSignal } = {
      maxRowsPerChunk: this.options.chunkRows,
      signal: this.abort.signal,
    };
    if (this.options.snapshotToken !== undefined) readOptions.snapshotToken = this.options.snapshotToken;
    const keyColumns = table.keyColumns;
    let rowsRead = 0;
    for await (const rows of source.readPartition(table, spec, readOptions)) {
      if (this.abort.signal.aborted) return;
      const events = new Array<ChangeEvent>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        let key = EMPTY_KEY;
        if (keyColumns.length > 0) {
          key = {};
          for (const k of keyColumns) key[k] = row[k] ?? null;
        }
        events[i] = { op: 'read', table, key, after: row, position };
      }
      rowsRead += rows.length;
      stats.onSnapshotRows(item.stats, rows.length);
      if (fanOut.push(events, undefined)) await fanOut.waitForRoom();
    }
    if (this.abort.signal.aborted) return;
    this.markDoneWhenDurable(item, rowsRead);
  }

  /**
   * Concurrent mode: the partition is read as a series of bounded chunks, each one a low
   * watermark, one consistent read of at most `snapshot.chunk_rows` rows and
   * `snapshot.chunk_bytes` bytes (buffered), a high watermark, then a wait until the stream
   * loop reached the high watermark and emitted what the merge kept of the rows. The bound
   * holds whatever the partition's size: the open-ended last partition of a table that grew,
   * or a plan persisted by a version that planned larger partitions.
   */
  private async readChunk(item: WorkItem, spec: PartitionSpec, merge: WatermarkMerge): Promise<void> {
    const { source, stats } = this.options;
    const writeWatermark = source.writeWatermark;
    const readPartitionChunk = source.readPartitionChunk;
    if (writeWatermark === undefined || readPartitionChunk === undefined)
      throw new Error('concurrent snapshot needs Source.writeWatermark and Source.readPartitionChunk');
    const bound = this.options.concurrentChunk ?? { rows: this.options.chunkRows, bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES };
    let after: unknown;
    let emittedTotal = 0;
    for (;;) {
      const chunk = merge.open(item.table);
      let next: unknown;
      try {
        await writeWatermark.call(source, chunk.lowId);
        const read = await readPartitionChunk.call(source, item.table, spec, {
          after,
          maxRows: bound.rows,
          maxBytes: bound.bytes,
          signal: this.abort.signal,
        });
        if (this.abort.signal.aborted) {
          merge.discard(chunk, new Error('snapshot stopped'));
          return;
        }
        next = read.next;
        merge.deliver(chunk, read.rows);
        stats.onSnapshotRows(item.stats, read.rows.length);
        await writeWatermark.call(source, chunk.highId);
      } catch (err) {
        merge.discard(chunk, err);
        throw err;
      }
      const emitted = await abortable(chunk.emitted, this.abort.signal);
      if (this.abort.signal.aborted || emitted === undefined) return;
      emittedTotal += emitted;
      if (next === undefined) break;
      after = next;
    }
    this.markDoneWhenDurable(item, emittedTotal);
  }

  /** Mark the partition done once every sink has it, without holding the worker: it goes on reading. */
  private markDoneWhenDurable(item: WorkItem, rowsRead: number): void {
    const { fanOut } = this.options;
    const { record } = item;
    const completion = fanOut
      .barrier()
      .then(async () => {
        await this.options.store.markPartitionDone(this.options.pipeline, item.key, record.id, rowsRead);
        item.stats.partitionsDone++;
        this.logProgress(item.key, item.stats, false);
      })
      .catch((err: unknown) => {
        if (!this.abort.signal.aborted) this.fail(err);
      })
      .finally(() => this.completions.delete(completion));
    this.completions.add(completion);
  }

  private logProgress(key: string, t: TableStats, force: boolean): void {
    const now = Date.now();
    const done = t.partitionsDone >= t.partitionsTotal;
    if (!force && !done && now - (this.lastProgressLog.get(key) ?? 0) < PROGRESS_LOG_INTERVAL_MS) return;
    this.lastProgressLog.set(key, now);
    if (done && !force) {
      this.options.logger.info('snapshot of table complete', {
        table: key,
        partitions: t.partitionsTotal,
        rows: t.rowsSnapshotted,
      });
    } else {
      this.options.logger.info('snapshot in progress', {
        table: key,
        completed_partitions: `${t.partitionsDone}/${t.partitionsTotal}`,
      });
    }
  }
}

/** Resolves with `promise`, or (to undefined) as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
