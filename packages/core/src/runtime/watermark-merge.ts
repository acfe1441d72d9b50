import { randomBytes } from 'node:crypto';
import { qualifiedName } from '../model.js';
import type { ChangeEvent, Position, Row, TableSchema, Value } from '../model.js';

/**
 * One snapshot chunk of the concurrent snapshot, from the moment it is registered (before
 * its low watermark is written) until its rows are emitted at its high watermark.
 */
export interface OpenChunk {
  readonly lowId: string;
  readonly highId: string;
  readonly table: TableSchema;
  /** Set by the reader once every row is read, before it writes the high watermark. */
  rows: Row[] | undefined;
  /** Resolves with the number of rows emitted (those not dropped) once the stream reached the high watermark. */
  readonly emitted: Promise<number>;
}

interface ChunkState extends OpenChunk {
  tableKey: string;
  /** Changes observed after this sequence number count against the chunk. */
  startSeq: number;
  lowSeen: boolean;
  resolve: (rows: number) => void;
  reject: (err: unknown) => void;
}

/** The last change the stream delivered for one key, while some chunk of its table is open. */
interface KeyChange {
  seq: number;
  last: ChangeEvent;
  /**
   * Columns no change of this key carried a value for since it was first seen (each was
   * unchanged TOAST in every update): the sink may never have received them.
   */
  neverCarried: readonly string[] | undefined;
}

interface TableChanges {
  keys: Map<string, KeyChange>;
  /** Sequence of the last TRUNCATE seen (-1: none). */
  truncatedSeq: number;
  /**
   * Sequence of the last change of a table without key columns that did not carry its whole
   * old row (an update or delete without a before image, or with unchanged columns): which
   * row it changed is unknown, so no chunk open across it can be merged (-1: none).
   */
  unidentifiedSeq: number;
  open: Set<ChunkState>;
}

/** Keys kept per table before the ones no open chunk can need any more are pruned. */
const PRUNE_AT = 4096;

/**
 * The merge of the concurrent snapshot into the change stream (the DBLog algorithm, with
 * several chunks in flight).
 *
 * A reader registers a chunk with {@link open}, writes its low watermark, reads the chunk
 * (one consistent read, started after the low watermark), hands the rows over and writes
 * its high watermark. The stream loop calls {@link observe} with every batch before it
 * goes to the sinks and {@link onWatermark} for every watermark batch. From registration on,
 * every key the stream changes in the chunk's table is remembered; at the high watermark
 * the chunk's rows whose key changed (insert, update, delete, either side of a key change)
 * are dropped, because the stream already carried a version at least as new, and the rest
 * are returned to be emitted right there, after every change they may reflect and before
 * every change they cannot. A TRUNCATE of the table drops the whole chunk. Keys are matched
 * by value, never by a range of the read (CTID order is not key order, and updates move rows
 * between pages).
 *
 * A table without key columns has its rows matched by all of their values, never as one key
 * for every row (which would drop the whole chunk on any change). A change there that does
 * not carry the old row whole cannot be matched: a chunk open across it fails and is read again.
 *
 * Unchanged TOAST: when a dropped row's key was last changed by an update that did not send
 * some columns, and no change of that key ever carried them, the sink may not have them at
 * all; a completed copy of that update (the missing columns taken from the chunk's row,
 * which cannot differ from them) is emitted in place of the row.
 *
 * Memory: the chunks' rows (bounded by `snapshot.chunk_rows` × workers) and one entry per key
 * changed in a table while one of its chunks is open; entries no open chunk can need are
 * pruned, and a table's are dropped when its last chunk closes.
 */
export class WatermarkMerge {
  private seq = 0;
  private readonly tables = new Map<string, TableChanges>();
  private readonly chunks = new Map<string, ChunkState>();
  private readonly prefix = randomBytes(6).toString('hex');
  private counter = 0;
  private failure: unknown;
  /** Chunk rows dropped because the stream changed their key (since this merge was made). */
  droppedRows = 0;

  /** Chunks registered and not yet emitted. */
  get openChunks(): number {
    return this.chunks.size / 2;
  }

  open(table: TableSchema): OpenChunk {
    if (this.failure !== undefined) throw this.failure;
    const n = ++this.counter;
    const tableKey = qualifiedName(table);
    let changes = this.tables.get(tableKey);
    if (changes === undefined) {
      changes = { keys: new Map(), truncatedSeq: -1, unidentifiedSeq: -1, open: new Set() };
      this.tables.set(tableKey, changes);
    }
    let resolve!: (rows: number) => void;
    let reject!: (err: unknown) => void;
    const emitted = new Promise<number>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    emitted.catch(() => {});
    const chunk: ChunkState = {
      lowId: `${this.prefix}-${n}-low`,
      highId: `${this.prefix}-${n}-high`,
      table,
      rows: undefined,
      emitted,
      tableKey,
      startSeq: this.seq,
      lowSeen: false,
      resolve,
      reject,
    };
    changes.open.add(chunk);
    this.chunks.set(chunk.lowId, chunk);
    this.chunks.set(chunk.highId, chunk);
    return chunk;
  }

  /** The reader gave up on a chunk (error, stop): forget it without emitting anything. */
  discard(chunk: OpenChunk, err: unknown): void {
    const state = this.chunks.get(chunk.highId);
    if (state === undefined) return;
    this.close(state);
    state.reject(err);
  }

  /** Every open chunk fails with `err` (the stream ended); later `open` calls throw it. */
  abort(err: unknown): void {
    this.failure ??= err;
    for (const chunk of new Set(this.chunks.values())) {
      this.close(chunk);
      chunk.reject(err);
    }
  }

  /** A stream batch, before it goes to the sinks. Cheap when no chunk is open. */
  observe(events: readonly ChangeEvent[]): void {
    if (this.tables.size === 0 || events.length === 0) return;
    const seq = ++this.seq;
    let lastTable: TableSchema | undefined;
    let changes: TableChanges | undefined;
    for (const event of events) {
      if (event.table !== lastTable) {
        lastTable = event.table;
        changes = this.tables.get(qualifiedName(event.table));
      }
      if (changes === undefined) continue;
      if (event.op === 'truncate') {
        changes.truncatedSeq = seq;
        changes.keys.clear();
        continue;
      }
      const keyColumns = event.table.keyColumns;
      if (keyColumns.length === 0) {
        observeKeyless(changes, event, seq);
        continue;
      }
      const key = keyString(keyColumns, event.key);
      record(changes.keys, key, event, seq);
      // A key change: the old key's row is gone as well.
      if (event.before !== undefined && keyColumns.length > 0 && keyColumns.every((k) => k in event.before!)) {
        const old = keyString(keyColumns, event.before);
        if (old !== key) record(changes.keys, old, { ...event, op: 'delete' }, seq);
      }
    }
  }

  /**
   * A watermark batch from the stream. Returns the events to emit right here (a chunk's rows
   * at its high watermark), or undefined for any other watermark (a low one, or one written
   * by an earlier run of this pipeline).
   */
  onWatermark(watermark: { id: string; position: Position }): ChangeEvent[] | undefined {
    const chunk = this.chunks.get(watermark.id);
    if (chunk === undefined) return undefined;
    if (watermark.id === chunk.lowId) {
      chunk.lowSeen = true;
      return undefined;
    }
    if (!chunk.lowSeen || chunk.rows === undefined) {
      this.close(chunk);
      chunk.reject(
        new Error(
          `snapshot chunk of ${chunk.tableKey}: the stream reached its high watermark ${chunk.lowSeen ? 'before its rows were read' : 'without its low watermark'}`,
        ),
      );
      return undefined;
    }
    let events: ChangeEvent[];
    try {
      events = this.merge(chunk, watermark.position);
    } catch (err) {
      this.close(chunk);
      chunk.rows = undefined;
      chunk.reject(err);
      return undefined;
    }
    this.close(chunk);
    chunk.rows = undefined;
    let rows = 0;
    for (const e of events) if (e.op === 'read') rows++;
    chunk.resolve(rows);
    return events;
  }

  private merge(chunk: ChunkState, position: Position): ChangeEvent[] {
    const rows = chunk.rows!;
    const changes = this.tables.get(chunk.tableKey);
    if (changes !== undefined && changes.truncatedSeq > chunk.startSeq) {
      this.droppedRows += rows.length;
      return [];
    }
    const table = chunk.table;
    const keyColumns = table.keyColumns;
    const keyless = keyColumns.length === 0;
    if (keyless && changes !== undefined && changes.unidentifiedSeq > chunk.startSeq)
      throw new Error(
        `snapshot chunk of ${chunk.tableKey}: the table has no key columns and a change the stream carried during the chunk's read does not say which row it changed, so the chunk cannot be merged with the stream; it is read again (or use snapshot.mode: blocking for this pipeline)`,
      );
    const out: ChangeEvent[] = [];
    for (const row of rows) {
      const keyRow: Row = {};
      for (const k of keyColumns) keyRow[k] = row[k] ?? null;
      // Without key columns, a row is known by all of its values (never all rows as one key).
      const change = changes?.keys.get(keyless ? rowIdentity(row) : keyString(keyColumns, keyRow));
      if (change === undefined || change.seq <= chunk.startSeq) {
        out.push({ op: 'read', table, key: keyRow, after: row, position });
        continue;
      }
      this.droppedRows++;
      const last = change.last;
      const fill = change.neverCarried;
      if (last.op !== 'update' || fill === undefined || fill.length === 0 || last.after === undefined) continue;
      const after: Row = { ...last.after };
      for (const column of fill) if (column in row) after[column] = row[column] as Value;
      const repaired: ChangeEvent = { op: 'update', table: last.table, key: last.key, after, position };
      if (last.commitTime !== undefined) repaired.commitTime = last.commitTime;
      const stillMissing = (last.unchanged ?? []).filter((c) => !(c in after));
      if (stillMissing.length > 0) repaired.unchanged = stillMissing;
      out.push(repaired);
      change.neverCarried = undefined;
    }
    return out;
  }

  private close(chunk: ChunkState): void {
    this.chunks.delete(chunk.lowId);
    this.chunks.delete(chunk.highId);
    const changes = this.tables.get(chunk.tableKey);
    if (changes === undefined) return;
    changes.open.delete(chunk);
    if (changes.open.size === 0) {
      this.tables.delete(chunk.tableKey);
      return;
    }
    if (changes.keys.size < PRUNE_AT) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const c of changes.open) oldest = Math.min(oldest, c.startSeq);
    for (const [key, change] of changes.keys) if (change.seq <= oldest) changes.keys.delete(key);
  }
}

/**
 * A change of a table without key columns: the rows it touched are known by their whole
 * values (the after image of an insert or update, the before image of a delete or update).
 * One whose old row is not fully known marks the table: chunks open across it cannot be merged.
 */
function observeKeyless(changes: TableChanges, event: ChangeEvent, seq: number): void {
  if (event.op === 'insert') {
    if (event.after !== undefined) record(changes.keys, rowIdentity(event.after), event, seq);
    return;
  }
  const complete = event.before !== undefined && (event.unchanged === undefined || event.unchanged.length === 0);
  if (!complete) {
    changes.unidentifiedSeq = seq;
    return;
  }
  record(changes.keys, rowIdentity(event.before!), { ...event, op: 'delete' }, seq);
  if (event.op === 'update' && event.after !== undefined) record(changes.keys, rowIdentity(event.after), event, seq);
}

/** A row of a table without key columns known by all of its values, whatever order its columns come in. */
function rowIdentity(row: Row): string {
  return keyString(Object.keys(row).sort(), row);
}

function record(keys: Map<string, KeyChange>, key: string, event: ChangeEvent, seq: number): void {
  const previous = keys.get(key);
  let neverCarried: readonly string[] | undefined;
  if (event.op === 'update' && event.unchanged !== undefined && event.unchanged.length > 0) {
    neverCarried =
      previous === undefined
        ? event.unchanged
        : (previous.neverCarried ?? []).filter((c) => event.unchanged!.includes(c));
  }
  if (previous === undefined) keys.set(key, { seq, last: event, neverCarried });
  else {
    previous.seq = seq;
    previous.last = event;
    previous.neverCarried = neverCarried;
  }
}

/** A key's values as one string, equal for equal values whatever path (stream or snapshot) decoded them. */
export function keyString(keyColumns: readonly string[], row: Row): string {
  if (keyColumns.length === 1) return valueString(row[keyColumns[0]!] ?? null);
  let s = '';
  for (const k of keyColumns) s += `${valueString(row[k] ?? null)}\u0000`;
  return s;
}

function valueString(v: Value): string {
  if (v === null) return 'n';
  switch (typeof v) {
    case 'string':
      return `s${v}`;
    case 'number':
      return `d${v}`;
    case 'boolean':
      return v ? 'T' : 'F';
    default:
      if (v instanceof Uint8Array) return `b${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
      return `a${JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x))}`;
  }
}
