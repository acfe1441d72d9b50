/**
 * Change rows of several capture instances → one commit-ordered stream of events.
 *
 * Each instance is read page by page in its own order (see `change-query.ts`); the merger
 * keeps at most one page per instance and always emits the smallest head by
 * (`__$start_lsn`, `__$command_id`, `__$seqval`, `__$operation`). A transaction touching
 * several tables shares one start LSN, so its rows come out together, in the order the
 * tables were changed. Memory is bounded by one page per instance.
 *
 * The assembler turns rows into events: 1 → delete, 2 → insert, and an update pair
 * (3 = before-image, 4 = after-image, same start LSN, command id and seqval) → one update.
 * A deferred update (SQL Server logs some updates, e.g. of a unique key, as a delete and an
 * insert) stays a delete followed by an insert, in that order, which is what it did.
 */
import { type ChangeBatch, type ChangeEvent, keyMaker, type Row, setRowField, type TableSchema } from '@nanosync/core';
import { protocolError } from '../errors.js';
import { boundaryPosition, compareRowPositions, encodePosition, type Lsn, type RowPosition } from '../position.js';

export interface ChangeRow {
  /** Index of the capture instance read (into the assembler's `sources`). */
  source: number;
  position: RowPosition;
  /** Commit time, canonical UTC (`…Z`), when the LSN time mapping had it. */
  commitTime?: string;
  row: Row;
  /** Estimated size, for bounding batches. */
  bytes: number;
}

/** One instance's rows in order, a page at a time; an empty page means no more rows. */
export interface ChangeCursor {
  nextPage(): Promise<ChangeRow[]>;
}

export class ChangeMerger {
  readonly #cursors: ChangeCursor[];
  readonly #pages: ChangeRow[][];
  readonly #offsets: number[];
  readonly #exhausted: boolean[];

  constructor(cursors: ChangeCursor[]) {
    this.#cursors = cursors;
    this.#pages = cursors.map(() => []);
    this.#offsets = cursors.map(() => 0);
    this.#exhausted = cursors.map(() => false);
  }

  /** The next row in commit order, or undefined when every cursor is exhausted. */
  async next(): Promise<ChangeRow | undefined> {
    // Refill every drained cursor at once (parallel connections), so a head is always known.
    const refills: Promise<void>[] = [];
    for (let i = 0; i < this.#cursors.length; i++) {
      if (this.#exhausted[i] || this.#offsets[i]! < this.#pages[i]!.length) continue;
      refills.push(
        this.#cursors[i]!.nextPage().then((page) => {
          this.#pages[i] = page;
          this.#offsets[i] = 0;
          if (page.length === 0) this.#exhausted[i] = true;
        }),
      );
    }
    if (refills.length) await Promise.all(refills);
    let best = -1;
    for (let i = 0; i < this.#cursors.length; i++) {
      const head = this.#pages[i]![this.#offsets[i]!];
      if (!head) continue;
      if (best < 0 || compareRowPositions(head.position, this.#pages[best]![this.#offsets[best]!]!.position) < 0)
        best = i;
    }
    if (best < 0) return undefined;
    const row = this.#pages[best]![this.#offsets[best]!]!;
    this.#offsets[best]!++;
    return row;
  }
}

export interface AssemblerSource {
  /** The table's schema as this capture instance sees it (its captured columns). */
  schema: TableSchema;
  /** Columns whose before-image SQL Server leaves NULL when they did not change (LOBs). */
  lobColumns: ReadonlySet<string>;
}

/** Rows → events, folding update pairs. Feed rows in commit order. */
export class ChangeAssembler {
  readonly #sources: AssemblerSource[];
  #pendingBefore: ChangeRow | undefined;

  constructor(sources: AssemblerSource[]) {
    this.#sources = sources;
  }

  /** The event a row completes, or undefined while an update's before-image waits for its after-image. */
  push(change: ChangeRow): ChangeEvent | undefined {
    const pending = this.#pendingBefore;
    if (pending) {
      this.#pendingBefore = undefined;
      if (change.position.operation !== 4 || !samePair(pending, change))
        throw protocolError(
          `an update before-image (operation 3) at ${encodePosition(pending.position)} is not followed by its after-image`,
        );
      return this.#event('update', change, pending);
    }
    switch (change.position.operation) {
      case 1:
        return this.#event('delete', change);
      case 2:
        return this.#event('insert', change);
      case 3:
        this.#pendingBefore = change;
        return undefined;
      case 4:
        return this.#event('update', change);
      default:
        throw protocolError(`unknown __$operation ${change.position.operation} at ${encodePosition(change.position)}`);
    }
  }

  /** True while a before-image waits: the stream is inside an update pair. */
  get pending(): boolean {
    return this.#pendingBefore !== undefined;
  }

  #event(op: 'insert' | 'update' | 'delete', change: ChangeRow, before?: ChangeRow): ChangeEvent {
    const source = this.#sources[change.source];
    if (!source) throw protocolError(`change row of unknown source ${change.source}`);
    const { schema } = source;
    const key = keyMaker(schema.keyColumns)(change.row);
    const event: ChangeEvent = { op, table: schema, key, position: encodePosition(change.position) };
    if (op === 'delete') event.before = change.row;
    else event.after = change.row;
    if (before) event.before = withoutUnknownLobs(before.row, source.lobColumns);
    if (change.commitTime) event.commitTime = change.commitTime;
    return event;
  }
}

function samePair(before: ChangeRow, after: ChangeRow): boolean {
  return (
    before.source === after.source &&
    before.position.startLsn === after.position.startLsn &&
    before.position.commandId === after.position.commandId &&
    before.position.seqval === after.position.seqval
  );
}

/** A before-image without the LOB columns SQL Server reported as NULL (it does so when they did not change). */
function withoutUnknownLobs(row: Row, lobColumns: ReadonlySet<string>): Row {
  if (lobColumns.size === 0) return row;
  const out: Row = {};
  for (const [name, value] of Object.entries(row)) {
    if (value === null && lobColumns.has(name)) continue;
    setRowField(out, name, value);
  }
  return out;
}

/** Rough size of a row's values, for byte bounds. */
export function estimateRowBytes(row: Row): number {
  let bytes = 16;
  for (const value of Object.values(row)) {
    if (value === null) bytes += 1;
    else if (typeof value === 'string') bytes += value.length * 2;
    else if (value instanceof Uint8Array) bytes += value.byteLength;
    else bytes += 8;
  }
  return bytes;
}

export interface BatchLimits {
  /** A batch is cut once it holds this many events … */
  batchRows: number;
  /** … or this many bytes. */
  batchBytes: number;
  /** The poll stops at the first transaction boundary after this many rows … */
  pollRows: number;
  /** … or bytes. */
  pollBytes: number;
}

export interface BatchingResult {
  /** The poll stopped at its bound with rows still waiting. */
  backlog: boolean;
  /** Start LSN of the last row consumed (the transaction the poll ended in or after). */
  lastLsn: Lsn | undefined;
  /** Events not yet yielded: they end exactly at a transaction boundary. */
  rest: ChangeEvent[];
}

/**
 * Commit-ordered rows → bounded batches. A batch that ends between two transactions carries
 * the first one's end as `safePosition`; a batch cut inside a large transaction carries
 * none, so a checkpoint never lands mid-transaction. The poll ends at the first boundary
 * past its row or byte bound (`backlog`), or when the rows run out; what is left for the
 * caller's last batch is returned.
 */
export async function* commitOrderBatches(
  next: () => Promise<ChangeRow | undefined>,
  assembler: ChangeAssembler,
  limits: BatchLimits,
  signal?: AbortSignal,
): AsyncGenerator<ChangeBatch, BatchingResult> {
  let batch: ChangeEvent[] = [];
  let bytes = 0;
  let polledRows = 0;
  let polledBytes = 0;
  let lastLsn: Lsn | undefined;
  const take = (): ChangeEvent[] => {
    const out = batch;
    batch = [];
    bytes = 0;
    return out;
  };
  const full = () => batch.length >= limits.batchRows || bytes >= limits.batchBytes;
  for (;;) {
    signal?.throwIfAborted();
    const change = await next();
    if (!change) break;
    if (lastLsn !== undefined && change.position.startLsn !== lastLsn) {
      // Between two transactions: the only place a poll may stop or a batch carry a safe position.
      if (polledRows >= limits.pollRows || polledBytes >= limits.pollBytes)
        return { backlog: true, lastLsn, rest: take() };
      if (full()) yield { events: take(), safePosition: boundaryPosition(lastLsn) };
    } else if (full() && !assembler.pending) {
      yield { events: take() };
    }
    const event = assembler.push(change);
    lastLsn = change.position.startLsn;
    polledRows++;
    polledBytes += change.bytes;
    if (event) {
      batch.push(event);
      bytes += change.bytes;
    }
  }
  return { backlog: false, lastLsn, rest: take() };
}
