import { createHash, randomUUID } from 'node:crypto';
import {
  type ChangeEvent,
  type CheckResult,
  type ConnectorContext,
  ErrorCode,
  type Logger,
  NanosyncError,
  type Row,
  type Sink,
  type TableSchema,
  backoffDelay,
  qualifiedName,
} from '@nanosync/core';
import { checkBigQuery } from './check.js';
import { GoogleBigQuery } from './client/google.js';
import type { BigQueryPort } from './client/port.js';
import type { BigQuerySinkConfig } from './config.js';
import { bigQueryFailure, classifyBigQueryError, BigQueryErrorCode } from './errors.js';
import { foldEvents } from './merge/fold.js';
import {
  STAGING_FIELDS,
  STAGING_OP_DELETE,
  STAGING_OP_UPSERT,
  createStagingTableSql,
  mergeSql,
  stagingTableName,
  stagingTargetFor,
  unchangedTag,
} from './merge/merge-sql.js';
import { checkTableNames, columnNamesFor, quoteIdentifier, quoteTablePath, tableNameFor } from './naming.js';
import {
  CHANGELOG_FIELDS,
  type TargetTable,
  createTableSql,
  intervalLiteral,
  planSchemaChange,
  targetTableFor,
} from './schema/target-table.js';
import type { BigQueryField } from './schema/types.js';
import { type EncodedRow, RowTooLarge, framedSize, splitIntoRequests } from './write/batching.js';
import { keyFromResult, keySelectSql } from './write/key-projection.js';
import {
  CHANGE_SEQUENCE_NUMBER,
  CHANGE_TYPE,
  type RowLayout,
  RowRejected,
  encodeRow,
  rowLayoutFor,
} from './write/proto-rows.js';
import { SequenceNumbers } from './write/sequence.js';
import { keyChanged, keyOf, keyText, resolveUnchanged } from './write/unchanged.js';
import { type ProtoValue, int64Words, timestampMicros } from './write/values.js';

/** How a table is written. */
export type TableMethod = 'cdc' | 'merge' | 'changelog';

const CDC_EXTRAS: BigQueryField[] = [
  { name: CHANGE_TYPE, type: 'STRING', mode: 'NULLABLE' },
  { name: CHANGE_SEQUENCE_NUMBER, type: 'STRING', mode: 'NULLABLE' },
];
const CHANGELOG_EXTRAS: BigQueryField[] = [{ name: CHANGE_TYPE, type: 'STRING', mode: 'NULLABLE' }];
/** Room in each AppendRows request for the writer schema and the envelope. */
const REQUEST_RESERVE_BYTES = 64 * 1024;
const DAY_MS = 86_400_000;

interface TableState {
  source: TableSchema;
  signature: string;
  tableId: string;
  path: string;
  method: TableMethod;
  target: TargetTable;
  /** Rows of the table itself (cdc, changelog) or of its staging table (merge). */
  layout: RowLayout;
  staging?: { tableId: string; path: string; target: TargetTable };
  merges: number[];
}

/** Where a row came from, to name it in an error. */
interface Origin {
  table: string;
  key: Row;
  position: string;
  /** `invalid_rows: skip` left this row out (logged); it is never sent. */
  skipped?: true;
}

export interface BigQuerySinkOptions {
  /** Test seam: the BigQuery operations (defaults to Google's clients). */
  port?: BigQueryPort;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  now?: () => number;
}

/**
 * The BigQuery sink. `open` creates or evolves one table per source table; `write` applies
 * events in order and resolves only when BigQuery has committed them:
 * - `cdc` tables: UPSERT/DELETE rows on the Storage Write API default stream with a
 *   `_CHANGE_SEQUENCE_NUMBER` derived from the position; resolved when every append is acknowledged;
 * - `merge` tables: the write's changes, folded to one per key, are appended to a staging
 *   table and applied with one MERGE; resolved when the MERGE job has finished;
 * - `changelog` tables (append mode): one row per event, upserted by an event id derived
 *   from table, position and key, so a replay rewrites the same rows instead of adding more.
 * Transient failures are retried inside with backoff; anything else stops with an error that
 * names the table (and column, key and position when one row is at fault).
 */
export class BigQuerySink implements Sink {
  private readonly port: BigQueryPort;
  private readonly logger: Logger;
  private readonly signal: AbortSignal;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  private readonly tables = new Map<string, TableState>();
  private readonly sequences = new SequenceNumbers();
  private opened = false;

  constructor(
    private readonly config: BigQuerySinkConfig,
    context: ConnectorContext,
    options: BigQuerySinkOptions = {},
  ) {
    this.logger = context.logger.child({ sink: 'bigquery' });
    this.signal = context.signal;
    this.port = options.port ?? new GoogleBigQuery(config);
    this.sleep = options.sleep ?? abortableSleep;
    this.now = options.now ?? Date.now;
  }

  async open(tables: TableSchema[]): Promise<void> {
    checkTableNames(tables, this.config);
    for (const table of tables) await this.prepare(table);
    this.opened = true;
    this.logger.info('bigquery sink open', {
      project: this.config.projectId,
      dataset: this.config.datasetId,
      mode: this.config.writeMode,
      tables: [...this.tables.values()].map((t) => `${t.tableId}(${t.method})`).join(','),
    });
  }

  async write(events: ChangeEvent[]): Promise<void> {
    if (!this.opened) throw new NanosyncError(ErrorCode.Internal, 'BigQuery sink write() before open()');
    const byTable = new Map<string, ChangeEvent[]>();
    for (const event of events) {
      const name = qualifiedName(event.table);
      const list = byTable.get(name);
      if (list) list.push(event);
      else byTable.set(name, [event]);
    }
    // Tables are independent in BigQuery; within a table, order is kept and a schema change
    // or a truncate ends a segment.
    for (const list of byTable.values()) {
      let segment: ChangeEvent[] = [];
      let schema = list[0]?.table;
      for (const event of list) {
        if (event.table !== schema && signatureOf(event.table) !== signatureOf(schema as TableSchema)) {
          await this.writeSegment(segment);
          segment = [];
          schema = event.table;
        }
        if (event.op === 'truncate') {
          await this.writeSegment(segment);
          segment = [];
          await this.truncate(event);
          continue;
        }
        segment.push(event);
      }
      await this.writeSegment(segment);
    }
  }

  async close(): Promise<void> {
    this.opened = false;
    await this.port.close();
  }

  async check(): Promise<CheckResult[]> {
    return checkBigQuery(this.port, this.config);
  }

  /** The method of a source table (config decides; see the README). */
  methodOf(table: TableSchema): TableMethod {
    if (this.config.writeMode === 'append') return 'changelog';
    if (this.config.upsertMethod === 'merge' || this.config.mergeTables.includes(qualifiedName(table))) return 'merge';
    return 'cdc';
  }

  private async prepare(source: TableSchema): Promise<TableState> {
    const name = qualifiedName(source);
    const method = this.methodOf(source);
    const tableId = tableNameFor(source, this.config);
    const path = quoteTablePath(this.config.projectId, this.config.datasetId, tableId);
    const target = targetTableFor(source, method === 'changelog' ? 'changelog' : 'mirror');
    await this.ensureTable(target, tableId, path, method === 'merge' ? 0 : this.config.maxStalenessSeconds);

    const state: TableState = {
      source,
      signature: signatureOf(source),
      tableId,
      path,
      method,
      target,
      layout: rowLayoutFor(target, method === 'cdc' ? CDC_EXTRAS : method === 'changelog' ? CHANGELOG_EXTRAS : []),
      merges: this.tables.get(name)?.merges ?? [],
    };
    if (method === 'merge') {
      columnNamesFor(
        source,
        STAGING_FIELDS.map((f) => f.name),
      );
      const stagingId = stagingTableName(tableId);
      const stagingPath = quoteTablePath(this.config.projectId, this.config.datasetId, stagingId);
      const staging = stagingTargetFor(target);
      const existing = await this.retry('reading staging table', name, () => this.port.getTable(stagingId));
      if (!existing)
        await this.retry('creating staging table', name, () =>
          this.port.query(createStagingTableSql(staging, stagingPath)),
        );
      else
        for (const sql of planSchemaChange(staging, existing.fields, stagingPath).statements)
          await this.retry('evolving staging table', name, () => this.port.query(sql));
      state.staging = { tableId: stagingId, path: stagingPath, target: staging };
      state.layout = rowLayoutFor(staging);
    }
    this.tables.set(name, state);
    return state;
  }

  private async ensureTable(
    target: TargetTable,
    tableId: string,
    path: string,
    maxStalenessSeconds: number,
  ): Promise<void> {
    const name = qualifiedName(target.source);
    const existing = await this.retry('reading table', name, () => this.port.getTable(tableId));
    if (!existing) {
      const sql = createTableSql(target, {
        projectId: this.config.projectId,
        datasetId: this.config.datasetId,
        tableId,
        maxStalenessSeconds,
      });
      if (!this.config.autoCreateTables) {
        throw new NanosyncError(
          BigQueryErrorCode.BigQuerySchema,
          `BigQuery table ${this.config.projectId}.${this.config.datasetId}.${tableId} (for ${name}) does not exist and auto_create_tables is false; create it with:\n${sql}`,
          { retriable: false, details: { table: name } },
        );
      }
      await this.retry('creating table', name, () => this.port.query(sql));
      this.logger.info('created BigQuery table', { table: name, bigquery: tableId });
      return;
    }
    const change = planSchemaChange(target, existing.fields, path);
    for (const sql of change.statements) await this.retry('evolving table', name, () => this.port.query(sql));
    if (change.statements.length > 0) {
      this.logger.info('evolved BigQuery table', {
        table: name,
        added: change.added.join(','),
        relaxed: change.relaxed.join(','),
        widened: change.widened.join(','),
      });
    }
    if (change.kept.length > 0)
      this.logger.info('BigQuery columns kept after the source dropped them', {
        table: name,
        columns: change.kept.join(','),
      });
    if (stalenessSeconds(existing.maxStaleness) !== maxStalenessSeconds) {
      const value = maxStalenessSeconds > 0 ? intervalLiteral(maxStalenessSeconds) : 'NULL';
      await this.retry('setting max_staleness', name, () =>
        this.port.query(`ALTER TABLE ${path} SET OPTIONS (max_staleness = ${value})`),
      );
      this.logger.info('changed max_staleness', { table: name, seconds: maxStalenessSeconds });
    }
    const haveKey = existing.primaryKey.map((c) => c.toLowerCase());
    const wantKey = target.primaryKey.map((c) => c.toLowerCase());
    if (haveKey.length === 0) {
      await this.retry('declaring the primary key', name, () =>
        this.port.query(
          `ALTER TABLE ${path} ADD PRIMARY KEY (${target.primaryKey.map(quoteIdentifier).join(', ')}) NOT ENFORCED`,
        ),
      );
    } else if (haveKey.join(',') !== wantKey.join(',')) {
      throw new NanosyncError(
        BigQueryErrorCode.BigQuerySchema,
        `BigQuery table ${tableId} (for ${name}) has primary key (${existing.primaryKey.join(', ')}) but the source key maps to (${target.primaryKey.join(', ')}); ` +
          'drop the table (it is recreated and filled by a re-snapshot) or name another one in table_names',
        { retriable: false, details: { table: name } },
      );
    }
  }

  private async stateFor(schema: TableSchema): Promise<TableState> {
    const state = this.tables.get(qualifiedName(schema));
    if (state && (state.source === schema || state.signature === signatureOf(schema))) {
      state.source = schema;
      return state;
    }
    if (state) this.logger.info('source table schema changed', { table: qualifiedName(schema) });
    return this.prepare(schema);
  }

  private async writeSegment(events: ChangeEvent[]): Promise<void> {
    const first = events[0];
    if (!first) return;
    const state = await this.stateFor(first.table);
    if (state.method === 'cdc') return this.writeCdc(state, events);
    if (state.method === 'merge') return this.writeMerge(state, events);
    return this.writeChangelog(state, events);
  }

  private async writeCdc(state: TableState, events: ChangeEvent[]): Promise<void> {
    const keys = state.source.keyColumns;
    const name = qualifiedName(state.source);
    const rows: EncodedRow<Origin>[] = [];
    const known = new Map<string, Row>();
    for (const event of events) {
      const seq = this.sequences.of(event);
      if (event.op === 'delete') {
        const key = keyOf(event, keys, 'old');
        rows.push(
          this.encode(
            state,
            key,
            { [CHANGE_TYPE]: 'DELETE', [CHANGE_SEQUENCE_NUMBER]: seq },
            { table: name, key, position: event.position },
          ),
        );
        known.delete(keyText(key));
        continue;
      }
      const newKey = keyOf(event, keys, 'new');
      const moved = keyChanged(event, keys);
      const oldKey = moved ? keyOf(event, keys, 'old') : newKey;
      if (moved) {
        rows.push(
          this.encode(
            state,
            oldKey,
            { [CHANGE_TYPE]: 'DELETE', [CHANGE_SEQUENCE_NUMBER]: seq },
            { table: name, key: oldKey, position: event.position },
          ),
        );
      }
      const resolved = resolveUnchanged(event, known.get(keyText(oldKey)));
      const missing = resolved.unchanged.filter((c) => !keys.includes(c));
      if (missing.length > 0) throw unchangedOnCdc(name, missing, newKey, event.position);
      rows.push(
        this.encode(
          state,
          resolved.row,
          { [CHANGE_TYPE]: 'UPSERT', [CHANGE_SEQUENCE_NUMBER]: seq },
          { table: name, key: newKey, position: event.position },
        ),
      );
      known.delete(keyText(oldKey));
      known.set(keyText(newKey), resolved.row);
    }
    await this.appendAll(state.tableId, state.layout, rows, name);
  }

  private async writeChangelog(state: TableState, events: ChangeEvent[]): Promise<void> {
    const name = qualifiedName(state.source);
    const rows: EncodedRow<Origin>[] = [];
    for (const event of events) rows.push(this.changelogRow(state, event));
    await this.appendAll(state.tableId, state.layout, rows, name);
  }

  private changelogRow(state: TableState, event: ChangeEvent): EncodedRow<Origin> {
    const name = qualifiedName(state.source);
    const keys = state.source.keyColumns;
    const key = event.op === 'truncate' ? {} : keyOf(event, keys, event.op === 'delete' ? 'old' : 'new');
    const image =
      event.op === 'truncate'
        ? {}
        : event.op === 'delete'
          ? { ...event.key, ...(event.before ?? {}) }
          : (event.after ?? event.key);
    const extras: Record<string, ProtoValue | undefined> = {
      _ns_event_id: eventId(name, event.position, event.op, key),
      _ns_op: event.op,
      _ns_position: event.position,
      _ns_committed_at: event.commitTime ? int64Words(timestampMicros(event.commitTime)) : undefined,
      _ns_unchanged: event.unchanged ?? [],
      [CHANGE_TYPE]: 'UPSERT',
    };
    return this.encode(state, image, extras, { table: name, key, position: event.position });
  }

  private async writeMerge(state: TableState, events: ChangeEvent[]): Promise<void> {
    const staging = state.staging as NonNullable<TableState['staging']>;
    const name = qualifiedName(state.source);
    const folded = foldEvents(events, state.source.keyColumns);
    if (folded.length === 0) return;
    const batch = randomUUID();
    const stagedAt = int64Words(BigInt(this.now()) * 1000n);
    const bigQueryName = (c: string) => state.target.columns.get(c)?.field.name ?? c;
    const sets = new Map<string, string[]>();
    const rows = folded.map((change) => {
      const unchanged = change.unchanged.map(bigQueryName);
      if (unchanged.length > 0) sets.set(unchangedTag(unchanged), unchanged);
      const image = change.op === 'delete' ? change.key : change.row;
      return this.encode(
        state,
        image,
        {
          _ns_batch: batch,
          _ns_seq: int64Words(BigInt(change.seq)),
          _ns_op: change.op === 'delete' ? STAGING_OP_DELETE : STAGING_OP_UPSERT,
          _ns_unchanged: unchangedTag(unchanged),
          _ns_staged_at: stagedAt,
        },
        { table: name, key: change.key, position: events[events.length - 1]?.position ?? '' },
      );
    });
    await this.appendAll(staging.tableId, state.layout, rows, name);
    await this.mergeBudget(
      state,
      events.every((e) => e.op === 'read'),
    );
    const sql = mergeSql(state.target, {
      targetPath: state.path,
      stagingPath: staging.path,
      unchangedSets: [...sets.values()],
    });
    await this.retry('MERGE', name, () => this.port.query(sql, { params: { batch } }));
    state.merges.push(this.now());
  }

  /**
   * DML budget guard: at most one MERGE per `merge_interval_ms` per table, and never more
   * than `merge_daily_budget` in 24 hours — the write waits instead (the source keeps the
   * changes meanwhile, and core batches what queues up into the next write).
   */
  private async mergeBudget(state: TableState, snapshotOnly: boolean): Promise<void> {
    const now = this.now();
    state.merges = state.merges.filter((t) => t > now - DAY_MS);
    const last = state.merges[state.merges.length - 1];
    // Snapshot rows are not held back by the interval (a large table would take days);
    // they still count against the daily budget.
    let wait = last === undefined || snapshotOnly ? 0 : last + this.config.mergeIntervalMs - now;
    if (state.merges.length >= this.config.mergeDailyBudget) {
      const free = (state.merges[state.merges.length - this.config.mergeDailyBudget] as number) + DAY_MS - now;
      this.logger.warn('daily MERGE budget reached: waiting', {
        table: qualifiedName(state.source),
        budget: this.config.mergeDailyBudget,
        waitMs: free,
      });
      wait = Math.max(wait, free);
    }
    if (wait > 0) await this.sleep(wait, this.signal);
    if (this.signal.aborted)
      throw new NanosyncError(ErrorCode.PipelineStopped, 'BigQuery sink stopped while waiting for the MERGE budget', {
        retriable: true,
      });
  }

  private async truncate(event: ChangeEvent): Promise<void> {
    const state = await this.stateFor(event.table);
    const name = qualifiedName(event.table);
    if (state.method === 'changelog') {
      await this.appendAll(state.tableId, state.layout, [this.changelogRow(state, event)], name);
      return;
    }
    if (this.config.onTruncate === 'fail') {
      throw new NanosyncError(
        BigQueryErrorCode.BigQueryUnsupported,
        `TRUNCATE of ${name} at position ${event.position}: on_truncate is fail. Empty BigQuery table ${state.tableId} yourself ` +
          `(or set on_truncate: delete) and resume; the pipeline replays from its checkpoint`,
        { retriable: false, details: { table: name, position: event.position } },
      );
    }
    if (state.method === 'merge') {
      await this.mergeBudget(state, false);
      await this.retry('TRUNCATE', name, () => this.port.query(`TRUNCATE TABLE ${state.path}`));
      state.merges.push(this.now());
      this.logger.info('truncated BigQuery table', { table: name });
      return;
    }
    // CDC tables refuse DML: delete every key the table holds, at the truncate's sequence
    // number, so rows written before it go and rows written after it stay.
    const seq = this.sequences.of(event);
    let deleted = 0;
    await this.retry('reading keys for TRUNCATE', name, () =>
      this.port.query(keySelectSql(state.target, state.path), {
        onRows: async (results) => {
          const rows = results.map((result) => {
            const key = keyFromResult(state.target, result);
            return this.encode(
              state,
              key,
              { [CHANGE_TYPE]: 'DELETE', [CHANGE_SEQUENCE_NUMBER]: seq },
              { table: name, key, position: event.position },
            );
          });
          await this.appendAll(state.tableId, state.layout, rows, name);
          deleted += rows.length;
        },
      }),
    );
    this.logger.info('applied TRUNCATE as deletes', { table: name, rows: deleted });
  }

  private encode(
    state: TableState,
    image: Row,
    extras: Record<string, ProtoValue | undefined>,
    origin: Origin,
  ): EncodedRow<Origin> {
    try {
      return { bytes: encodeRow(state.layout, image, extras), origin };
    } catch (err) {
      if (err instanceof RowRejected && this.config.invalidRows === 'skip') {
        this.logger.warn('row skipped: BigQuery cannot hold a value (invalid_rows: skip)', {
          table: origin.table,
          column: err.column,
          key: keyText(origin.key),
          position: origin.position,
          reason: err.reason,
        });
        return { bytes: new Uint8Array(0), origin: { ...origin, skipped: true } };
      }
      if (err instanceof RowRejected) {
        throw new NanosyncError(
          BigQueryErrorCode.BigQueryValue,
          `table ${origin.table}, column "${err.column}", key ${keyText(origin.key)}, position ${origin.position}: ${err.reason}`,
          {
            retriable: false,
            cause: err,
            details: { table: origin.table, column: err.column, key: keyText(origin.key), position: origin.position },
          },
        );
      }
      throw err;
    }
  }

  private async appendAll(tableId: string, layout: RowLayout, all: EncodedRow<Origin>[], table: string): Promise<void> {
    const skip = this.config.invalidRows === 'skip';
    const reserve = REQUEST_RESERVE_BYTES + Buffer.byteLength(JSON.stringify(layout.descriptor));
    const budget = this.config.maxRequestBytes - reserve;
    const rows = all.filter((r) => {
      if (r.origin.skipped) return false;
      if (skip && framedSize(r.bytes) > budget) {
        this.logger.warn('row skipped: larger than one AppendRows request (invalid_rows: skip)', {
          table,
          key: keyText(r.origin.key),
          position: r.origin.position,
          bytes: r.bytes.length,
        });
        return false;
      }
      return true;
    });
    if (rows.length === 0) return;
    try {
      for (const request of splitIntoRequests(rows, this.config.maxRequestBytes, reserve)) {
        let pending = request;
        for (let round = 0; pending.length > 0; round++) {
          const sent = pending;
          const outcome = await this.retry('append', table, () =>
            this.port.append(
              tableId,
              layout.descriptor,
              sent.map((r) => r.bytes),
            ),
          );
          if (outcome.rowErrors.length === 0) break;
          if (!skip || round > 0) throw this.refused(table, sent, outcome.rowErrors);
          // BigQuery wrote nothing of the request: send it again without the refused rows.
          const refused = new Set(outcome.rowErrors.map((e) => e.index));
          for (const e of outcome.rowErrors) {
            const origin = sent[e.index]?.origin;
            this.logger.warn('row skipped: BigQuery refused it (invalid_rows: skip)', {
              table,
              key: origin ? keyText(origin.key) : undefined,
              position: origin?.position,
              reason: e.message,
            });
          }
          pending = sent.filter((_, index) => !refused.has(index));
        }
      }
    } catch (err) {
      if (err instanceof RowTooLarge) {
        const origin = (err as RowTooLarge<Origin>).row.origin;
        throw new NanosyncError(
          BigQueryErrorCode.BigQueryValue,
          `table ${origin.table}, key ${keyText(origin.key)}, position ${origin.position}: the row is ${err.row.bytes.length} bytes, more than one AppendRows request may carry (${err.limit} bytes of max_request_bytes)`,
          { retriable: false, details: { table: origin.table, key: keyText(origin.key), position: origin.position } },
        );
      }
      throw err;
    }
  }

  private refused(
    table: string,
    request: EncodedRow<Origin>[],
    rowErrors: { index: number; message: string }[],
  ): NanosyncError {
    const lines = rowErrors.slice(0, 5).map((e) => {
      const origin = request[e.index]?.origin;
      return origin
        ? `key ${keyText(origin.key)} at position ${origin.position}: ${e.message}`
        : `row ${e.index}: ${e.message}`;
    });
    const firstOrigin = request[rowErrors[0]?.index ?? 0]?.origin;
    return new NanosyncError(
      BigQueryErrorCode.BigQueryValue,
      `BigQuery refused ${rowErrors.length} row(s) of table ${table} (nothing of that request was written): ${lines.join('; ')}`,
      {
        retriable: false,
        details: { table, key: firstOrigin ? keyText(firstOrigin.key) : undefined, position: firstOrigin?.position },
      },
    );
  }

  private async retry<T>(what: string, table: string, fn: () => Promise<T>): Promise<T> {
    const context = { projectId: this.config.projectId, datasetId: this.config.datasetId, table };
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof NanosyncError) throw err;
        const kind = classifyBigQueryError(err);
        if (kind !== 'retriable' || attempt > this.config.maxRetries || this.signal.aborted) {
          const failure = bigQueryFailure(err, what, context);
          if (kind !== 'retriable') throw failure;
          throw new NanosyncError(
            failure.code,
            `${failure.message.replace(/^\[[A-Z0-9_]+\] /, '')} (after ${attempt} attempts)`,
            {
              cause: err,
              retriable: false,
              details: failure.details,
            },
          );
        }
        const delay = backoffDelay(attempt, {
          baseDelayMs: this.config.retryBackoffMs,
          maxDelayMs: this.config.retryBackoffMaxMs,
        });
        this.logger.warn('BigQuery call failed, retrying', {
          table,
          what,
          attempt,
          delayMs: delay,
          error: bigQueryFailure(err, what, context).message,
        });
        await this.sleep(delay, this.signal);
      }
    }
  }
}

function unchangedOnCdc(table: string, columns: string[], key: Row, position: string): NanosyncError {
  return new NanosyncError(
    BigQueryErrorCode.BigQueryUnsupported,
    `table ${table}, key ${keyText(key)}, position ${position}: the source did not send column(s) ${columns.map((c) => `"${c}"`).join(', ')} ` +
      '(unchanged TOAST), and a CDC UPSERT replaces the whole row, so it would write NULL. Fix one of: ' +
      `(1) ALTER TABLE ${table} REPLICA IDENTITY FULL at the source (the old row then carries the value) and re-snapshot this table; ` +
      `(2) list ${table} in merge_tables (staging + MERGE keeps the stored value); drop its BigQuery table first so it is recreated without CDC history`,
    { retriable: false, details: { table, column: columns.join(','), key: keyText(key), position } },
  );
}

/** The changelog's primary key: the same for every delivery of one event. */
export function eventId(table: string, position: string, op: string, key: Row): string {
  return createHash('sha256')
    .update(`${table}\u0000${position}\u0000${op}\u0000${keyText(key)}`)
    .digest('hex')
    .slice(0, 32);
}

/** `max_staleness` as the tables API reports it (`0-0 0 0:15:0`, Y-M D H:M:S) → seconds; unset = 0. */
export function stalenessSeconds(text: string | undefined): number {
  const match = /^\s*\d+-\d+\s+(\d+)\s+(\d+):(\d+):(\d+)(?:\.\d+)?\s*$/.exec(text ?? '');
  if (!match) return 0;
  return Number(match[1]) * 86_400 + Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4]);
}

const signatures = new WeakMap<TableSchema, string>();

/** What identifies a table's shape; cached per schema object (sources reuse them across events). */
function signatureOf(table: TableSchema): string {
  let signature = signatures.get(table);
  if (signature === undefined) {
    signature = JSON.stringify([table.keyColumns, table.columns.map((c) => [c.name, c.type])]);
    signatures.set(table, signature);
  }
  return signature;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

export { CHANGELOG_FIELDS };
