import type { ChangeBatch, ChangeEvent, Logger, Position, Row, RowMaker, TableSchema, Value } from '@nanosync/core';
import { backoffDelay, keyMaker, rowMaker, sleep } from '@nanosync/core';
import sql from 'mssql';
import { type CaptureInstance, type MssqlTable, readCaptureInstances, readColumns, toTableSchema } from '../catalog.js';
import type { SqlServerSourceConfig } from '../config.js';
import { cdcNotEnabledOnTable, changesLost, isTransientMssqlError, tableLabel, valueError } from '../errors.js';
import {
  boundaryPosition,
  compareLsn,
  decodePosition,
  encodePosition,
  formatLsn,
  incrementLsn,
  isBoundary,
  type Lsn,
  lsnFromBytes,
  lsnToBytes,
  maxLsn,
  type RowPosition,
  ZERO_LSN,
} from '../position.js';
import { canonicalTimestampUtc } from '../types/temporal.js';
import { convertValue, type MssqlColumn } from '../types/mapping.js';
import {
  CHANGE_META_COLUMNS,
  changePageSql,
  MAX_LSN_SQL,
  MAX_TRANSACTION_LSN_SQL,
  maxLsnPerInstanceSql,
} from './change-query.js';
import { type InstanceRead, planInstanceReads, type RetentionGap } from './instances.js';
import {
  type AssemblerSource,
  type BatchingResult,
  ChangeAssembler,
  type ChangeCursor,
  ChangeMerger,
  type ChangeRow,
  commitOrderBatches,
  estimateRowBytes,
} from './merge.js';
import { nextPollDelay, type PollOutcome } from './poll-delay.js';

export interface StreamOptions {
  pool: sql.ConnectionPool;
  pipeline: string;
  tables: MssqlTable[];
  config: SqlServerSourceConfig;
  from: Position;
  signal: AbortSignal;
  logger: Logger;
  /** A fresh read of the whole table (re-snapshot after a retention gap). */
  readWholeTable(table: MssqlTable, signal: AbortSignal): AsyncIterable<Row[]>;
  /** Called with the capture job's max LSN after each poll (metrics). */
  onHead?(lsn: Lsn): void;
}

const LOB_TYPES = new Set(['text', 'ntext', 'image', 'xml']);

function isLob(c: MssqlColumn): boolean {
  return LOB_TYPES.has(c.typeName) || (['varchar', 'nvarchar', 'varbinary'].includes(c.typeName) && c.maxLength === -1);
}

interface InstanceShape {
  columns: MssqlColumn[];
  schema: TableSchema;
  lobColumns: Set<string>;
}

/**
 * The change stream: polls the capture instances of the pipeline's tables and yields
 * commit-ordered batches (see `merge.ts`), each ending at a transaction boundary with a
 * `safePosition` unless a huge transaction is being streamed in parts. Transient failures
 * are retried inside with backoff, resuming right after the last event yielded.
 */
export async function* streamChanges(o: StreamOptions): AsyncGenerator<ChangeBatch> {
  const { config, logger, signal } = o;
  const start = decodePosition(o.from);
  const state: StreamState = {
    position: start,
    boundary: isBoundary(o.from),
    shapes: new Map(),
    reported: new Set(),
    resnapshotSeq: 0n,
  };
  let delay = 0;
  let failures = 0;
  while (!signal.aborted) {
    let outcome: PollOutcome;
    try {
      outcome = yield* poll(o, state);
      failures = 0;
    } catch (err) {
      if (signal.aborted) return;
      if (!isTransientMssqlError(err)) throw err;
      failures++;
      const wait = backoffDelay(failures, { baseDelayMs: 250, maxDelayMs: 30_000 });
      logger.warn('change poll failed; retrying', { error: (err as Error).message, retry: failures, waitMs: wait });
      await sleep(wait, signal);
      continue;
    }
    delay = nextPollDelay(delay, outcome, config.pollIntervalMs);
    if (delay > 0) await sleep(delay, signal);
  }
}

interface StreamState {
  /** Everything up to this row (or, with `boundary`, this whole transaction) has been yielded. */
  position: RowPosition;
  boundary: boolean;
  shapes: Map<string, InstanceShape>;
  /** One-time log lines already written (instance switches, uncaptured columns). */
  reported: Set<string>;
  resnapshotSeq: bigint;
}

async function readLsn(pool: sql.ConnectionPool, text: string): Promise<{ lsn: Lsn | null; offset: number }> {
  const result = await pool.request().query<{ max_lsn: Buffer | null; utc_offset_minutes?: number }>(text);
  const row = result.recordset[0];
  return { lsn: row?.max_lsn ? lsnFromBytes(row.max_lsn) : null, offset: row?.utc_offset_minutes ?? 0 };
}

async function* poll(o: StreamOptions, state: StreamState): AsyncGenerator<ChangeBatch, PollOutcome> {
  const { pool, config, logger } = o;
  // Order matters: the capture job's max first, then the last real transaction (see change-query.ts).
  const head = (await readLsn(pool, MAX_LSN_SQL)).lsn ?? ZERO_LSN;
  const realMax = await readLsn(pool, MAX_TRANSACTION_LSN_SQL);
  const hi = realMax.lsn ?? ZERO_LSN;
  o.onHead?.(head);
  const at = state.position.startLsn;
  const nothingNew = compareLsn(hi, at) < 0 || (compareLsn(hi, at) === 0 && state.boundary);
  if (nothingNew) {
    if (state.boundary && compareLsn(head, at) > 0) {
      // Keepalive: nothing captured changed up to the job's max LSN; let the checkpoint follow.
      state.position = boundaryRow(head);
      yield { events: [], safePosition: boundaryPosition(head) };
    }
    return { changes: 0, backlog: false };
  }

  const instances = await readCaptureInstances(pool);
  const reads: { read: InstanceRead; table: MssqlTable }[] = [];
  const gaps: { table: MssqlTable; gap: RetentionGap }[] = [];
  for (const table of o.tables) {
    const own = instances.filter((i) => i.sourceObjectId === table.objectId);
    if (own.length === 0) throw cdcNotEnabledOnTable(table);
    const plan = planInstanceReads(own, at, state.boundary, hi);
    for (const old of plan.superseded)
      reportOnce(state, `superseded:${old.name}`, () =>
        logger.info('capture instance no longer read: the stream is past its successor’s start; the DBA may drop it', {
          table: tableLabel(table),
          captureInstance: old.name,
        }),
      );
    if (plan.gap) gaps.push({ table, gap: plan.gap });
    for (const read of plan.reads) {
      if (!read.fromPosition && compareLsn(read.afterLsn, at) > 0)
        reportOnce(state, `switch:${read.instance.name}`, () =>
          logger.info('following a new capture instance from its start LSN', {
            table: tableLabel(table),
            captureInstance: read.instance.name,
            startLsn: formatLsn(read.afterLsn),
          }),
        );
      reads.push({ read, table });
    }
  }
  const resnapshotTables: MssqlTable[] = [];
  for (const { table, gap } of gaps) {
    const detail = {
      instance: gap.instance.name,
      lostAfter: formatLsn(gap.lostAfter),
      lostBefore: formatLsn(gap.lostBefore),
    };
    if (config.onRetentionGap !== 'resnapshot') throw changesLost(table, detail, o.pipeline);
    logger.warn('change rows were removed by the CDC cleanup job before they were read; re-snapshotting the table', {
      table: tableLabel(table),
      captureInstance: gap.instance.name,
      lostAfter: detail.lostAfter,
      lostBefore: detail.lostBefore,
    });
    resnapshotTables.push(table);
  }

  // Skip instances whose change table has nothing after the position: one statement for all.
  const active = await withoutIdle(pool, reads, at);
  const sources: AssemblerSource[] = [];
  const cursors: ChangeCursor[] = [];
  const pageRows = Math.max(50, Math.floor(config.maxPollRows / Math.max(1, active.length)));
  for (const { read, table } of active) {
    const shape = await instanceShape(o, state, table, read.instance);
    sources.push({ schema: shape.schema, lobColumns: shape.lobColumns });
    cursors.push(
      new InstanceCursor(
        pool,
        config,
        sources.length - 1,
        table,
        read,
        shape.columns,
        state.position,
        pageRows,
        realMax.offset,
      ),
    );
  }

  let delivered = 0;
  for (const table of resnapshotTables) delivered += yield* resnapshot(o, state, table);

  const merger = new ChangeMerger(cursors);
  const limits = {
    batchRows: Math.min(1000, config.maxPollRows),
    batchBytes: Math.min(4 * 1024 * 1024, config.maxPollBytes),
    pollRows: config.maxPollRows,
    pollBytes: config.maxPollBytes,
  };
  const track = (batch: ChangeBatch): ChangeBatch => {
    if (batch.safePosition !== undefined) {
      state.position = decodePosition(batch.safePosition);
      state.boundary = true;
    } else if (batch.events.length > 0) {
      state.position = decodePosition(batch.events.at(-1)!.position);
      state.boundary = false;
    }
    delivered += batch.events.length;
    return batch;
  };
  const batches = commitOrderBatches(() => merger.next(), new ChangeAssembler(sources), limits, o.signal);
  let result: BatchingResult;
  for (;;) {
    const step = await batches.next();
    if (step.done) {
      result = step.value;
      break;
    }
    yield track(step.value);
  }
  const backlog = result.backlog;
  const end = backlog ? result.lastLsn! : maxLsn(hi, head);
  if (result.rest.length > 0 || !state.boundary || compareLsn(end, state.position.startLsn) > 0)
    yield track({ events: result.rest, safePosition: boundaryPosition(end) });
  return { changes: delivered, backlog };
}

function boundaryRow(lsn: Lsn): RowPosition {
  return decodePosition(boundaryPosition(lsn));
}

function reportOnce(state: StreamState, key: string, report: () => void): void {
  if (state.reported.has(key)) return;
  state.reported.add(key);
  report();
}

async function withoutIdle(
  pool: sql.ConnectionPool,
  reads: { read: InstanceRead; table: MssqlTable }[],
  at: Lsn,
): Promise<{ read: InstanceRead; table: MssqlTable }[]> {
  if (reads.length === 0) return reads;
  const request = pool.request();
  for (const [n, { read }] of reads.entries()) request.input(`i${n}`, sql.NVarChar(128), read.instance.name);
  const result = await request.query<{ capture_instance: string; max_lsn: Buffer | null }>(
    maxLsnPerInstanceSql(
      reads.map(({ read }) => ({ instance: read.instance.name, changeTable: read.instance.changeTable })),
    ),
  );
  const max = new Map(result.recordset.map((r) => [r.capture_instance, r.max_lsn ? lsnFromBytes(r.max_lsn) : null]));
  return reads.filter(({ read }) => {
    const m = max.get(read.instance.name);
    if (!m) return false;
    const needed = read.fromPosition ? at : incrementLsn(read.afterLsn);
    return compareLsn(m, needed) >= 0;
  });
}

async function instanceShape(
  o: StreamOptions,
  state: StreamState,
  table: MssqlTable,
  instance: CaptureInstance,
): Promise<InstanceShape> {
  const cacheKey = `${instance.name}:${instance.changeTableObjectId}`;
  const cached = state.shapes.get(cacheKey);
  if (cached) return cached;
  const computed = new Set(table.computedColumns);
  const captured = (await readColumns(o.pool, instance.changeTableObjectId)).filter((c) => !computed.has(c.name));
  // Types and collations as the source table declares them, for columns it still has.
  const current = new Map(table.columns.map((c) => [c.name, c]));
  const columns = captured.map((c) => current.get(c.name) ?? c);
  const missing = table.columns.filter((c) => !captured.some((k) => k.name === c.name)).map((c) => c.name);
  if (missing.length > 0)
    reportOnce(state, `uncaptured:${cacheKey}`, () =>
      o.logger.warn(
        'columns of the table are not in its capture instance and are not streamed; create a new capture instance to capture them (EXEC sys.sp_cdc_enable_table with a new @capture_instance), then drop the old one once the pipeline follows the new one',
        { table: tableLabel(table), captureInstance: instance.name, columns: missing.join(', ') },
      ),
    );
  const shape: InstanceShape = {
    columns,
    schema: toTableSchema(table, columns, o.config.timePrecision),
    lobColumns: new Set(columns.filter(isLob).map((c) => c.name)),
  };
  state.shapes.set(cacheKey, shape);
  return shape;
}

/**
 * Re-read a table whose change rows were partly removed: a `truncate` event, then its
 * current rows as `read` events, placed right after the stream position. None of these
 * batches carries a safe position, so a crash halfway repeats the whole re-snapshot.
 */
async function* resnapshot(
  o: StreamOptions,
  state: StreamState,
  table: MssqlTable,
): AsyncGenerator<ChangeBatch, number> {
  const schema = toTableSchema(table, table.columns, o.config.timePrecision);
  const lsn = state.boundary ? incrementLsn(state.position.startLsn) : state.position.startLsn;
  const nextPosition = () => {
    state.resnapshotSeq++;
    return encodePosition({
      startLsn: lsn,
      commandId: 0,
      seqval: state.resnapshotSeq.toString(16).toUpperCase().padStart(20, '0'),
      operation: 0,
    });
  };
  let count = 1;
  yield {
    events: [
      {
        op: 'truncate',
        table: schema,
        key: {},
        position: nextPosition(),
        truncate: { cascade: false, restartIdentity: false },
      },
    ],
  };
  for await (const rows of o.readWholeTable(table, o.signal)) {
    const keyOf = keyMaker(table.keyColumns);
    const events: ChangeEvent[] = rows.map((row) => ({
      op: 'read',
      table: schema,
      key: keyOf(row),
      after: row,
      position: nextPosition(),
    }));
    count += events.length;
    yield { events };
  }
  return count;
}

/** One capture instance's change rows, a page at a time, strictly after the last row read. */
class InstanceCursor implements ChangeCursor {
  #after: RowPosition;
  /** The maker of this capture instance's rows and the array of values it reads (made on the first row). */
  #rowMaker: { make: RowMaker; values: Value[] } | undefined;
  #afterTuple: boolean;
  #done = false;
  readonly #sql: { tuple: string; lsn: string };

  constructor(
    private readonly pool: sql.ConnectionPool,
    private readonly config: SqlServerSourceConfig,
    private readonly source: number,
    private readonly table: MssqlTable,
    private readonly read: InstanceRead,
    private readonly columns: MssqlColumn[],
    position: RowPosition,
    private readonly pageRows: number,
    private readonly utcOffsetMinutes: number,
  ) {
    this.#after = read.fromPosition ? position : boundaryRow(read.afterLsn);
    this.#afterTuple = read.fromPosition;
    const base = {
      instance: read.instance.name,
      changeTable: read.instance.changeTable,
      columns,
      beforeImages: config.beforeImages,
      path: config.changeReadPath,
    };
    this.#sql = {
      tuple: changePageSql({ ...base, afterTuple: true }),
      lsn: changePageSql({ ...base, afterTuple: false }),
    };
  }

  async nextPage(): Promise<ChangeRow[]> {
    if (this.#done) return [];
    const request = this.pool.request();
    request.arrayRowMode = true;
    request.input('limit', sql.Int, this.pageRows);
    request.input('from', sql.Binary, lsnToBytes(this.read.functionFromLsn));
    request.input('to', sql.Binary, lsnToBytes(this.read.toLsn));
    request.input('after_lsn', sql.Binary, lsnToBytes(this.#after.startLsn));
    if (this.#afterTuple) {
      request.input('after_cmd', sql.Int, this.#after.commandId);
      request.input('after_seq', sql.Binary, lsnToBytes(this.#after.seqval));
      request.input('after_op', sql.Int, this.#after.operation);
    }
    const result = await request.query(this.#afterTuple ? this.#sql.tuple : this.#sql.lsn);
    const raw = result.recordset as unknown as unknown[][];
    const page = raw.map((r) => this.#convert(r));
    if (raw.length < this.pageRows) this.#done = true;
    const last = page.at(-1);
    if (last) {
      this.#after = last.position;
      this.#afterTuple = true;
    }
    return page;
  }

  #convert(r: unknown[]): ChangeRow {
    const position: RowPosition = {
      startLsn: lsnFromBytes(r[0] as Buffer),
      commandId: Number(r[1]),
      seqval: lsnFromBytes(r[2] as Buffer),
      operation: Number(r[3]),
    };
    this.#rowMaker ??= {
      make: rowMaker(this.columns.map((c) => c.name)),
      values: new Array<Value>(this.columns.length),
    };
    const { make, values } = this.#rowMaker;
    for (let i = 0; i < this.columns.length; i++) {
      const column = this.columns[i]!;
      try {
        values[i] = convertValue(column, r[CHANGE_META_COLUMNS + i], this.config.timePrecision);
      } catch (err) {
        throw valueError(err, {
          table: `${this.table.schema}.${this.table.name}`,
          column: column.name,
          key: `at ${formatLsn(position.startLsn)} (capture instance ${this.read.instance.name})`,
        });
      }
    }
    const row = make(values);
    const change: ChangeRow = { source: this.source, position, row, bytes: estimateRowBytes(row) };
    const commit = r[4];
    if (typeof commit === 'string') change.commitTime = commitTimeUtc(commit, this.utcOffsetMinutes);
    return change;
  }
}

/** `cdc.lsn_time_mapping` times are the server's local time: shift by its UTC offset. */
export function commitTimeUtc(localText: string, offsetMinutes: number): string {
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return canonicalTimestampUtc(`${localText} ${offset}`, 6);
}
