import { type Logger, type PartitionChunk, sleep } from '@nanosync/core';
import type pg from 'pg';
import type { PgColumn } from '../describe.js';
import { quoteIdent, quoteLiteral, quoteTable } from '../errors.js';
import { CopyOutBytes, CopyOutQuery, parseCopyTextRow } from './copy-out.js';
import type { CtidBounds } from './ctid-partitions.js';
import { rowDecoder } from './read-partition.js';
import {
  hiddenCommits,
  parseSnapshotView,
  type RecentCommits,
  SNAPSHOT_VIEW_SQL,
  type SnapshotView,
} from './visibility.js';

/**
 * Where the next chunk of a CTID partition starts (`ctid >= (page,offset)`), and what the
 * chunks so far taught about the table: how many pages one chunk should scan and how wide a
 * row is. Core records it with each chunk (the chunk's end is the next one's start), so a
 * partition interrupted by a restart resumes after its last recorded chunk, and a chunk read
 * again is read over the same ctid range (`upTo`).
 */
export interface CtidChunkCursor {
  page: number;
  offset: number;
  /** Pages the next read scans (at most), sized so the read holds about one chunk of rows. */
  span: number;
  /** Average size of a row as read (COPY text), once known. */
  rowBytes?: number;
}

/** Rows per heap page assumed before the first chunk measured it (narrow rows fit ~100, wide ones ~20). */
const ROWS_PER_PAGE_GUESS = 60;
const MAX_SPAN = 1 << 22;

export interface ReadCtidChunkOptions {
  client: pg.Client;
  table: { schema: string; name: string };
  /** Read the leaf `table` through this partitioned table (a role that may not read the leaf directly). */
  through?: { schema: string; name: string };
  columns: PgColumn[];
  keyColumns: string[];
  bounds: CtidBounds;
  after: CtidChunkCursor | undefined;
  maxRows: number;
  maxBytes: number;
  /**
   * Read a recorded chunk again: every row from `after` up to this cursor (undefined: the
   * partition's end), without the row and byte bounds; the chunk's `next` is this cursor.
   */
  upTo?: { next: CtidChunkCursor | undefined };
  /** Opens the chunk's read-only transaction (blocking mode: one importing the exported snapshot). */
  begin?: (client: pg.Client) => Promise<void>;
  signal: AbortSignal;
  /** Transactions this source's stream decoded (see visibility.ts); without it only the clog is asked. */
  commits?: RecentCommits;
  /** Says when a read waits for commits that are not visible yet. */
  logger?: Logger;
}

export function isChunkCursor(value: unknown): value is CtidChunkCursor {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Record<string, unknown>;
  const int = (v: unknown, max: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
  return int(c.page, 0xffffffff) && int(c.offset, 0xffff) && int(c.span, MAX_SPAN) && (c.span as number) > 0;
}

/** `(12,3)` → [12, 3]. */
function parseTid(text: string | null): [number, number] {
  const m = text === null ? null : /^\((\d+),(\d+)\)$/.exec(text);
  if (m === null) throw new Error(`unexpected ctid ${JSON.stringify(text)} in a snapshot chunk`);
  return [Number(m[1]), Number(m[2])];
}

/**
 * One bounded chunk of a CTID partition, in one statement (its own snapshot, taken now:
 * after the chunk's low watermark): the rows from the cursor on in ctid order, at most
 * `maxRows` of them and stopping at `maxBytes` (COPY text bytes; at least one row). The scan
 * covers at most `span` pages (a TID range scan, sorted by ctid, with a LIMIT), so a chunk
 * never scans or sorts more than about a chunk's worth of the table, however large the
 * partition: the open-ended last partition (read up to the table's end as it is when the
 * chunk is read) and partitions planned larger by an earlier version alike. Rows the LIMIT
 * let through beyond the byte bound are read and dropped, and the next chunk starts right
 * after the last row kept. On error or abort the client is left mid-protocol
 * (`state.clientReusable` stays false).
 */
export async function readCtidChunk(
  opts: ReadCtidChunkOptions,
  state: { clientReusable: boolean },
): Promise<PartitionChunk> {
  return readCtidRows(
    { ...opts, columnNames: opts.columns.map((c) => c.name) },
    rowDecoder(opts),
    state,
  ) as Promise<PartitionChunk>;
}

/**
 * Rows of one bounded chunk as they accumulate (the only buffer of a chunk read): at most
 * `maxRows` rows, and it stops taking rows once `maxBytes` (COPY text bytes) is reached, so
 * it holds at most `maxBytes` plus one row (at least one row, however wide). Rows past the
 * bound are counted (`returned`) and dropped.
 */
export class ChunkBuffer<T> {
  readonly rows: T[] = [];
  bytes = 0;
  /** Rows offered, kept or not. */
  returned = 0;
  full = false;
  readonly #maxRows: number;
  readonly #maxBytes: number;

  constructor(maxRows: number, maxBytes: number) {
    this.#maxRows = Math.max(1, Math.floor(maxRows));
    this.#maxBytes = Math.max(1, Math.floor(maxBytes));
  }

  /** Offer a row of `bytes` bytes; `make` is called only when it is kept. Whether it was kept. */
  offer(bytes: number, make: () => T): boolean {
    this.returned++;
    if (this.full) return false;
    this.rows.push(make());
    this.bytes += bytes;
    if (this.rows.length >= this.#maxRows || this.bytes >= this.#maxBytes) this.full = true;
    return true;
  }
}

/** How long a read waits for hidden commits before it says so as a warning. */
const HIDDEN_COMMITS_WARN_MS = 10_000;

/**
 * Opens the chunk's transaction, REPEATABLE READ so that every statement of the read uses
 * the snapshot its first statement takes, once that snapshot hides no transaction the stream
 * may already have carried (see visibility.ts): otherwise it rolls back and takes a new one
 * after a short wait. One round trip per attempt. With `wantPages`, returns the table's size in
 * pages now when the partition is open-ended (`bounds.endPage` null).
 */
async function beginChunkRead(
  opts: Pick<ReadCtidChunkOptions, 'client' | 'table' | 'bounds' | 'signal' | 'commits' | 'logger'>,
  wantPages: boolean,
): Promise<number | undefined> {
  const { client, commits, signal } = opts;
  const pagesSql =
    wantPages && opts.bounds.endPage === null
      ? `; SELECT (pg_catalog.pg_relation_size(${quoteLiteral(quoteTable(opts.table))}::regclass) / current_setting('block_size')::int8)::text AS pages`
      : '';
  const sql = `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 0; ${SNAPSHOT_VIEW_SQL}${pagesSql}`;
  const started = Date.now();
  let warned = false;
  for (let wait = 1; ; wait = Math.min(100, wait * 2)) {
    commits?.beginCheck();
    let view: SnapshotView | undefined;
    let hidden: number[];
    let pages: number | undefined;
    try {
      const results = (await client.query(sql)) as unknown as pg.QueryResult[];
      view = parseSnapshotView(results[2]?.rows[0] ?? {});
      if (pagesSql !== '') pages = Number(results[3]?.rows[0]?.pages ?? 0);
      hidden = hiddenCommits(view, commits);
    } finally {
      commits?.endCheck(view);
    }
    if (hidden.length === 0) return pages;
    await client.query('ROLLBACK');
    const waited = Date.now() - started;
    const fields = {
      table: `${opts.table.schema}.${opts.table.name}`,
      transactions: hidden.join(', '),
      waitedMs: waited,
    };
    if (wait === 1)
      opts.logger?.debug(
        'snapshot chunk: transactions committed in the WAL are not visible yet; taking a new snapshot',
        fields,
      );
    if (!warned && waited >= HIDDEN_COMMITS_WARN_MS) {
      warned = true;
      opts.logger?.warn(
        'snapshot chunk still waits for transactions whose commits are in the WAL but not visible to other sessions (a commit waiting for a synchronous standby? see synchronous_standby_names)',
        fields,
      );
    }
    await sleep(wait, signal);
    signal.throwIfAborted();
  }
}

/**
 * {@link readCtidChunk} with the decoding left to the caller: `decode` turns a row's fields
 * (the server's text form of `columnNames`, null for NULL) into what the chunk holds. The
 * change stream reads the rows of a partition attached while streaming with it, decoding
 * them as it decodes pgoutput.
 */
export async function readCtidRows<T>(
  opts: Omit<ReadCtidChunkOptions, 'columns' | 'keyColumns'> & { columnNames: string[] },
  decode: (fields: (string | null)[]) => T,
  state: { clientReusable: boolean },
): Promise<{ rows: T[]; bytes: number; next: CtidChunkCursor | undefined }> {
  let buffer: ChunkBuffer<T> | undefined;
  const width = opts.columnNames.length + 1;
  const { bytes, next } = await readCtidRange(
    opts,
    async (select, maxRows, maxBytes) => {
      const kept = new ChunkBuffer<T>(maxRows, maxBytes);
      buffer = kept;
      const last = await copyChunkRows(opts.client, select, width, kept, decode, opts.signal);
      return { rows: kept.rows.length, bytes: kept.bytes, returned: kept.returned, last };
    },
    state,
  );
  return { rows: buffer?.rows ?? [], bytes, next };
}

/**
 * {@link readCtidChunk} without decoding, for a worker thread to decode: the same rows, bounds
 * and `next`, as the COPY text lines of `SELECT ctid, <columns>` in one buffer of its own
 * (see `raw-rows.ts` for their decoding). The main thread touches no field of them but the
 * last row's ctid.
 */
export async function readCtidRaw(
  opts: Omit<ReadCtidChunkOptions, 'columns' | 'keyColumns'> & { columnNames: string[] },
  state: { clientReusable: boolean },
): Promise<{ raw: ArrayBuffer; rows: number; bytes: number; next: CtidChunkCursor | undefined }> {
  let copy: CopyOutBytes | undefined;
  const { bytes, next } = await readCtidRange(
    opts,
    async (select, maxRows, maxBytes) => {
      const lines = new CopyOutBytes(`COPY (${select}) TO STDOUT`, maxRows, maxBytes);
      copy = lines;
      opts.signal.throwIfAborted();
      opts.client.query(lines as unknown as pg.QueryConfig);
      await lines.done;
      opts.signal.throwIfAborted();
      const line = lines.lastLine();
      const last = line === undefined ? undefined : parseTid(line.toString('latin1', 0, line.indexOf(9)));
      return { rows: lines.rows, bytes: lines.bytes, returned: lines.returned, last };
    },
    state,
  );
  return { raw: copy?.take() ?? new ArrayBuffer(0), rows: copy?.rows ?? 0, bytes, next };
}

/** What one COPY of a chunk kept: rows and their bytes, rows received (kept or not), the last kept row's ctid. */
interface Collected {
  rows: number;
  bytes: number;
  returned: number;
  last: [number, number] | undefined;
}

/**
 * The range logic of a chunk read: which ctids to read, in which transaction, and where the
 * next chunk starts. `collect` runs the chunk's SELECT as COPY, keeping at most `maxRows` rows
 * and none after the row that reached `maxBytes`, and keeps the rows itself.
 */
async function readCtidRange(
  opts: Omit<ReadCtidChunkOptions, 'columns' | 'keyColumns'> & { columnNames: string[] },
  collect: (select: string, maxRows: number, maxBytes: number) => Promise<Collected>,
  state: { clientReusable: boolean },
): Promise<{ bytes: number; next: CtidChunkCursor | undefined }> {
  const { client, bounds } = opts;
  state.clientReusable = false;
  const maxRows = Math.max(1, Math.floor(opts.maxRows));
  const maxBytes = Math.max(1, Math.floor(opts.maxBytes));
  const cursor: CtidChunkCursor = opts.after ?? {
    page: bounds.startPage,
    offset: 0,
    span: Math.min(MAX_SPAN, Math.max(1, Math.ceil(maxRows / ROWS_PER_PAGE_GUESS))),
  };
  // A concurrent chunk checks its own snapshot (see visibility.ts); an imported one (blocking mode) is the slot's.
  const tableEnd = opts.begin === undefined ? await beginChunkRead(opts, opts.upTo === undefined) : undefined;
  if (opts.begin !== undefined) {
    await opts.begin(client);
    await client.query('SET LOCAL statement_timeout = 0');
  }
  if (opts.upTo !== undefined) {
    const until = opts.upTo.next;
    const range = [`ctid >= '(${cursor.page},${cursor.offset})'::tid`];
    if (until !== undefined) range.push(`ctid < '(${until.page},${until.offset})'::tid`);
    else if (bounds.endPage !== null) range.push(`ctid < '(${bounds.endPage},0)'::tid`);
    const all = await collect(chunkSelect(opts, range, undefined), Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    await client.query('COMMIT');
    state.clientReusable = true;
    return { bytes: all.bytes, next: until };
  }
  let stop = bounds.endPage ?? tableEnd ?? null;
  if (stop === null) {
    // The open-ended last partition ends where the table ends now.
    const { rows } = await client.query<{ pages: string }>(
      `SELECT (pg_catalog.pg_relation_size($1::regclass) / current_setting('block_size')::int8)::text AS pages`,
      [quoteTable(opts.table)],
    );
    stop = Number(rows[0]?.pages ?? 0);
  }
  if (cursor.page >= stop) {
    await client.query('COMMIT');
    state.clientReusable = true;
    return { bytes: 0, next: undefined };
  }
  const scanEnd = Math.min(cursor.page + cursor.span, stop);
  // The last stretch of an open-ended partition has no upper bound: pages added since the size was read are included.
  const toTableEnd = bounds.endPage === null && scanEnd >= stop;
  const targetRows =
    cursor.rowBytes === undefined ? maxRows : Math.max(1, Math.min(maxRows, Math.ceil(maxBytes / cursor.rowBytes)));
  const limit = cursor.rowBytes === undefined ? maxRows : Math.min(maxRows, targetRows + 1);

  const where = [`ctid >= '(${cursor.page},${cursor.offset})'::tid`];
  if (!toTableEnd) where.push(`ctid < '(${scanEnd},0)'::tid`);
  const { rows, bytes, returned, last } = await collect(chunkSelect(opts, where, limit), maxRows, maxBytes);
  await client.query('COMMIT');
  state.clientReusable = true;

  const rowBytes = rows > 0 ? Math.max(1, Math.ceil(bytes / rows)) : cursor.rowBytes;
  const wanted = rowBytes === undefined ? maxRows : Math.max(1, Math.min(maxRows, Math.floor(maxBytes / rowBytes)));
  const more = last !== undefined && (returned > rows || returned >= limit);
  let next: CtidChunkCursor | undefined;
  if (more) {
    // Stopped inside the scanned range: go on right after the last row kept, scanning fewer pages.
    const [page, offset] = last!;
    const covered = Math.max(1, page - cursor.page + 1);
    const span = Math.max(1, Math.min(cursor.span, Math.ceil((wanted * covered) / Math.max(1, rows))));
    next = { page, offset: offset + 1, span };
  } else if (!toTableEnd && !(bounds.endPage !== null && scanEnd >= bounds.endPage)) {
    // The scanned range is exhausted: the next one starts at its end, sized by the density seen.
    const scanned = scanEnd - cursor.page;
    const span =
      returned === 0
        ? Math.min(MAX_SPAN, cursor.span * 2)
        : Math.max(1, Math.min(MAX_SPAN, cursor.span * 4, Math.ceil((wanted * scanned) / returned)));
    next = { page: scanEnd, offset: 0, span };
  }
  if (next !== undefined && rowBytes !== undefined) next.rowBytes = rowBytes;
  return { bytes, next };
}

/** `SELECT ctid, <columns>` of the chunk's table (through its partitioned table when asked) over `where`, in ctid order. */
function chunkSelect(
  opts: { table: { schema: string; name: string }; through?: { schema: string; name: string }; columnNames: string[] },
  where: string[],
  limit: number | undefined,
): string {
  const list = ['ctid', ...opts.columnNames.map((name) => quoteIdent(name))].join(', ');
  let from = quoteTable(opts.table);
  const conditions = [...where];
  if (opts.through !== undefined) {
    from = quoteTable(opts.through);
    conditions.unshift(`tableoid = '${quoteTable(opts.table).replace(/'/g, "''")}'::regclass`);
  }
  return `SELECT ${list} FROM ${from} WHERE ${conditions.join(' AND ')} ORDER BY ctid${limit === undefined ? '' : ` LIMIT ${limit}`}`;
}

/** Runs `select` as COPY into `buffer`; returns the ctid of the last row kept. */
async function copyChunkRows<T>(
  client: pg.Client,
  select: string,
  width: number,
  buffer: ChunkBuffer<T>,
  decode: (fields: (string | null)[]) => T,
  signal: AbortSignal,
): Promise<[number, number] | undefined> {
  // The ctid (the first column) matters for the last row kept only: kept as text, parsed at the end.
  let last: string | null | undefined;
  const copy = new CopyOutQuery(`COPY (${select}) TO STDOUT`, 1024);
  client.query(copy as unknown as pg.QueryConfig);
  const make = (line: string): T => {
    const tab = line.indexOf('\t');
    if (tab < 0) {
      const fields = parseCopyTextRow(line, width);
      last = fields[0] ?? null;
      return decode(fields.slice(1));
    }
    last = line.slice(0, tab);
    return decode(parseCopyTextRow(line.slice(tab + 1), width - 1));
  };
  for (;;) {
    signal.throwIfAborted();
    const lines = await copy.next(512);
    if (lines.length === 0) break;
    for (const line of lines) buffer.offer(Buffer.byteLength(line), () => make(line));
  }
  await copy.done;
  return last === undefined ? undefined : parseTid(last);
}
