/**
 * The event model every source produces and every sink consumes.
 *
 * Values are lossless by construction: anything a JavaScript number cannot hold exactly
 * travels as a string, bytes stay bytes, and temporal values keep microseconds. The
 * canonical representation of each logical type is documented on {@link LogicalType}
 * and is the contract between sources and encoders.
 */

/**
 * Logical column types. Encoders (JSON, Avro, Protobuf, BigQuery) map each kind; a source
 * maps its native types onto these. Canonical JS value per kind (null is always allowed
 * for nullable columns):
 *
 * - `int16`, `int32`: `number`
 * - `int64`: `string` of decimal digits, optional leading `-` (never a JS number)
 * - `float32`, `float64`: `number`, including `NaN`, `Infinity`, `-Infinity`
 * - `decimal`: `string` in plain notation (`"-12.3400"`), or `"NaN"`, `"Infinity"`, `"-Infinity"`
 * - `bool`: `boolean`
 * - `string`, `enum`: `string`
 * - `bytes`: `Uint8Array`
 * - `date`: `"YYYY-MM-DD"`; years outside 0001–9999 use ISO 8601 expanded form with a sign
 *   and astronomical numbering (`"-0043-03-15"` is 44 BC); `"infinity"` / `"-infinity"`
 * - `time`: `"HH:MM:SS.ffffff"`; `timetz`: `"HH:MM:SS.ffffff+HH:MM"`
 * - `timestamp`: `"YYYY-MM-DDTHH:MM:SS.ffffff"` (no zone); `timestamptz`: the same in UTC
 *   with a trailing `Z`, so the value does not depend on any session TimeZone. Same year
 *   rules and infinities as `date`.
 * - `interval`: ISO 8601 duration (`"P1Y2M3DT4H5M6.000007S"`)
 * - `uuid`: lowercase canonical `string`
 * - `json`: the JSON document as text (numbers inside keep every digit)
 * - `inet`, `cidr`, `macaddr`, `money`, `other`: `string` in the source's text form
 * - `array`: JS array of the element kind's values (nested for multi-dimensional), nulls allowed
 */
export type LogicalType =
  | { kind: 'int16' | 'int32' | 'int64' | 'float32' | 'float64' | 'bool' | 'string' | 'bytes' }
  | { kind: 'date' | 'time' | 'timetz' | 'timestamp' | 'timestamptz' | 'interval' | 'uuid' | 'json' }
  | { kind: 'inet' | 'cidr' | 'macaddr' | 'money' }
  | { kind: 'decimal'; precision?: number; scale?: number }
  | { kind: 'enum'; values?: string[] }
  | { kind: 'array'; items: LogicalType }
  | { kind: 'other'; sourceType: string };

export type LogicalKind = LogicalType['kind'];

export interface ColumnSchema {
  name: string;
  type: LogicalType;
  nullable: boolean;
  /** The source's own type name (`numeric(12,2)`, `timestamptz`, `nvarchar(50)`), for humans and DDL. */
  sourceType?: string;
}

export interface TableSchema {
  /** Schema (namespace) part of the name, unquoted, exactly as the source spells it. */
  schema: string;
  /** Table part of the name, unquoted. */
  name: string;
  columns: ColumnSchema[];
  /** Columns that identify a row (primary key, or replica identity). Empty when the table has none. */
  keyColumns: string[];
}

/** `schema.table`, the name used in logs, config and `_ns_table`. */
export function qualifiedName(t: { schema: string; name: string }): string {
  return `${t.schema}.${t.name}`;
}

export type Value = null | boolean | number | string | Uint8Array | Value[];
export type Row = Record<string, Value>;

/**
 * A position in the source's change stream. Opaque to core: only the source that made it
 * can order it (`SourceConnector.comparePositions`) or print it. It serialises as-is into
 * the state store. For PostgreSQL it encodes (commit LSN, index inside the transaction),
 * for SQL Server (start_lsn, command_id, seqval, operation). Several events may share an LSN; never a Position.
 */
export type Position = string;

/**
 * `truncate` removes every row of `table` at its position in commit order: it carries an
 * empty `key` and neither `before` nor `after`. A statement naming several tables (or
 * reaching more through `CASCADE`) yields one `truncate` event per table, in one
 * transaction. Sinks that keep state delete the table's rows; log-shaped sinks record it.
 */
export type ChangeOp = 'insert' | 'update' | 'delete' | 'read' | 'truncate';

export interface ChangeEvent {
  /** `read` marks a row that came from the snapshot rather than the change stream. */
  op: ChangeOp;
  /** The table's schema as of this event (it changes when columns are added or dropped). */
  table: TableSchema;
  /** Values of `table.keyColumns`. */
  key: Row;
  /** Old row image, when the source has it (updates/deletes; full or key-only). */
  before?: Row;
  /** New row image for insert, update and read. */
  after?: Row;
  /**
   * Columns whose value the source did not send (PostgreSQL unchanged TOAST). They are
   * absent from `after`; a sink must leave the stored value alone and never write NULL.
   */
  unchanged?: string[];
  /**
   * Stream position. Snapshot rows of a concurrent snapshot carry the position of the
   * watermark written after their chunk was read (after every change the chunk may reflect,
   * before every change it cannot). In blocking mode they carry the position the stream
   * resumes from after the snapshot: the start position L₀, or the sinks' checkpoint when a
   * pipeline that already streamed is snapshotted again (added table).
   */
  position: Position;
  /** Commit time of the source transaction, ISO 8601 UTC with microseconds. */
  commitTime?: string;
  /** Only on `truncate`: what the statement asked for besides removing rows. */
  truncate?: { cascade: boolean; restartIdentity: boolean };
  /**
   * Snapshot events (`read` rows, and the completed updates a concurrent chunk emits in place
   * of rows it dropped): the id of the snapshot chunk they come from. A chunk's events reach
   * each sink in one `write()`, contiguous, and a chunk read again after a crash is read within
   * the bounds it had and keeps its id, so a sink that stores the last chunk id it committed
   * (atomically with the rows) can recognise that chunk and skip it (`Sink.skipsCommittedChunk`).
   */
  chunk?: string;
}

/**
 * What a source's stream yields: events in commit order, bounded in size.
 *
 * A transaction may span several batches (a million-row transaction is never buffered
 * whole). `safePosition` is set only on a batch that ends exactly at a transaction
 * boundary: once every event up to and including this batch is durable in a sink, the
 * source may be acknowledged up to `safePosition`, and a restart from it replays nothing
 * that was acknowledged and skips nothing that was not.
 *
 * A batch with no events and a `safePosition` is a keepalive: the source has seen WAL
 * past everything delivered (idle tables, other databases). It flows through the sink
 * queues like any batch, so it is acknowledged only after all earlier events are durable.
 */
export interface ChangeBatch {
  events: ChangeEvent[];
  safePosition?: Position;
  /**
   * Set on an empty batch that marks the place in the stream of a watermark written with
   * `Source.writeWatermark(id)`: every change committed before the watermark was in an
   * earlier batch, every change committed after it comes in a later one. `position` sorts
   * after the former and before the latter (PostgreSQL: the message's LSN, index 0); it is
   * not a transaction boundary the source may be acknowledged at unless `safePosition` says so.
   */
  watermark?: { id: string; position: Position };
  /**
   * Set instead of `events` (then empty) when core asked the stream for raw batches
   * (`Source.stream`'s `raw`): the batch's changes undecoded, for the source's worker module
   * (`SourceWorkerModule.createChangeDecoder`) to turn into exactly the events the batch would
   * have carried. A source hands a batch over raw only when every change in it can be decoded
   * that way; anything else (a TRUNCATE, rows of an attached partition, a change core must see
   * decoded) comes decoded, in order, as ever.
   */
  raw?: RawChanges;
}

/** The changes of one stream batch in the source's own format (see {@link ChangeBatch.raw}). */
export interface RawChanges {
  /** The changes, packed by the source into one buffer of its own (core moves it to a worker, detaching it here). */
  bytes: ArrayBuffer;
  /** What the decoder needs beside `bytes` (PostgreSQL: the relations the changes use); structured-cloneable. */
  setup: unknown;
  /** How many events the batch holds. */
  count: number;
  /** Position of its first and of its last event. */
  first: Position;
  last: Position;
  /** Commit time of the last event (ISO 8601), when the source knows it. */
  commitTime?: string;
  /** The tables of its events (each table schema object once), and how many events each has. */
  tables: { table: TableSchema; events: number }[];
}
