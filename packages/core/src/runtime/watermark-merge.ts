import { randomBytes } from 'node:crypto';
import { qualifiedName } from '../model.js';
import type { ChangeEvent, Position, Row, TableSchema, Value } from '../model.js';
import { keyString, rowIdentity } from '../values/key-string.js';

export { keyString };

/**
 * One snapshot chunk of the concurrent snapshot, from the moment it is registered (before
 * its low watermark is written) until its rows are emitted at its high watermark.
 */
export interface OpenChunk {
  readonly lowId: string;
  readonly highId: string;
  readonly table: TableSchema;
  /** Resolves with the number of rows emitted (those not dropped) once the stream reached the high watermark. */
  readonly emitted: Promise<number>;
  /** The chunk's id, carried by every event it emits (`ChangeEvent.chunk`), if it was given one. */
  readonly id: string | undefined;
  /** The high watermark's position (what the emitted events carry), once the stream reached it. */
  readonly position: Position | undefined;
}

/**
 * A chunk read raw: its rows are decoded and encoded in a worker thread, so the merge works
 * on their keys alone (see {@link WatermarkMerge.deliverRaw}).
 */
export interface RawChunkRows {
  /** Each row's key (`keyString`, or `rowIdentity` for a table without key columns), in row order. */
  keys: readonly string[];
  /**
   * Called at the high watermark, when no dropped row has to complete an update: emit the
   * rows right there, at `position`, all of them (`keep` undefined) or those marked 1 in `keep`.
   */
  emit(position: Position, keep: Uint8Array | undefined): void;
  /** The rows decoded on this thread: only when a dropped row must complete an update (unchanged TOAST). */
  decode(): Row[];
}

/** Stands for row `i` of a raw chunk in the merge's maps, until (if ever) the rows are decoded. */
const RAW_INDEX = Symbol('raw row');
function rawRow(i: number): Row {
  return { [RAW_INDEX]: i } as unknown as Row;
}
function rawIndex(row: Row): number {
  return (row as unknown as { [RAW_INDEX]: number })[RAW_INDEX];
}

/** An evicting update that left columns unchanged no change of its key ever carried. */
interface Repair {
  last: ChangeEvent;
  neverCarried: readonly string[];
  /** The chunk's row of that key: where the missing values come from. */
  row: Row;
}

interface ChunkState extends OpenChunk {
  position: Position | undefined;
  tableKey: string;
  /** Changes observed after this sequence number count against the chunk. */
  startSeq: number;
  lowSeen: boolean;
  /** Set by {@link WatermarkMerge.deliver}: the rows not evicted yet, by key (keyed tables). */
  rows: Map<string, Row> | undefined;
  /** Delivered rows of a table without key columns, by all their values (equal rows share an entry). */
  keyless: Map<string, Row[]> | undefined;
  /** A change that does not say which row it changed reached this keyless chunk: it cannot be merged. */
  unidentified: boolean;
  repairs: Map<string, Repair> | undefined;
  /** Set by {@link WatermarkMerge.deliverRaw}: the rows in the maps stand for rows of this raw chunk. */
  raw: { rows: RawChunkRows; count: number } | undefined;
  resolve: (rows: number) => void;
  reject: (err: unknown) => void;
}

/**
 * The last change the stream delivered for one key while some chunk of its table was being
 * read. Small on purpose (a sequence number): the event is kept only when it may have to be
 * completed from a chunk row (unchanged TOAST columns).
 */
interface KeyChange {
  seq: number;
  /**
   * Columns no change of this key carried a value for since it was first seen (each was
   * unchanged TOAST in every update): the sink may never have received them.
   */
  neverCarried: readonly string[] | undefined;
  /** The change itself, only while `neverCarried` is not empty. */
  last: ChangeEvent | undefined;
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
  /** Open chunks whose rows are not delivered yet: only they need `keys`. */
  reading: number;
  /** `keys` is pruned when it reaches this size (twice what survived the last pruning). */
  pruneAt: number;
}

/** Keys kept per table before the ones no chunk being read can need any more are pruned. */
const PRUNE_AT = 4096;

/**
 * The merge of the concurrent snapshot into the change stream (the DBLog algorithm, with
 * several chunks in flight).
 *
 * A reader registers a chunk with {@link open}, writes its low watermark, reads the chunk
 * (one consistent read, started after the low watermark), hands the rows over with
 * {@link deliver} and writes its high watermark. The stream loop calls {@link observe} with
 * every batch before it goes to the sinks and {@link onWatermark} for every watermark batch.
 * From registration on, every key the stream changes in the chunk's table counts against
 * the chunk; at the high watermark the chunk's rows whose key changed (insert, update,
 * delete, either side of a key change) are dropped, because the stream already carried a
 * version at least as new, and the rest are emitted right there, after every change they
 * may reflect and before every change they cannot. A TRUNCATE of the table drops the whole
 * chunk. Keys are matched by value, never by a range of the read (CTID order is not key
 * order, and updates move rows between pages).
 *
 * Unchanged TOAST: when a dropped row's key was last changed by an update that did not send
 * some columns, and no change of that key ever carried them, the sink may not have them at
 * all; a completed copy of that update (the missing columns taken from the chunk's row,
 * which cannot differ from them) is emitted in place of the row.
 *
 * Memory: a chunk's rows are bounded by the reader (`snapshot.chunk_rows` and
 * `snapshot.chunk_bytes`, one chunk per worker). Changes seen while a chunk is still being
 * read are remembered by key (a sequence number each, the event only when it left TOAST
 * columns unchanged); once the rows are delivered, those keys evict their rows at once and
 * later changes evict directly from the delivered rows, so nothing is remembered for a
 * chunk that waits for its high watermark however busy the table is. Keys only chunks
 * already delivered could need are pruned, and a table's are dropped when its last chunk
 * closes.
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

  /** Whether stream batches matter to it now (some chunk is open): `observe` does nothing otherwise. */
  get observing(): boolean {
    return this.tables.size > 0;
  }

  /** Change entries remembered for chunks being read, over all tables (for tests and metrics). */
  get rememberedKeys(): number {
    let n = 0;
    for (const t of this.tables.values()) n += t.keys.size;
    return n;
  }

  /** `id`: the chunk's id, set as `chunk` on the events it emits. */
  open(table: TableSchema, id?: string): OpenChunk {
    if (this.failure !== undefined) throw this.failure;
    const n = ++this.counter;
    const tableKey = qualifiedName(table);
    let changes = this.tables.get(tableKey);
    if (changes === undefined) {
      changes = {
        keys: new Map(),
        truncatedSeq: -1,
        unidentifiedSeq: -1,
        open: new Set(),
        reading: 0,
        pruneAt: PRUNE_AT,
      };
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
      keyless: undefined,
      unidentified: false,
      repairs: undefined,
      raw: undefined,
      emitted,
      id,
      position: undefined,
      tableKey,
      startSeq: this.seq,
      lowSeen: false,
      resolve,
      reject,
    };
    changes.open.add(chunk);
    changes.reading++;
    this.chunks.set(chunk.lowId, chunk);
    this.chunks.set(chunk.highId, chunk);
    return chunk;
  }

  /**
   * The reader has read the chunk (before it writes the high watermark): the rows whose key
   * changed since the chunk opened are evicted now, the others wait for the high watermark.
   */
  deliver(chunk: OpenChunk, rows: readonly Row[], keys?: readonly string[]): void {
    const state = this.chunks.get(chunk.highId);
    if (state === undefined || state.rows !== undefined) return;
    const changes = this.tables.get(state.tableKey)!;
    changes.reading--;
    state.rows = new Map();
    const keyColumns = state.table.keyColumns;
    if (changes.truncatedSeq > state.startSeq) {
      this.droppedRows += rows.length;
    } else if (keyColumns.length === 0) {
      // Without key columns, a row is known by all of its values (never all rows as one key).
      if (changes.unidentifiedSeq > state.startSeq) state.unidentified = true;
      state.keyless = new Map();
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        const identity = keys !== undefined ? keys[i]! : rowIdentity(row);
        const change = changes.keys.get(identity);
        if (change !== undefined && change.seq > state.startSeq) {
          this.droppedRows++;
          continue;
        }
        const same = state.keyless.get(identity);
        if (same === undefined) state.keyless.set(identity, [row]);
        else same.push(row);
      }
    } else {
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        const key = keys !== undefined ? keys[i]! : keyString(keyColumns, row);
        const change = changes.keys.get(key);
        if (change === undefined || change.seq <= state.startSeq) {
          state.rows.set(key, row);
          continue;
        }
        this.droppedRows++;
        if (change.last !== undefined && change.neverCarried !== undefined && change.neverCarried.length > 0) {
          state.repairs ??= new Map();
          state.repairs.set(key, { last: change.last, neverCarried: change.neverCarried, row });
        }
      }
    }
    this.prune(changes);
  }

  /**
   * {@link deliver} for a chunk read raw: the merge matches its rows by the keys the source
   * gave, and at the high watermark has `raw.emit` hand the kept rows to the workers (or, when
   * a dropped row must complete an update, decodes them here and emits events as usual).
   */
  deliverRaw(chunk: OpenChunk, raw: RawChunkRows): void {
    const state = this.chunks.get(chunk.highId);
    if (state === undefined || state.rows !== undefined) return;
    const stand = new Array<Row>(raw.keys.length);
    for (let i = 0; i < stand.length; i++) stand[i] = rawRow(i);
    state.raw = { rows: raw, count: raw.keys.length };
    this.deliver(chunk, stand, raw.keys);
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
        for (const chunk of changes.open) {
          if (chunk.rows === undefined) continue;
          this.droppedRows += chunk.rows.size;
          for (const same of chunk.keyless?.values() ?? []) this.droppedRows += same.length;
          chunk.rows.clear();
          chunk.keyless?.clear();
          chunk.repairs = undefined;
        }
        continue;
      }
      const keyColumns = event.table.keyColumns;
      if (keyColumns.length === 0) {
        this.changedKeyless(changes, event, seq);
        continue;
      }
      const key = keyString(keyColumns, event.key);
      this.changed(changes, key, event, seq);
      // A key change: the old key's row is gone as well.
      if (event.before !== undefined && keyColumns.length > 0 && keyColumns.every((k) => k in event.before!)) {
        const old = keyString(keyColumns, event.before);
        if (old !== key) this.changed(changes, old, { ...event, op: 'delete' }, seq);
      }
    }
    for (const changes of this.tables.values()) if (changes.keys.size >= changes.pruneAt) this.prune(changes);
  }

  /** One key changed in the stream: remembered for the chunks being read, evicted from the delivered ones. */
  private changed(changes: TableChanges, key: string, event: ChangeEvent, seq: number): void {
    if (changes.reading > 0) record(changes.keys, key, event, seq);
    if (changes.open.size === changes.reading) return;
    for (const chunk of changes.open) {
      if (chunk.rows === undefined) continue;
      if (chunk.keyless !== undefined) {
        const same = chunk.keyless.get(key);
        if (same !== undefined) {
          chunk.keyless.delete(key);
          this.droppedRows += same.length;
        }
        continue;
      }
      const row = chunk.rows.get(key);
      if (row !== undefined) {
        chunk.rows.delete(key);
        this.droppedRows++;
        if (event.op === 'update' && event.unchanged !== undefined && event.unchanged.length > 0) {
          chunk.repairs ??= new Map();
          chunk.repairs.set(key, { last: event, neverCarried: event.unchanged, row });
        }
        continue;
      }
      const repair = chunk.repairs?.get(key);
      if (repair === undefined) continue;
      const still =
        event.op === 'update' && event.unchanged !== undefined
          ? repair.neverCarried.filter((c) => event.unchanged!.includes(c))
          : [];
      if (still.length === 0) chunk.repairs!.delete(key);
      else {
        repair.last = event;
        repair.neverCarried = still;
      }
    }
  }

  /**
   * A change of a table without key columns: the rows it touched are known by their whole
   * values (the after image of an insert or update, the before image of a delete or update).
   * One whose old row is not fully known marks the table: chunks open across it cannot be merged.
   */
  private changedKeyless(changes: TableChanges, event: ChangeEvent, seq: number): void {
    if (event.op === 'insert') {
      if (event.after !== undefined) this.changed(changes, rowIdentity(event.after), event, seq);
      return;
    }
    const complete = event.before !== undefined && (event.unchanged === undefined || event.unchanged.length === 0);
    if (!complete) {
      changes.unidentifiedSeq = seq;
      for (const chunk of changes.open) if (chunk.keyless !== undefined) chunk.unidentified = true;
      return;
    }
    this.changed(changes, rowIdentity(event.before!), { ...event, op: 'delete' }, seq);
    if (event.op === 'update' && event.after !== undefined) this.changed(changes, rowIdentity(event.after), event, seq);
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
    if (chunk.unidentified) {
      this.close(chunk);
      chunk.rows = undefined;
      chunk.keyless = undefined;
      chunk.reject(
        new Error(
          `snapshot chunk of ${chunk.tableKey}: the table has no key columns and a change the stream carried during the chunk's read does not say which row it changed, so the chunk cannot be merged with the stream; it is read again (or use snapshot.mode: blocking for this pipeline)`,
        ),
      );
      return undefined;
    }
    if (chunk.raw !== undefined) {
      const raw = chunk.raw;
      chunk.raw = undefined;
      if (chunk.repairs === undefined || chunk.repairs.size === 0) {
        const keep = new Uint8Array(raw.count);
        let kept = 0;
        for (const row of chunk.rows!.values()) {
          keep[rawIndex(row)] = 1;
          kept++;
        }
        for (const same of chunk.keyless?.values() ?? [])
          for (const row of same) {
            keep[rawIndex(row)] = 1;
            kept++;
          }
        chunk.position = watermark.position;
        this.close(chunk);
        chunk.rows = undefined;
        chunk.keyless = undefined;
        // Handed over in the same synchronous step as the chunk is resolved (see the stream loop).
        if (kept > 0) raw.rows.emit(watermark.position, kept === raw.count ? undefined : keep);
        chunk.resolve(kept);
        return [];
      }
      const decoded = raw.rows.decode();
      for (const [key, row] of chunk.rows!) chunk.rows!.set(key, decoded[rawIndex(row)]!);
      for (const same of chunk.keyless?.values() ?? [])
        for (let i = 0; i < same.length; i++) same[i] = decoded[rawIndex(same[i]!)]!;
      for (const repair of chunk.repairs.values()) repair.row = decoded[rawIndex(repair.row)]!;
    }
    const events = this.emit(chunk, watermark.position);
    chunk.position = watermark.position;
    this.close(chunk);
    chunk.rows = undefined;
    chunk.keyless = undefined;
    chunk.repairs = undefined;
    let rows = 0;
    for (const e of events) if (e.op === 'read') rows++;
    chunk.resolve(rows);
    return events;
  }

  private emit(chunk: ChunkState, position: Position): ChangeEvent[] {
    const table = chunk.table;
    const keyColumns = table.keyColumns;
    const id = chunk.id;
    const out: ChangeEvent[] = [];
    const read = (key: Row, row: Row): ChangeEvent =>
      id === undefined
        ? { op: 'read', table, key, after: row, position }
        : { op: 'read', table, key, after: row, position, chunk: id };
    for (const same of chunk.keyless?.values() ?? []) for (const row of same) out.push(read({}, row));
    for (const row of chunk.rows!.values()) {
      const keyRow: Row = {};
      for (const k of keyColumns) keyRow[k] = row[k] ?? null;
      out.push(read(keyRow, row));
    }
    for (const { last, neverCarried, row } of chunk.repairs?.values() ?? []) {
      if (last.op !== 'update' || last.after === undefined) continue;
      const after: Row = { ...last.after };
      for (const column of neverCarried) if (column in row) after[column] = row[column] as Value;
      const repaired: ChangeEvent = { op: 'update', table: last.table, key: last.key, after, position };
      if (last.commitTime !== undefined) repaired.commitTime = last.commitTime;
      if (id !== undefined) repaired.chunk = id;
      const stillMissing = (last.unchanged ?? []).filter((c) => !(c in after));
      if (stillMissing.length > 0) repaired.unchanged = stillMissing;
      out.push(repaired);
    }
    return out;
  }

  /** Drops the remembered changes no chunk still being read can need. */
  private prune(changes: TableChanges): void {
    if (changes.reading === 0) {
      changes.keys.clear();
      return;
    }
    let oldest = Number.POSITIVE_INFINITY;
    for (const c of changes.open) if (c.rows === undefined) oldest = Math.min(oldest, c.startSeq);
    for (const [key, change] of changes.keys) if (change.seq <= oldest) changes.keys.delete(key);
    changes.pruneAt = Math.max(PRUNE_AT, changes.keys.size * 2);
  }

  private close(chunk: ChunkState): void {
    this.chunks.delete(chunk.lowId);
    this.chunks.delete(chunk.highId);
    const changes = this.tables.get(chunk.tableKey);
    if (changes === undefined) return;
    if (!changes.open.delete(chunk)) return;
    if (chunk.rows === undefined) changes.reading--;
    if (changes.open.size === 0) {
      this.tables.delete(chunk.tableKey);
      return;
    }
    if (changes.keys.size >= changes.pruneAt || changes.reading === 0) this.prune(changes);
  }
}

function record(keys: Map<string, KeyChange>, key: string, event: ChangeEvent, seq: number): void {
  const previous = keys.get(key);
  let neverCarried: readonly string[] | undefined;
  if (event.op === 'update' && event.unchanged !== undefined && event.unchanged.length > 0) {
    neverCarried =
      previous === undefined
        ? event.unchanged
        : (previous.neverCarried ?? []).filter((c) => event.unchanged!.includes(c));
    if (neverCarried.length === 0) neverCarried = undefined;
  }
  const last = neverCarried === undefined ? undefined : event;
  if (previous === undefined) keys.set(key, { seq, neverCarried, last });
  else {
    previous.seq = seq;
    previous.neverCarried = neverCarried;
    previous.last = last;
  }
}
