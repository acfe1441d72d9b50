import { randomUUID } from 'node:crypto';
import { DEFAULT_SNAPSHOT_CHUNK_BYTES } from '../config/validate.js';
import type { PartitionChunk, PartitionSpec, ReadPartitionChunkOptions, Source } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, isRetriable, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';
import type { ChunkRecord, PartitionRecord, StateStore } from '../state/store.js';
import { backoffDelay, type RetryPolicy, sleep } from './backoff.js';
import type { FanOut } from './fan-out.js';
import { readEvents } from './read-events.js';
import type { EncodedPart } from './sink-lane.js';
import type { SnapshotWorkers } from './snapshot-workers.js';
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
  /**
   * Some sink skips the last snapshot chunk it committed (`Sink.skipsCommittedChunk`): at most
   * one chunk may then be in the sinks without being recorded as done, so the next chunk's
   * rows wait until the one before is recorded.
   */
  oneChunkInFlight?: boolean;
  retry: RetryPolicy;
  signal: AbortSignal;
  logger: Logger;
  stats: PipelineStats;
  /**
   * The run's worker threads: chunks of the tables they were set up for are read raw and
   * decoded and encoded there (the chunk bookkeeping is the same either way).
   */
  workers?: SnapshotWorkers;
}

/**
 * Stored in place of a plan when the source planned no partition (an empty table), so the
 * table counts as planned and is not planned again on the next run.
 */
const EMPTY_PLAN_ID = '__nanosync_empty__';
const PROGRESS_LOG_INTERVAL_MS = 10_000;

interface WorkItem {
  table: TableSchema;
  key: string;
  stats: TableStats;
  record: PartitionRecord;
  total: number;
  /** The partition's chunk records from the store (a partition read in part before); undefined: read them. */
  chunks: ChunkRecord[] | undefined;
  /**
   * The partition's chunk records being written, in chunk order: rejects once one failed (or
   * its chunk never became durable), so no later chunk is recorded past a missing one.
   */
  recorded: Promise<void>;
}

/** Where a partition's read starts again, from its chunk records. */
interface ResumePoint {
  /** Ordinal of the first chunk not recorded as done. */
  ordinal: number;
  /** Where that chunk starts (undefined: the partition's start). */
  after: unknown;
  /** Rows the done chunks gave. */
  rows: number;
  /** Chunks recorded as read but not done, from `ordinal` on: read again within their bounds, under their ids. */
  again: ChunkRecord[];
  /** The last chunk is done: the partition only needs marking done. */
  finished: boolean;
}

function resumePoint(chunks: readonly ChunkRecord[]): ResumePoint {
  const sorted = [...chunks].sort((a, b) => a.ordinal - b.ordinal);
  const point: ResumePoint = { ordinal: 0, after: undefined, rows: 0, again: [], finished: false };
  let i = 0;
  for (; i < sorted.length; i++) {
    const c = sorted[i]!;
    if (c.ordinal !== point.ordinal || c.status !== 'done') break;
    point.rows += c.rows ?? 0;
    point.after = c.next ?? undefined;
    point.ordinal++;
    if (c.next === null || c.next === undefined) {
      point.finished = true;
      return point;
    }
  }
  for (; i < sorted.length && sorted[i]!.ordinal === point.ordinal + point.again.length; i++)
    point.again.push(sorted[i]!);
  return point;
}

/**
 * The snapshot phase of one run.
 *
 * Each table is planned once (the plan is stored before any partition is read, and an
 * existing plan is never replaced), then one pool of `concurrency` workers reads the
 * pending partitions of all tables, taking them from the tables in turn (so every table is
 * being read from the start, not one after the other). Rows become `read` events and go to
 * every sink.
 *
 * With a source that reads bounded chunks (`Source.readPartitionChunk`), each chunk is
 * recorded in the store with its exact bounds and a new id before its rows go to any sink,
 * and recorded as done once a barrier behind its rows has passed every sink's queue; the
 * partition is marked done (and its chunk records dropped) with its last chunk. A partition
 * interrupted by a crash or a pause resumes after its last chunk recorded as done; a chunk
 * recorded but not done is read again within the bounds it had, under its id, so the rows
 * it gives again carry the same `ChangeEvent.chunk`. A source without chunk reads gives a
 * partition in one read, read again from its start after a crash.
 */
export class SnapshotCoordinator {
  private readonly abort = new AbortController();
  private failure: unknown;
  private readonly completions = new Set<Promise<void>>();
  private readonly lastProgressLog = new Map<string, number>();
  /** `oneChunkInFlight`: settles once the chunk emitted last is recorded (or given up). */
  private turn: Promise<void> = Promise.resolve();
  /**
   * `oneChunkInFlight` after a crash: chunks to read again that are not read yet. A new chunk
   * waits for them: the sink skips only the chunk its last transaction named, so a new chunk
   * written first would make it forget the one read again, and that chunk would be written twice.
   */
  private againLeft = 0;
  private againGate: Promise<void> = Promise.resolve();
  private openAgainGate: () => void = () => {};

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
    if (this.options.oneChunkInFlight !== true) return work;
    // Partitions with a chunk to read again go first, and new chunks wait for those reads.
    const rereads = (item: WorkItem) => resumePoint(item.chunks ?? []).again.length;
    this.againLeft = work.reduce((n, item) => n + rereads(item), 0);
    if (this.againLeft > 0)
      this.againGate = new Promise<void>((resolve) => {
        this.openAgainGate = resolve;
      });
    return [...work.filter((item) => rereads(item) > 0), ...work.filter((item) => rereads(item) === 0)];
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
      const chunks = new Map<string, ChunkRecord[]>();
      for (const c of await store.listChunks(pipeline, key)) {
        const list = chunks.get(c.partition);
        if (list === undefined) chunks.set(c.partition, [c]);
        else list.push(c);
      }
      for (const record of records) {
        if (record.status === 'done') continue;
        if (record.id === EMPTY_PLAN_ID) {
          await store.markPartitionDone(pipeline, key, record.id, 0);
          t.partitionsDone++;
          continue;
        }
        work.push({
          table,
          key,
          stats: t,
          record,
          total: records.length,
          chunks: chunks.get(record.id) ?? [],
          recorded: Promise.resolve(),
        });
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
    const { source, fanOut, stats, logger } = this.options;
    const { table, record } = item;
    logger.info('snapshotting', { table: item.key, partition: `${record.ordinal + 1}/${item.total}` });
    const spec: PartitionSpec = { id: record.id, bounds: record.bounds };
    if (record.estimatedRows !== undefined) spec.estimatedRows = record.estimatedRows;
    if (this.options.merge !== undefined || source.readPartitionChunk !== undefined)
      return this.readChunks(item, spec, this.options.merge);
    const readOptions: { snapshotToken?: string; maxRowsPerChunk: number; signal: AbortSignal } = {
      maxRowsPerChunk: this.options.chunkRows,
      signal: this.abort.signal,
    };
    if (this.options.snapshotToken !== undefined) readOptions.snapshotToken = this.options.snapshotToken;
    let rowsRead = 0;
    for await (const rows of source.readPartition(table, spec, readOptions)) {
      if (this.abort.signal.aborted) return;
      const events = this.readEvents(table, rows, undefined);
      rowsRead += rows.length;
      stats.onSnapshotRows(item.stats, rows.length);
      if (fanOut.push(events, undefined)) await fanOut.waitForRoom();
    }
    if (this.abort.signal.aborted) return;
    this.markDoneWhenDurable(item, rowsRead);
  }

  /**
   * The partition as a series of bounded chunks, from where its chunk records say it stopped.
   *
   * Concurrent mode (`merge`): each chunk is a low watermark, one consistent read of at most
   * `snapshot.chunk_rows` rows and `snapshot.chunk_bytes` bytes (buffered), a high watermark,
   * then a wait until the stream loop reached the high watermark and emitted what the merge
   * kept of the rows. The bound holds whatever the partition's size: the open-ended last
   * partition of a table that grew, or a plan persisted by a version that planned larger
   * partitions. Blocking mode: each chunk is read (in the exported snapshot while there is
   * one) and handed to the sinks at `position`.
   *
   * Either way the chunk is recorded (bounds, id) before its rows can reach a sink, and as
   * done once they are durable in every sink, without holding the worker.
   */
  private async readChunks(item: WorkItem, spec: PartitionSpec, merge: WatermarkMerge | undefined): Promise<void> {
    const { source, stats, logger, store, pipeline } = this.options;
    const writeWatermark = source.writeWatermark;
    const readPartitionChunk = source.readPartitionChunk;
    if ((merge !== undefined && writeWatermark === undefined) || readPartitionChunk === undefined)
      throw new Error('concurrent snapshot needs Source.writeWatermark and Source.readPartitionChunk');
    const bound = this.options.concurrentChunk ?? { rows: this.options.chunkRows, bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES };
    if (item.chunks === undefined) {
      // Another attempt in this run: from what the store holds once the records under way are written.
      await item.recorded.catch(() => {});
      item.recorded = Promise.resolve();
      item.chunks = (await store.listChunks(pipeline, item.key)).filter((c) => c.partition === item.record.id);
    }
    const resume = resumePoint(item.chunks);
    item.chunks = undefined;
    if (resume.finished) {
      await store.markPartitionDone(pipeline, item.key, item.record.id, resume.rows);
      item.stats.partitionsDone++;
      this.logProgress(item.key, item.stats, false);
      return;
    }
    if (resume.ordinal > 0 || resume.again.length > 0) {
      logger.info('snapshot partition resumed', {
        table: item.key,
        partition: `${item.record.ordinal + 1}/${item.total}`,
        chunks_done: resume.ordinal,
        chunks_read_again: resume.again.length,
      });
    }
    let { ordinal, after } = resume;
    let emittedTotal = resume.rows;
    const workers = this.options.workers?.handles(item.table) ? this.options.workers : undefined;
    const readOptions = (from: unknown, again: ChunkRecord | undefined): ReadPartitionChunkOptions => {
      const options: ReadPartitionChunkOptions = {
        after: from,
        maxRows: bound.rows,
        maxBytes: bound.bytes,
        signal: this.abort.signal,
      };
      if (again !== undefined) options.upTo = { next: again.next ?? undefined };
      if (workers !== undefined) {
        options.raw = true;
        if (merge !== undefined) options.rawKeys = true;
      }
      if (merge === undefined && this.options.snapshotToken !== undefined)
        options.snapshotToken = this.options.snapshotToken;
      return options;
    };
    /**
     * Blocking mode: the next chunk's read, started as soon as this chunk's read ended, so the
     * server produces it while this chunk is recorded and handed to the sinks (the reader's
     * connection is free by then: one read per worker at a time, one chunk more in memory).
     * Chunks read again after a crash, and concurrent mode, read one after the other.
     */
    let ahead: { after: unknown; read: Promise<PartitionChunk> } | undefined;
    try {
      for (;;) {
        const again = resume.again[0]?.ordinal === ordinal ? resume.again.shift() : undefined;
        const base = {
          table: item.key,
          partition: item.record.id,
          ordinal,
          id: again?.id ?? randomUUID(),
          after: after ?? null,
        };
        const options = readOptions(after, again);
        let next: unknown;
        let emitted: number;
        let position: Position;
        let endTurn: (() => void) | undefined;
        if (merge !== undefined) {
          const chunk = merge.open(item.table, base.id);
          try {
            await writeWatermark!.call(source, chunk.lowId);
            const read = await readPartitionChunk.call(source, item.table, spec, options);
            if (this.abort.signal.aborted) {
              merge.discard(chunk, new Error('snapshot stopped'));
              return;
            }
            next = again !== undefined ? (again.next ?? undefined) : read.next;
            const raw = read.raw;
            if (raw !== undefined && workers !== undefined) {
              if (raw.keys === undefined || raw.keys.length !== raw.rows)
                throw new NanosyncError(
                  ErrorCode.Internal,
                  `the source read a chunk of ${item.key} raw without a key for each of its ${raw.rows} rows`,
                );
              const { fanOut } = this.options;
              const chunkId = base.id;
              merge.deliverRaw(chunk, {
                keys: raw.keys,
                emit: (position, keep) => {
                  fanOut.pushEncoded(workers.encode(item.table, raw, position, chunkId, keep));
                },
                decode: () => workers.decode(item.table, raw.bytes),
              });
              stats.onSnapshotRows(item.stats, raw.rows);
            } else {
              merge.deliver(chunk, read.rows);
              stats.onSnapshotRows(item.stats, read.rows.length);
            }
            endTurn = await this.takeTurn(again !== undefined);
            if (endTurn === undefined) {
              merge.discard(chunk, new Error('snapshot stopped'));
              return;
            }
            if (again === undefined) await store.saveChunk(pipeline, { ...base, next: next ?? null, status: 'read' });
            await writeWatermark!.call(source, chunk.highId);
          } catch (err) {
            merge.discard(chunk, err);
            endTurn?.();
            throw err;
          }
          const count = await abortable(chunk.emitted, this.abort.signal);
          if (this.abort.signal.aborted || count === undefined) {
            endTurn();
            return;
          }
          emitted = count;
          position = chunk.position!;
        } else {
          let read: PartitionChunk;
          let encoded: EncodedPart[] | undefined;
          try {
            const early = ahead !== undefined && again === undefined && ahead.after === after ? ahead.read : undefined;
            ahead = undefined;
            read = await (early ?? readPartitionChunk.call(source, item.table, spec, options));
            if (this.abort.signal.aborted) return;
            next = again !== undefined ? (again.next ?? undefined) : read.next;
            if (
              next !== undefined &&
              this.options.oneChunkInFlight !== true &&
              resume.again[0]?.ordinal !== ordinal + 1
            ) {
              const started = readPartitionChunk.call(source, item.table, spec, readOptions(next, undefined));
              // Awaited by the next turn of the loop, or dropped (settled below) if it never comes.
              started.catch(() => {});
              ahead = { after: next, read: started };
            }
            // The worker starts on the chunk at once: its records reach no sink before they are
            // pushed below, after the turn and the chunk's record, so its encoding overlaps them
            // (with `oneChunkInFlight`, the wait for the chunk before this one to be durable).
            if (read.raw !== undefined && workers !== undefined && read.raw.rows > 0)
              encoded = workers.encode(item.table, read.raw, this.options.position, base.id, undefined);
            endTurn = await this.takeTurn(again !== undefined);
            if (endTurn === undefined) return;
            if (again === undefined) await store.saveChunk(pipeline, { ...base, next: next ?? null, status: 'read' });
          } catch (err) {
            endTurn?.();
            throw err;
          }
          position = this.options.position;
          const raw = read.raw;
          if (raw !== undefined && workers !== undefined) {
            emitted = raw.rows;
            stats.onSnapshotRows(item.stats, raw.rows);
            if (encoded !== undefined && this.options.fanOut.pushEncoded(encoded))
              await this.options.fanOut.waitForRoom();
          } else {
            emitted = read.rows.length;
            stats.onSnapshotRows(item.stats, read.rows.length);
            const events = this.readEvents(item.table, read.rows, base.id);
            if (events.length > 0 && this.options.fanOut.push(events, undefined))
              await this.options.fanOut.waitForRoom();
          }
          if (this.abort.signal.aborted) {
            endTurn();
            return;
          }
        }
        emittedTotal += emitted;
        const last = next === undefined;
        this.recordWhenDurable(
          item,
          { ...base, next: next ?? null, status: 'done', position, rows: emitted },
          last ? emittedTotal : undefined,
          endTurn,
        );
        if (last) return;
        after = next;
        ordinal++;
      }
    } finally {
      // A read started early whose chunk is not taken (stopped, failed): its connection is
      // given back when it ends, before the partition is read again.
      if (ahead !== undefined) await ahead.read.catch(() => {});
    }
  }

  /** Rows of a blocking-mode chunk as `read` events at the snapshot's position. */
  private readEvents(table: TableSchema, rows: readonly Row[], chunk: string | undefined): ChangeEvent[] {
    return readEvents(table, rows, this.options.position, chunk);
  }

  /**
   * `oneChunkInFlight`: wait until the chunk emitted before this one is recorded as done,
   * then hold the turn until this one is. Returns the function that ends the turn, or
   * undefined when the snapshot stopped meanwhile. Without it, a no-op turn.
   */
  private async takeTurn(again: boolean): Promise<(() => void) | undefined> {
    if (this.options.oneChunkInFlight !== true) return () => {};
    if (!again) {
      await abortable(this.againGate, this.abort.signal);
      if (this.abort.signal.aborted) return undefined;
    }
    const previous = this.turn;
    let end!: () => void;
    this.turn = new Promise<void>((resolve) => {
      end = resolve;
    });
    await abortable(previous, this.abort.signal);
    if (this.abort.signal.aborted) {
      end();
      return undefined;
    }
    if (!again) return end;
    let ended = false;
    return () => {
      end();
      if (ended) return;
      ended = true;
      if (--this.againLeft <= 0) this.openAgainGate();
    };
  }

  /**
   * Record the chunk as done (or, with `partitionRows`, its partition) once every sink has
   * it, without holding the worker: it goes on reading. Records follow chunk order within
   * the partition; one whose chunk did not become durable stops the later ones.
   */
  private recordWhenDurable(
    item: WorkItem,
    chunk: Omit<ChunkRecord, 'pipeline'>,
    partitionRows: number | undefined,
    endTurn: () => void,
  ): void {
    const { fanOut, store, pipeline } = this.options;
    const durable = fanOut.barrier();
    const write = Promise.all([durable, item.recorded]).then(async () => {
      if (partitionRows === undefined) {
        await store.saveChunk(pipeline, chunk);
        return;
      }
      await store.markPartitionDone(pipeline, item.key, item.record.id, partitionRows);
      item.stats.partitionsDone++;
      this.logProgress(item.key, item.stats, false);
    });
    item.recorded = write;
    const completion = write
      .catch((err: unknown) => {
        if (!this.abort.signal.aborted) this.fail(err);
      })
      .finally(() => {
        endTurn();
        this.completions.delete(completion);
      });
    this.completions.add(completion);
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
