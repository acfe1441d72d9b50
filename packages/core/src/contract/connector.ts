import { causeChain, type ErrorArea } from '../errors.js';
import type { Logger } from './logger.js';
import type { ChangeBatch, ChangeEvent, Position, Row, TableSchema } from '../model.js';

/** The version of this contract. A connector built for another version is refused at load time. */
export const CONNECTOR_API_VERSION = 1 as const;

/**
 * A property schema, structurally compatible with zod's `safeParse`, so a connector may
 * use zod or anything else. Issue paths are relative to the properties object; core turns
 * them into YAML paths (`pipelines[0].sink.properties.topic`).
 */
export interface PropertySchema<T> {
  safeParse(
    input: unknown,
  ):
    | { success: true; data: T }
    | { success: false; error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> } };
}

/** A table as named in the config: `schema.table` split, never re-quoted or lowercased. */
export interface TableRef {
  schema: string;
  name: string;
}

export interface ConnectorContext {
  /** Pipeline name, already validated (letters, digits, `-`, `_`). */
  pipeline: string;
  logger: Logger;
  /** Aborted when the pipeline stops; long operations should give up promptly. */
  signal: AbortSignal;
  /**
   * Say what the connector is waiting for right now when it cannot go on by itself (a
   * resource another process holds: `replication slot "x" is in use by another process
   * (pid 4711)`), and undefined once it goes on. Core shows it in the pipeline's status
   * (`waitingFor`) so an operator sees why a start makes no progress. Optional: given by
   * core to running pipelines only.
   */
  reportWaiting?: (what: string | undefined) => void;
  /**
   * Whether this server may still write for the pipeline: false once its lease may have run
   * out by the local clock (frozen or cut off past the lease time; another server may run the
   * pipeline now). Core checks it before every sink write; a sink that retries a write
   * itself should check it before each retry and give up with a retriable error when false.
   * Optional: absent when the pipeline holds no lease.
   */
  mayWrite?: () => boolean;
  /**
   * A small durable memory of the connector's own, kept in the state store with the
   * pipeline: what the connector must know about an earlier run that neither its own
   * service nor the checkpoint holds (PostgreSQL: the key columns and leaf partitions of a
   * captured table as last streamed). Forgotten when the pipeline starts over from a new
   * start position (deleted and applied again). Values are short strings (JSON); keep them
   * to kilobytes. Optional: absent outside a running pipeline (checks, drops, tests).
   */
  memory?: ConnectorMemory;
}

/** See {@link ConnectorContext.memory}. */
export interface ConnectorMemory {
  /** The value last set under `key` for this pipeline and connector, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Durable once the promise resolves; calls are applied in the order they are made. */
  set(key: string, value: string): Promise<void>;
}

/** One line of a preflight check: ok, or what is wrong and the SQL/command that fixes it. */
export interface CheckResult {
  name: string;
  ok: boolean;
  message: string;
  fix?: string;
  /** A warning does not stop the pipeline from starting. */
  severity?: 'error' | 'warning';
  /**
   * The failure may go away by itself (a service not reachable yet): core retries the start
   * with backoff instead of stopping the pipeline at once.
   */
  retriable?: boolean;
}

export interface OpenOptions {
  /**
   * Set when the pipeline already ran: the start position persisted by the first `open`.
   * The source must then reuse its existing slot (or equivalent) and fail with a clear
   * error if it is gone or invalidated. It must never silently create a new one.
   */
  existingStartPosition?: Position;
  /** The last acknowledged position, for error messages about lost ranges. */
  checkpoint?: Position;
  /** `cdc` pipelines need no snapshot: the source may skip exporting one. */
  wantSnapshot: boolean;
}

export interface OpenResult {
  /**
   * The position the change stream starts from (L₀). It is recorded before any snapshot
   * row is read, and comes from the replication slot's consistent point (or the change
   * table's max LSN), never from "the current WAL position" read separately.
   */
  startPosition: Position;
  /**
   * Present when the source exported a snapshot that shows exactly the state at
   * `startPosition` (first run only). Every `readPartition` call is given the token;
   * core calls `release()` once all partitions are read, before `stream()`.
   */
  snapshot?: { token: string; release(): Promise<void> };
  /**
   * The source can bracket snapshot reads with watermarks in its change stream: after
   * `writeWatermark(id)` resolves, `stream()` yields (once, in order) a batch whose
   * `watermark.id` is `id`. Core then snapshots concurrently with streaming (see
   * `writeWatermark`); without it core falls back to the blocking snapshot.
   */
  watermarks?: boolean;
}

/** A unit of snapshot work, planned once and persisted. `bounds` must be JSON-serialisable. */
export interface PartitionSpec {
  /** Stable id within the table, e.g. `"0"`, `"1"`; ordered as planned. */
  id: string;
  bounds: unknown;
  /** Estimate for progress bars. */
  estimatedRows?: number;
}

export interface ReadPartitionOptions {
  /** The exported snapshot from `open()`, when it is still available (first run). */
  snapshotToken?: string;
  /** Upper bound on rows per yielded chunk. */
  maxRowsPerChunk: number;
  signal: AbortSignal;
}

/** Options of {@link Source.readPartitionChunk}. */
export interface ReadPartitionChunkOptions {
  /** Where the previous chunk of this partition ended (its `next`); undefined for the partition's start. */
  after: unknown;
  /** At most this many rows. */
  maxRows: number;
  /**
   * Stop once the rows read reach this many bytes (their size as the source sent them);
   * at least one row is returned while the partition has rows left.
   */
  maxBytes: number;
  /**
   * Read a chunk again, exactly over the range it covered the first time: every row from
   * `after` up to `upTo.next` (the `next` that first read returned; undefined: the partition's
   * end), whatever `maxRows` and `maxBytes` say, and return `upTo.next` as `next`. Core asks
   * for this when a chunk recorded before a crash is read again, so that it stands for the
   * same stretch of the partition (and keeps its id).
   */
  upTo?: { next: unknown };
  /**
   * Blocking snapshot: the exported snapshot from `open()` while it is available (first run);
   * the chunk is then read as of the start position. Absent in concurrent mode.
   */
  snapshotToken?: string;
  signal: AbortSignal;
  /**
   * Hand the rows over undecoded, for a worker thread to decode (`PartitionChunk.raw`, with
   * `rows` empty). Core asks only a source whose definition has a `workerModule`. The chunk
   * covers exactly the rows the decoded read would (same bounds, `bytes` and `next`).
   */
  raw?: boolean;
  /**
   * With `raw`: also give each row's key (`RawRows.keys`). Core asks in concurrent mode,
   * where the merge matches chunk rows against the stream's changes by key.
   */
  rawKeys?: boolean;
}

/** One bounded chunk of a partition. */
export interface PartitionChunk {
  /** The decoded rows; empty when the chunk was read with `raw` (see `raw`). */
  rows: Row[];
  /** Size of `rows` as the source sent them (the measure `maxBytes` bounds). */
  bytes: number;
  /** Pass as `after` to read the next chunk; undefined when the partition has no rows left. */
  next: unknown;
  /** Set when read with `raw`: the rows in the source's own format, for its worker decoder. */
  raw?: RawRows;
}

/**
 * Rows of one chunk as the source read them, for {@link SourceWorkerModule.createRowDecoder}
 * in a worker thread.
 */
export interface RawRows {
  /**
   * The rows in the source's own format (PostgreSQL: the COPY text lines), in order. A buffer
   * of its own (not a view into a larger one): core moves it to a worker, detaching it here.
   */
  bytes: ArrayBuffer;
  /** How many rows `bytes` holds. */
  rows: number;
  /**
   * Only when asked (`rawKeys`): each row's key in row order, as `keyString(table.keyColumns,
   * row)` would give for the decoded row (`rowIdentity(row)` for a table without key
   * columns), so it equals what core computes for the same key arriving in the stream.
   */
  keys?: string[];
}

export interface SourceMetrics {
  /** WAL (or equivalent) the source keeps for this pipeline, in bytes. */
  retainedBytes?: number;
  /** Bytes that can still be written before the server invalidates the slot; undefined = unlimited. */
  safeBytes?: number | null;
  /** The source's own latest position (server WAL head), for "stalled" detection. */
  headPosition?: Position;
  confirmedPosition?: Position;
  /**
   * Commit time (ISO 8601) of the oldest change the pipeline has not acknowledged yet;
   * `null` when there is none. Only given when asked with `{ pending: true }`.
   */
  oldestPendingCommitAt?: string | null;
}

export interface SourceMetricsOptions {
  /**
   * Also find the commit time of the oldest change not acknowledged yet. Asked only while the
   * pipeline is paused (nothing streams then), so the lag of a paused pipeline is real. A
   * source that cannot tell, or not cheaply, leaves `oldestPendingCommitAt` out.
   */
  pending?: boolean;
}

/**
 * A running source for one pipeline. Core calls the methods in this order:
 * `check` → `open` → `describe` → (`planPartitions` → `readPartition`…) → `stream` →
 * `acknowledge`… → `close`. `drop` is called only when the pipeline is deleted.
 */
export interface Source {
  /**
   * Preflight diagnostics; never changes anything on the server. Core calls it (and every
   * sink's `check`) on every start before `open`: a failed result with severity `error`
   * stops the start before anything is created, a `warning` is logged.
   */
  check(tables: TableRef[]): Promise<CheckResult[]>;

  /**
   * Prepare change capture for `tables` and return the start position.
   * Called before any snapshot read: a change committed after the returned position is
   * guaranteed to appear in `stream(startPosition)`, and a change committed before it is
   * guaranteed to be visible to a snapshot read with `snapshot.token`. Idempotent for the
   * same pipeline (adjusts publication membership to match `tables`).
   */
  open(tables: TableRef[], options: OpenOptions): Promise<OpenResult>;

  /** Current schemas of the tables, keys included. Fails naming a missing table. */
  describe(tables: TableRef[]): Promise<TableSchema[]>;

  /**
   * Split a table into partitions of roughly `targetRowsPerPartition` rows. Called once
   * per table per snapshot; core persists the result and never asks again for that
   * snapshot, so the partitioning must not depend on data read later.
   */
  planPartitions(table: TableSchema, options: { targetRowsPerPartition: number }): Promise<PartitionSpec[]>;

  /**
   * Read one partition as chunks of rows (a source with `readPartitionChunk` is read through
   * that instead, in both snapshot modes). With `snapshotToken` the rows are exactly the
   * state at the start position (no duplicate or gap at the handoff). Without it (after a
   * restart) the rows are a fresh read; the stream's replay from the start position
   * repairs any overlap. Must be safe to call concurrently for different partitions.
   */
  readPartition(table: TableSchema, partition: PartitionSpec, options: ReadPartitionOptions): AsyncIterable<Row[]>;

  /**
   * Stream changes strictly after `from` in commit order (see {@link ChangeBatch}).
   * `from` is the start position or the last acknowledged `safePosition`; the source
   * resumes at that transaction boundary. The source decides nothing about the handoff:
   * it never skips events it thinks the snapshot already covered. The iterable ends only
   * when `signal` aborts or on error; transient connection loss is retried inside with backoff.
   * `chunk`: the pipeline's `snapshot.chunk_rows` / `snapshot.chunk_bytes`, for rows the
   * source reads itself while streaming (a PostgreSQL partition attached meanwhile).
   */
  stream(
    from: Position,
    options: {
      signal: AbortSignal;
      tables: TableRef[];
      chunk?: { rows: number; bytes: number };
      /**
       * Hand batches over undecoded where possible (`ChangeBatch.raw`), for the pipeline's worker
       * threads to decode with the worker module's `createChangeDecoder`. Core asks only a source
       * whose worker module has it. Batches, positions and `safePosition`s are the same either way.
       */
      raw?: boolean;
    },
  ): AsyncIterable<ChangeBatch>;

  /**
   * Everything up to and including `position` (a `safePosition` from a batch, or the start
   * position) is durable in every sink. The source may now release it (slot
   * `confirmed_flush_lsn`). Never called with a position that was not a transaction
   * boundary; calls are monotonic.
   */
  acknowledge(position: Position): Promise<void>;

  /**
   * Write a watermark into the change stream, for the concurrent snapshot (only called when
   * `open()` returned `watermarks: true`). When the promise resolves the watermark is in the
   * source's log after every change committed so far and before every change committed
   * later, and a snapshot read started afterwards sees at least everything before it.
   * `stream()` reports it as a `ChangeBatch.watermark` with this `id`, exactly where it lies
   * in commit order, and never reports a watermark written by another pipeline (the
   * PostgreSQL source marks its messages with the pipeline's slot name).
   *
   * Core reads each snapshot chunk between a low and a high watermark: a chunk row whose key
   * changed in the stream before the high watermark is dropped (the stream carries that key),
   * and the rest are emitted at the high watermark's place in the stream, so no snapshot row
   * ever overrides a newer change. Must be safe to call concurrently.
   */
  writeWatermark?(id: string): Promise<void>;

  /**
   * Concurrent snapshot: read the next chunk of a partition in one consistent read that
   * starts when it is called (after the chunk's low watermark), bounded by rows and bytes,
   * so that a partition of any size (the open-ended last one of a growing table, or one
   * planned by an older version with a larger target) is buffered a bounded chunk at a time.
   * Chunks follow the partition's own order, so a row that stays put is read exactly once;
   * a row that moves meanwhile is carried by the stream. Required with `writeWatermark`; a
   * source without watermarks that has it is read through it in blocking mode too (with
   * `snapshotToken`), so a partition interrupted by a crash resumes after its last chunk.
   * `next` must be JSON-serialisable: core records it (see `upTo`).
   */
  readPartitionChunk?(
    table: TableSchema,
    partition: PartitionSpec,
    options: ReadPartitionChunkOptions,
  ): Promise<PartitionChunk>;

  /**
   * Main thread, once per table schema version, before raw chunks of it are decoded in a
   * worker: what the worker's `createRowDecoder` needs to decode them (structured-cloneable;
   * PostgreSQL: the columns' type details from the catalog, which `TableSchema` does not
   * carry). `undefined`: this table's rows cannot be decoded in a worker (core reads it
   * decoded). Only called on a source whose definition has a `workerModule`.
   */
  decoderSetup?(table: TableSchema): Promise<unknown | undefined>;

  /** Total order of this source's positions: negative, zero, positive like `Array.sort`. */
  comparePositions(a: Position, b: Position): number;

  /** Human form for logs, e.g. `0/3A1B2C4D`. */
  formatPosition(position: Position): string;

  /** Run a `query` pipeline's SQL; rows in bounded chunks. Sources without SQL omit it. */
  query?(sql: string, options: { signal: AbortSignal; maxRowsPerChunk: number }): AsyncIterable<Row[]>;

  /** Retained WAL and friends, for metrics and warnings. */
  metrics?(options?: SourceMetricsOptions): Promise<SourceMetrics>;

  /**
   * Remove what `open` created (slot, publication). Called when the pipeline is deleted, and
   * when a `snapshot` pipeline has finished (it never streams, so nothing may keep retaining
   * WAL for it). Must succeed when there is nothing left to remove.
   */
  drop(): Promise<void>;

  /**
   * What `drop()` removes, as steps an operator can run by hand (SQL statements, commands),
   * for when the source cannot be reached: `nanosync pipeline delete --force` prints them
   * after removing the pipeline's state. Must not connect to anything.
   */
  manualDropSteps?(): string[];

  /**
   * The pipeline's first start failed before any sink checkpoint and before any snapshot
   * partition was done: remove what `open` created for this pipeline (the slot; a
   * publication only when the connector created it, not one an owner prepared), so the
   * source is left as it was found. Called on a fresh instance after the failed attempt's
   * `close()`; must succeed when there is nothing to remove.
   */
  abandon?(): Promise<void>;

  /** Release connections. Must not drop server-side state. */
  close(): Promise<void>;
}

/**
 * A running sink for one pipeline. Each sink has its own queue and checkpoint in core;
 * a sink never sees events out of order and never sees a batch twice in one run (but may
 * see replays after a restart: writes must be idempotent per key where the target allows).
 */
export interface Sink {
  /** Create or verify targets (topics, tables, files) for these tables. Called before any write. */
  open(tables: TableSchema[]): Promise<void>;

  /**
   * Write events in order. Resolves only when every event is durable in the target (fsynced,
   * acknowledged by the broker with acks=all, committed). Core writes the sink's checkpoint
   * right after this resolves, so resolving early would lose data on a crash. Rejecting
   * with a retriable error makes core retry the same batch with backoff. The events (and
   * the array) are shared with the pipeline's other sinks: read them, never modify them.
   */
  write(events: ChangeEvent[]): Promise<void>;

  /** Flush and release resources. */
  close(): Promise<void>;

  /**
   * True for a sink that makes snapshot chunks exactly-once: with the events of each write it
   * stores, in the same atomic commit, the id of the last snapshot chunk it wrote
   * (`ChangeEvent.chunk`), reads that id back when it starts, and skips the events of that
   * chunk when they come again. Core then lets at most one chunk be in the sinks without
   * being recorded as done in the state store (the next chunk's rows wait for that record),
   * so after a crash the only chunk a sink can already hold that is read again is the last
   * one it committed — read again within the same bounds, under the same id. Without it
   * chunks are emitted as soon as they are read.
   */
  readonly skipsCommittedChunk?: boolean;

  /**
   * Optional preflight (reachability, permissions); called on every start before `open`, like
   * the source's. `tables` are the pipeline's source tables (for a sink whose targets follow
   * from them, such as one topic per table); older hosts call it without.
   */
  check?(tables?: TableRef[]): Promise<CheckResult[]>;

  /**
   * The sink's own dead-letter target (the Kafka sink: a topic `<prefix>dlq`), used when the
   * sink's `on_error` is `dead_letter`. Without it core appends dead letters to a JSON-lines
   * file. Called after `open`.
   */
  deadLetters?(): DeadLetterTarget;

  /**
   * Main thread, once per table schema version, after `open` and before any encoded write of
   * those tables: what the worker's `createEncoder` needs, structured-cloneable (config,
   * schema registry ids — registered here —, topic names). `undefined`: this sink cannot
   * encode in a worker now; core then writes those tables inline. Only called on a sink whose
   * definition has a `workerModule`.
   */
  encoderSetup?(tables: TableSchema[]): Promise<unknown | undefined>;

  /**
   * Write records a worker encoded (`SinkWorkerModule.createEncoder`). The same contract as
   * `write()`: resolves only when every record is durable, in order, a retriable error makes
   * core retry the same batch, exactly_once transactions and `skipsCommittedChunk` apply to
   * `events.chunk`. When one record cannot be written (non-retriable, e.g. too large), it
   * throws an error marked with {@link recordError}: core then decodes the batch's events
   * inline and calls `write(events)`, so `on_error` (dead_letter, skip, fail) applies as ever.
   */
  writeEncoded?(batch: EncodedBatch, events: EncodedEvents): Promise<void>;

  /**
   * Optional, with `writeEncoded`: write consecutive encoded stream batches (in stream order) as
   * one write, so that several small batches a worker encoded become one request instead of one
   * each. The contract of `writeEncoded` over all their records together: durable in order when
   * it resolves, retried as a whole, and a record blamed with {@link recordError} (its index
   * counted across all the parts' records) makes core write every part's events with `write()`.
   * Core merges only stream parts (never snapshot chunks), up to its events-per-write bound; the
   * sink splits them by its own byte limits as it does any write.
   */
  writeEncodedParts?(parts: readonly { batch: EncodedBatch; events: EncodedEvents }[]): Promise<void>;
}

/**
 * One event a sink could never write, as recorded by `on_error: dead_letter`.
 *
 * A sink says that one event (not the sink, the target or the connection) is at fault by
 * rejecting `write()` with a non-retriable error whose `details.eventIndex` is that event's
 * index in the `events` array it was given ({@link eventError}): too large for the target, a
 * value the format cannot carry. Core then applies the sink's policy. The events before it
 * are written again (they may or may not have reached the target: replays are allowed), the
 * event is dead-lettered or skipped, and the write goes on with the rest. Any other
 * non-retriable error fails the sink as a whole.
 */
export interface DeadLetter {
  pipeline: string;
  /** The sink's id in the pipeline (`${index}:${connection}`). */
  sink: string;
  /** `schema.table` */
  table: string;
  op: ChangeEvent['op'];
  key: Row;
  position: Position;
  commitTime?: string;
  before?: Row;
  after?: Row;
  error: { code?: string; message: string };
  /** When it was dead-lettered (ISO 8601). */
  at: string;
}

export interface DeadLetterTarget {
  /** Resolves when the letters are durable (like `Sink.write`). */
  write(letters: DeadLetter[]): Promise<void>;
  close?(): Promise<void>;
}

/**
 * Mark an error as caused by one event of a write (see {@link DeadLetter}): sets
 * `details.eventIndex` on a NanosyncError (returned as is) so core's `on_error` policy applies.
 */
export function eventError<E extends { details: Record<string, string | number | boolean | undefined> }>(
  err: E,
  eventIndex: number,
): E {
  err.details.eventIndex = eventIndex;
  return err;
}

/** The index of the event an error blames (set by {@link eventError}), looking through causes. */
export function eventIndexOf(err: unknown): number | undefined {
  const blamed = blamingError(err);
  return blamed === undefined ? undefined : (blamed.details.eventIndex as number);
}

/** The error in `err`'s cause chain that blames one event (set by {@link eventError}), if any. */
export function blamingError(err: unknown): { details: Record<string, unknown> } | undefined {
  for (const e of causeChain(err)) {
    const details = (e as { details?: Record<string, unknown> }).details;
    if (details && typeof details.eventIndex === 'number') return e as { details: Record<string, unknown> };
  }
  return undefined;
}

/**
 * Mark an error from `Sink.writeEncoded` as caused by one record of the batch (its index in
 * the batch's records, `details.recordIndex`), so core falls back to `write(events)` for
 * that batch (see {@link Sink.writeEncoded}). Returns `err`.
 */
export function recordError<E extends { details: Record<string, string | number | boolean | undefined> }>(
  err: E,
  recordIndex: number,
): E {
  err.details.recordIndex = recordIndex;
  return err;
}

/** The record index an error from `writeEncoded` blames (set by {@link recordError}), looking through causes. */
export function recordIndexOf(err: unknown): number | undefined {
  for (const e of causeChain(err)) {
    const details = (e as { details?: Record<string, unknown> }).details;
    if (details && typeof details.recordIndex === 'number') return details.recordIndex;
  }
  return undefined;
}

export interface SourceDefinition<C = unknown> {
  apiVersion: typeof CONNECTOR_API_VERSION;
  kind: 'source';
  /** The `type:` this connector answers to (`postgres`). */
  type: string;
  /**
   * Validates the connector's config object, which core builds as
   * `{ dsn?, ...connection.properties, ...pipeline.source.properties }` with every
   * `${env:VAR}` already resolved. Issue paths map back to the YAML field they came from.
   */
  configSchema: PropertySchema<C>;
  /** Property names whose literal values are secrets (encrypted at rest, redacted in output). */
  secretProperties?: readonly string[];
  /**
   * The connector's own error codes (`defineErrorArea`), listed in docs/errors.md. Codes
   * the connector raises must come from here or from core's areas.
   */
  errorCodes?: ErrorArea;
  create(config: C, context: ConnectorContext): Source | Promise<Source>;
  /**
   * A module a worker thread can import to decode raw chunks (`ReadPartitionChunkOptions.raw`),
   * as an absolute URL the connector resolves itself, e.g.
   * `new URL('./worker.js', import.meta.url).href`. It exports {@link SourceWorkerModule}'s
   * members. Without it the source's rows are always decoded on the main thread.
   */
  workerModule?: string;
}

/**
 * What a source's `workerModule` exports. Runs in a worker thread: it may import the
 * connector's own code and `@nanosync/core` (light), nothing that needs the main thread.
 */
export interface SourceWorkerModule {
  /**
   * A decoder for one table schema version. `setup` is what `Source.decoderSetup(table)`
   * returned on the main thread (structured-cloned). The decoder turns `RawRows.bytes` into
   * exactly the rows the decoded read (`readPartitionChunk` without `raw`) returns for them,
   * and throws what that read would throw for a value it cannot decode.
   */
  createRowDecoder(table: TableSchema, setup: unknown): (raw: Uint8Array) => Row[];
  /**
   * Optional: a decoder of raw stream batches (`ChangeBatch.raw`: its `bytes` and `setup`) into
   * exactly the events the source would have put in the batch decoded, throwing what the
   * decoded stream would throw for a value it cannot decode. One decoder serves many batches,
   * in any order (it may cache what `setup` describes); core also runs one on the main thread,
   * for batches it must write decoded.
   */
  createChangeDecoder?(): (raw: Uint8Array, setup: unknown) => ChangeEvent[];
  /**
   * Optional: a writer of raw chunks of one table (the same `setup` as `createRowDecoder`)
   * straight into the JSON text of every value, without making rows or values objects. Each
   * value's text is what `jsonValueText` gives for the value `createRowDecoder` decodes. It
   * returns undefined for a chunk it cannot write so (a value that does not decode, a shape it
   * does not know): core then decodes the chunk, which throws the decoder's error. A sink with
   * `SinkWorkerModule.createJsonEncoder` encodes from it. With `options.objects` it may write
   * each row as a JSON object (see {@link JsonRows}`.starts`); a writer that does not know the
   * option writes the values alone, which every sink takes too.
   */
  createJsonRowWriter?(
    table: TableSchema,
    setup: unknown,
    options?: JsonRowWriterOptions,
  ): (raw: Uint8Array) => JsonRows | undefined;
  /**
   * Optional: a writer of raw stream batches (`ChangeBatch.raw`: its `bytes` and `setup`, as
   * `createChangeDecoder` takes them) straight into the JSON text of every value of every row
   * image ({@link JsonChanges}), without making events, rows or values objects. Each value's
   * text is what `jsonValueText` gives for the value of the event `createChangeDecoder` decodes.
   * It returns undefined for a batch it cannot write so (a value that does not decode, a message
   * or shape it does not know): core then decodes the batch, which throws the decoder's error.
   * A sink with `SinkWorkerModule.createJsonChangeEncoder` encodes from it.
   */
  createJsonChangeWriter?(): (raw: Uint8Array, setup: unknown) => JsonChanges | undefined;
}

/** What a change is in {@link JsonChanges}`.ops`. */
export const JsonChangeOp = { Insert: 1, Update: 2, Delete: 3 } as const;
export type JsonChangeOp = (typeof JsonChangeOp)[keyof typeof JsonChangeOp];

/**
 * A raw stream batch's changes with their row images as JSON text
 * (`SourceWorkerModule.createJsonChangeWriter`): change `i` is the batch's event `i` (what
 * `createChangeDecoder` gives), described by `ops[i]`, `tables[i]` (the event's `table`),
 * `positions[i]` and `commitTimes[i]`, and by two row images: `images[2 * i]` is its
 * `before`, `images[2 * i + 1]` its `after`, each the index in `ends` of the image's first
 * value, or -1 where the event has no such image. An image holds `tables[i].columns.length`
 * values in column order, value `v` being `text[ends[v - 1] .. ends[v])` (from 0 for the
 * first), as in {@link JsonRows}; a column the event's image does not have (outside the
 * replica identity in a key-only `before`, or an unchanged TOAST column left out of an
 * update's `after`, which the event lists in `unchanged`) has an empty text. The arrays may
 * be views into buffers the module's writers share, valid until the next call of any of them,
 * and longer than `count` (only the first `count` entries, `2 * count` of `images`, count).
 * Only inserts, updates and deletes of a stream go this way: a writer returns undefined for a
 * batch holding anything else (a truncate), and a sink derives the event's `key` and
 * `unchanged` from the images, as the source's decoder makes them.
 */
export interface JsonChanges {
  count: number;
  ops: Uint8Array;
  tables: TableSchema[];
  positions: Position[];
  commitTimes: (string | undefined)[];
  images: Int32Array;
  text: Uint8Array;
  ends: Uint32Array;
  /** Some value is or holds a float `-0` (written `"-0"`). */
  negativeZero: boolean;
}

/** What a sink needs of a source's JSON row writer (`SourceWorkerModule.createJsonRowWriter`). */
export interface JsonRowWriterOptions {
  /** Each row as a JSON object of the table's column names (see {@link JsonRows}`.starts`). */
  objects?: boolean;
}

/**
 * The values of a chunk's rows as JSON text (`SourceWorkerModule.createJsonRowWriter`): the
 * texts of row 0's columns in `table.columns` order, then row 1's, and so on, back to back in
 * `text`. Value `v` (row `r`, column `c`, `v = r * columns + c`) is `text[ends[v - 1] ..
 * ends[v])` (from 0 for the first), unless the rows are written as objects: then `starts`
 * says where each value begins (see it). The arrays may be views into buffers the module's
 * writers share, valid until the next call of any of them: each sink encodes from them
 * before core writes the next chunk.
 */
export interface JsonRows {
  rows: number;
  columns: number;
  text: Uint8Array;
  ends: Uint32Array;
  /**
   * Present when the rows are written as JSON objects (asked for with
   * {@link JsonRowWriterOptions}`.objects`): row `r` is `{"<column 1>":<value>,"<column
   * 2>":<value>}`, each name as `JSON.stringify` writes it, in column order, spanning
   * `text[r === 0 ? 0 : ends[r * columns - 1] + 1 .. ends[r * columns + columns - 1] + 1)`,
   * and value `v` is `text[starts[v] .. ends[v])`. A sink then copies a row's object whole.
   */
  starts?: Uint32Array;
  /** Some value is or holds a float `-0` (written `"-0"`). */
  negativeZero: boolean;
}

export interface SinkDefinition<C = unknown> {
  apiVersion: typeof CONNECTOR_API_VERSION;
  kind: 'sink';
  type: string;
  /** Validates `{ dsn?, ...connection.properties, ...pipeline sink properties }`, env already resolved. */
  configSchema: PropertySchema<C>;
  /**
   * Optional offline check of the validated config against the tables the pipeline lists,
   * run by `nanosync validate`, `apply` and `run` before anything connects (e.g. two tables
   * whose names map to one topic). One problem per entry; `property` names the property it
   * is about (the issue points where that property was written), else it points at the sink.
   */
  checkTables?(config: C, tables: readonly TableRef[]): SinkTableProblem[];
  secretProperties?: readonly string[];
  /**
   * The connector's own error codes (`defineErrorArea`), listed in docs/errors.md. Codes
   * the connector raises must come from here or from core's areas.
   */
  errorCodes?: ErrorArea;
  create(config: C, context: ConnectorContext): Sink | Promise<Sink>;
  /**
   * A module a worker thread can import to encode events for this sink (see
   * `Sink.encoderSetup` and `Sink.writeEncoded`), as an absolute URL the connector resolves
   * itself (`new URL('./worker.js', import.meta.url).href`). It exports
   * {@link SinkWorkerModule}'s members. Without it the sink always encodes on the main thread.
   */
  workerModule?: string;
}

/** What a sink's `workerModule` exports (runs in a worker thread, like {@link SourceWorkerModule}). */
export interface SinkWorkerModule {
  /**
   * An encoder built from what `Sink.encoderSetup` returned (structured-cloned). It turns
   * events into one {@link EncodedBatch} holding the same records `write()` would send for
   * them (it may return a promise: await it). A value the format cannot carry is thrown as `write()` would throw it
   * ({@link eventError} with the event's index): core then writes that batch inline.
   */
  createEncoder(setup: unknown): (events: ChangeEvent[]) => EncodedBatch | Promise<EncodedBatch>;
  /**
   * Optional: an encoder of a snapshot chunk from its values' JSON text
   * (`SourceWorkerModule.createJsonRowWriter`), giving the very batch `createEncoder` gives
   * for the chunk's `read` events (the same bytes). It returns undefined for a chunk it does
   * not encode so (a table shape or value it leaves to `createEncoder`); core then decodes the
   * chunk and calls that. `keep`: only the rows whose entry is 1. Returns undefined when the
   * sink does not take this path with this setup at all (a format it does not write so).
   */
  createJsonEncoder?(setup: unknown): JsonChunkEncoder | undefined;
  /**
   * Optional: true when this module's `createJsonEncoder` encoder also takes rows written as
   * JSON objects ({@link JsonRows}`.starts`). Core asks the source's writer for objects only
   * when every sink encoding from the JSON text says so.
   */
  jsonRowObjects?: boolean;
  /**
   * Optional: an encoder of raw stream batches from their row images' JSON text
   * (`SourceWorkerModule.createJsonChangeWriter`), giving the very batch `createEncoder` gives
   * for the batch's events (the same bytes). It returns undefined for a batch it does not
   * encode so; core then decodes the batch and calls `createEncoder`'s encoder. Returns
   * undefined when the sink does not take this path with this setup at all.
   */
  createJsonChangeEncoder?(setup: unknown): JsonChangesEncoder | undefined;
}

/** A sink's encoder of stream batches from JSON text (`SinkWorkerModule.createJsonChangeEncoder`). */
export type JsonChangesEncoder = (changes: JsonChanges) => EncodedBatch | undefined;

/**
 * A sink's encoder of snapshot chunks from their values' JSON text
 * (`SinkWorkerModule.createJsonEncoder`): the chunk's rows of `table` at `position`, with its
 * chunk id and the rows to keep; undefined where it leaves the chunk to `createEncoder`.
 */
export type JsonChunkEncoder = (
  table: TableSchema,
  rows: JsonRows,
  position: Position,
  chunk: string | undefined,
  keep: Uint8Array | undefined,
) => EncodedBatch | undefined;

/** Records encoded in a worker for one sink, in the sink's own framing. */
export interface EncodedBatch {
  /** The records, framed as the sink reads them back in `writeEncoded` (moved between threads). */
  bytes: ArrayBuffer;
  /** How many records (a Kafka delete with a tombstone is two). */
  records: number;
  /** Bytes the sink will send for them (what its batching by bytes counts). */
  size: number;
}

/** What {@link Sink.writeEncoded} is told about the events behind an encoded batch. */
export interface EncodedEvents {
  /** How many events the batch was encoded from. */
  count: number;
  /** Position of the first and of the last of them. */
  first: Position;
  last: Position;
  /**
   * The snapshot chunk the events come from (`ChangeEvent.chunk`), when they do. One encoded
   * batch never mixes chunks, nor chunk events with others, and holds a whole chunk's events
   * (a chunk reaches a sink in one write, as with `write()`).
   */
  chunk?: string;
}

/** What {@link SinkDefinition.checkTables} found wrong with the config for the listed tables. */
export interface SinkTableProblem {
  message: string;
  property?: string;
}

export type ConnectorDefinition = SourceDefinition<any> | SinkDefinition<any>;

export function defineSource<C>(
  definition: Omit<SourceDefinition<C>, 'kind' | 'apiVersion'> & { apiVersion?: 1 },
): SourceDefinition<C> {
  return { ...definition, apiVersion: CONNECTOR_API_VERSION, kind: 'source' };
}

export function defineSink<C>(
  definition: Omit<SinkDefinition<C>, 'kind' | 'apiVersion'> & { apiVersion?: 1 },
): SinkDefinition<C> {
  return { ...definition, apiVersion: CONNECTOR_API_VERSION, kind: 'sink' };
}

/** Re-exported for connectors that build events by hand. */
export type { ChangeBatch, ChangeEvent, Position, Row, TableSchema };
