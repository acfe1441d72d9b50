import type {
  ChangeBatch,
  CheckResult,
  ConnectorContext,
  Logger,
  OpenOptions,
  OpenResult,
  PartitionSpec,
  Position,
  ReadPartitionOptions,
  Row,
  Source,
  SourceMetrics,
  TableRef,
  TableSchema,
} from '@nanosync/core';
import { ErrorCode, isRetriable, NanosyncError } from '@nanosync/core';
import type sql from 'mssql';
import { describeTable, type MssqlTable, readCaptureInstances, toTableSchema } from './catalog.js';
import { waitForCaptureJob } from './cdc/capture-wait.js';
import { planInstanceReads } from './cdc/instances.js';
import { disableManagedCdc, enableManagedCdc, managedRoleName } from './cdc/manage.js';
import { streamChanges } from './cdc/stream.js';
import { MAX_LSN_SQL } from './cdc/change-query.js';
import { runChecks } from './check.js';
import type { SqlServerSourceConfig } from './config.js';
import { buildMssqlConfig, connectPool } from './connection.js';
import {
  cdcNotEnabledOnTable,
  changesLost,
  connectionError,
  protocolError,
  quoteTable,
  tableLabel,
  MssqlErrorCode,
} from './errors.js';
import {
  boundaryPosition,
  comparePositions,
  decodePosition,
  formatLsn,
  formatPosition,
  isBoundary,
  type Lsn,
  lsnFromBytes,
  maxLsn,
  ZERO_LSN,
} from './position.js';
import { type KeyRangeBounds, isKeyRangeBounds } from './snapshot/key-ranges.js';
import { planTablePartitions } from './snapshot/plan.js';
import { readKeyRange, type SnapshotIsolation } from './snapshot/read-partition.js';

/** How long `open` waits for the capture job to establish new capture instances. */
const INSTANCE_READY_TIMEOUT_MS = 120_000;
/** After how long of that wait the pipeline shows it (WAITING, `waitingFor`): a running capture job needs seconds. */
const CAPTURE_WAIT_REPORT_AFTER_MS = 10_000;

/**
 * The SQL Server source of one pipeline. Connections: a small admin pool (catalog, checks,
 * CDC management; requests time out after a minute) and a data pool for snapshot ranges and
 * the change stream (no request timeout: those are cancelled through their abort signals).
 *
 * Handoff. `open()` records L₀ — the capture job's max LSN, and never below the start of a
 * capture instance it just created — before any snapshot row is read. SQL Server cannot
 * export one snapshot for several sessions the way PostgreSQL can: each snapshot range
 * reads in its own SNAPSHOT transaction, whose view starts at its first read, somewhere
 * after L₀. A row changed between L₀ and that read is therefore seen in its newer state by
 * the snapshot and its change is streamed again from L₀: the sinks get the newer row first
 * and the older change after it, and converge on the stream's final state — the same replay
 * rule that makes a PostgreSQL pipeline correct after a restart mid-snapshot. No change after
 * L₀ is missed, because the stream reads every change after L₀.
 */
export class SqlServerSource implements Source {
  readonly #config: SqlServerSourceConfig;
  readonly #logger: Logger;
  readonly #pipeline: string;
  #admin: Promise<sql.ConnectionPool> | undefined;
  #data: Promise<sql.ConnectionPool> | undefined;
  readonly #tables = new Map<string, MssqlTable>();
  #isolation: Promise<SnapshotIsolation> | undefined;
  #head: Lsn | undefined;
  #confirmed: Position | undefined;
  #closed = false;
  readonly #reportWaiting: ConnectorContext['reportWaiting'];
  readonly #signal: AbortSignal;

  constructor(config: SqlServerSourceConfig, context: ConnectorContext) {
    this.#config = config;
    this.#logger = context.logger;
    this.#pipeline = context.pipeline;
    this.#reportWaiting = context.reportWaiting;
    this.#signal = context.signal;
  }

  #pool(kind: 'admin' | 'data'): Promise<sql.ConnectionPool> {
    if (this.#closed)
      throw new NanosyncError(ErrorCode.PipelineStopped, `source of pipeline "${this.#pipeline}" is closed`);
    const existing = kind === 'admin' ? this.#admin : this.#data;
    if (existing) return existing;
    const options = kind === 'admin' ? { poolMax: 2, requestTimeoutMs: 60_000 } : { poolMax: 16, requestTimeoutMs: 0 };
    const connecting = connectPool(this.#config, buildMssqlConfig(this.#config, options));
    connecting.catch(() => {
      if (kind === 'admin' && this.#admin === connecting) this.#admin = undefined;
      if (kind === 'data' && this.#data === connecting) this.#data = undefined;
    });
    if (kind === 'admin') this.#admin = connecting;
    else this.#data = connecting;
    return connecting;
  }

  async #withAdmin<T>(doing: string, fn: (pool: sql.ConnectionPool) => Promise<T>): Promise<T> {
    const pool = await this.#pool('admin');
    try {
      return await fn(pool);
    } catch (err) {
      if (err instanceof NanosyncError) throw err;
      throw connectionError(err, this.#config, doing);
    }
  }

  async check(tables: TableRef[]): Promise<CheckResult[]> {
    try {
      return await this.#withAdmin('checking', (pool) =>
        runChecks(pool, {
          tables,
          database: this.#config.database,
          pipeline: this.#pipeline,
          manageCdc: this.#config.manageCdc,
          cdcRole: this.#cdcRole(),
        }),
      );
    } catch (err) {
      const wrapped = connectionError(err, this.#config, 'connecting');
      return [{ name: 'connection', ok: false, message: wrapped.message, severity: 'error' }];
    }
  }

  #cdcRole(): string | null {
    if (this.#config.cdcRole !== undefined) return this.#config.cdcRole;
    return this.#config.manageCdc ? managedRoleName(this.#pipeline) : null;
  }

  async open(tables: TableRef[], options: OpenOptions): Promise<OpenResult> {
    if (tables.length === 0)
      throw new NanosyncError(ErrorCode.ConfigInvalid, `pipeline "${this.#pipeline}" lists no tables`);
    const described = await this.#describe(tables);
    if (this.#config.manageCdc && options.existingStartPosition === undefined) {
      await this.#withAdmin('enabling CDC (manage_cdc)', (pool) =>
        enableManagedCdc(pool, {
          pipeline: this.#pipeline,
          database: this.#config.database,
          role: this.#cdcRole(),
          tables: described.map((t) => ({ ref: t, objectId: t.objectId, keyIndex: t.keyIndex })),
          logger: this.#logger,
        }),
      );
    }
    if (options.existingStartPosition !== undefined) {
      decodePosition(options.existingStartPosition);
      await this.#verifyResumable(described, options.checkpoint ?? options.existingStartPosition);
      this.#logger.info('resuming from the CDC change tables', {
        start: formatPosition(options.existingStartPosition),
      });
      return { startPosition: options.existingStartPosition };
    }
    const startLsn = await this.#startLsn(described);
    const startPosition = boundaryPosition(startLsn);
    this.#logger.info('start position recorded before the snapshot', { start: formatLsn(startLsn) });
    return { startPosition };
  }

  /**
   * L₀: the capture job's max LSN, waiting until every table's capture instance is
   * established (a just-created instance has no start LSN until the capture job saw it) and
   * never below a newest instance's start, whose changes begin there.
   */
  async #startLsn(tables: MssqlTable[]): Promise<Lsn> {
    return waitForCaptureJob({
      read: () =>
        this.#withAdmin('reading the CDC state', async (pool) => ({
          instances: await readCaptureInstances(pool),
          head: await readMaxLsn(pool),
        })),
      tables,
      logger: this.#logger,
      reportWaiting: this.#reportWaiting,
      timeoutMs: INSTANCE_READY_TIMEOUT_MS,
      reportAfterMs: CAPTURE_WAIT_REPORT_AFTER_MS,
      pollMs: 500,
      signal: this.#signal,
    });
  }

  /** A later run: every table still captured, and nothing removed past the checkpoint. */
  async #verifyResumable(tables: MssqlTable[], checkpoint: Position): Promise<void> {
    const position = decodePosition(checkpoint);
    const instances = await this.#withAdmin('reading the capture instances', (pool) => readCaptureInstances(pool));
    const head = await this.#withAdmin('reading the max LSN', (pool) => readMaxLsn(pool));
    for (const table of tables) {
      const own = instances.filter((i) => i.sourceObjectId === table.objectId);
      if (own.length === 0) throw cdcNotEnabledOnTable(table);
      const plan = planInstanceReads(own, position.startLsn, isBoundary(checkpoint), maxLsn(head, position.startLsn));
      if (plan.gap && this.#config.onRetentionGap !== 'resnapshot')
        throw changesLost(
          table,
          {
            instance: plan.gap.instance.name,
            lostAfter: formatLsn(plan.gap.lostAfter),
            lostBefore: formatLsn(plan.gap.lostBefore),
          },
          this.#pipeline,
        );
    }
  }

  async #describe(tables: TableRef[]): Promise<MssqlTable[]> {
    const described = await this.#withAdmin('reading table definitions', async (pool) => {
      const out: MssqlTable[] = [];
      for (const t of tables) out.push(await describeTable(pool, t, this.#config.database));
      return out;
    });
    for (const t of described) this.#tables.set(tableKey(t), t);
    return described;
  }

  async describe(tables: TableRef[]): Promise<TableSchema[]> {
    return (await this.#describe(tables)).map((t) => toTableSchema(t, t.columns, this.#config.timePrecision));
  }

  async #table(table: TableRef): Promise<MssqlTable> {
    return this.#tables.get(tableKey(table)) ?? (await this.#describe([table]))[0]!;
  }

  async planPartitions(table: TableSchema, options: { targetRowsPerPartition: number }): Promise<PartitionSpec[]> {
    const described = await this.#table(table);
    const plan = await this.#withAdmin('planning snapshot partitions', (pool) =>
      planTablePartitions(pool, described, options.targetRowsPerPartition, this.#logger),
    );
    this.#logger.debug('planned snapshot partitions', {
      table: tableLabel(table),
      method: plan.method,
      rows: plan.estimatedRows,
      partitions: plan.partitions.length,
    });
    return plan.partitions;
  }

  #snapshotIsolation(): Promise<SnapshotIsolation> {
    this.#isolation ??= this.#withAdmin('reading the snapshot isolation setting', async (pool) => {
      const result = await pool
        .request()
        .query<{ state: string }>(
          'SELECT snapshot_isolation_state_desc AS state FROM sys.databases WHERE database_id = DB_ID()',
        );
      if (result.recordset[0]?.state === 'ON') return 'snapshot' as const;
      this.#logger.warn(
        'snapshot isolation is not allowed on the database: snapshot partitions read under READ COMMITTED (the stream replays from the start position, so the result stays correct); ALTER DATABASE … SET ALLOW_SNAPSHOT_ISOLATION ON avoids the shared locks',
        { database: this.#config.database, isolation: 'READ COMMITTED' },
      );
      return 'read_committed' as const;
    });
    this.#isolation.catch(() => {
      this.#isolation = undefined;
    });
    return this.#isolation;
  }

  async *readPartition(
    table: TableSchema,
    partition: PartitionSpec,
    options: ReadPartitionOptions,
  ): AsyncIterable<Row[]> {
    if (!isKeyRangeBounds(partition.bounds))
      throw protocolError(
        `partition ${partition.id} of ${quoteTable(table)} has bounds ${JSON.stringify(partition.bounds).slice(0, 200)}, not a key range`,
      );
    const described = await this.#table(table);
    yield* this.#readRange(
      described,
      table.columns.map((c) => c.name),
      partition.bounds,
      options.maxRowsPerChunk,
      options.signal,
      `partition ${partition.id}`,
    );
  }

  async *#readRange(
    described: MssqlTable,
    columnNames: string[],
    bounds: KeyRangeBounds,
    maxRowsPerChunk: number,
    signal: AbortSignal,
    what: string,
  ): AsyncGenerator<Row[]> {
    const byName = new Map(described.columns.map((c) => [c.name, c]));
    const columns = columnNames.map((name) => {
      const column = byName.get(name);
      if (!column)
        throw new NanosyncError(
          MssqlErrorCode.MssqlCheck,
          `column "${name}" of table ${quoteTable(described)} no longer exists; re-snapshot the pipeline`,
        );
      return column;
    });
    const keyColumns = described.keyColumns.map((k) => byName.get(k)!);
    const pool = await this.#pool('data');
    const isolation = await this.#snapshotIsolation();
    try {
      yield* readKeyRange({
        pool,
        table: described,
        columns,
        keyColumns,
        bounds,
        isolation,
        maxRowsPerChunk,
        timePrecision: this.#config.timePrecision,
        signal,
        logger: this.#logger,
      });
    } catch (err) {
      if (err instanceof NanosyncError || signal.aborted) throw err;
      throw connectionError(err, this.#config, `reading ${what} of ${quoteTable(described)}`);
    }
  }

  stream(from: Position, options: { signal: AbortSignal; tables: TableRef[] }): AsyncIterable<ChangeBatch> {
    decodePosition(from);
    const self = this;
    return (async function* () {
      const tables = await self.#describe(options.tables);
      const pool = await self.#pool('data');
      yield* streamChanges({
        pool,
        pipeline: self.#pipeline,
        tables,
        config: self.#config,
        from,
        signal: options.signal,
        logger: self.#logger,
        readWholeTable: (table, signal) =>
          self.#readRange(
            table,
            table.columns.map((c) => c.name),
            { kind: 'key-range', columns: table.keyColumns },
            1000,
            signal,
            'the re-snapshot',
          ),
        onHead: (lsn) => {
          self.#head = lsn;
        },
      });
    })();
  }

  /**
   * Nothing to release on the server: CDC keeps change rows for the cleanup job's retention,
   * whatever readers have consumed. Recorded for metrics only.
   */
  async acknowledge(position: Position): Promise<void> {
    if (this.#confirmed === undefined || comparePositions(position, this.#confirmed) > 0) this.#confirmed = position;
  }

  comparePositions(a: Position, b: Position): number {
    return comparePositions(a, b);
  }

  formatPosition(position: Position): string {
    return formatPosition(position);
  }

  async metrics(): Promise<SourceMetrics> {
    const head = await this.#withAdmin('reading the max LSN', (pool) => readMaxLsn(pool)).catch((err) => {
      if (isRetriable(err)) return this.#head;
      throw err;
    });
    const metrics: SourceMetrics = {};
    if (head) metrics.headPosition = boundaryPosition(head);
    if (this.#confirmed) metrics.confirmedPosition = this.#confirmed;
    return metrics;
  }

  /** With `manage_cdc`, disable exactly what nanosync enabled; otherwise nothing (the DBA owns CDC). */
  async drop(): Promise<void> {
    if (!this.#config.manageCdc) return;
    await this.#withAdmin('disabling the CDC nanosync enabled', (pool) =>
      disableManagedCdc(pool, this.#pipeline, this.#logger),
    );
  }

  async abandon(): Promise<void> {
    await this.drop();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pools = [this.#admin, this.#data];
    this.#admin = undefined;
    this.#data = undefined;
    await Promise.all(
      pools.map(async (p) => {
        const pool = await p?.catch(() => undefined);
        await pool?.close().catch(() => {});
      }),
    );
  }
}

function tableKey(t: { schema: string; name: string }): string {
  return JSON.stringify([t.schema, t.name]);
}

async function readMaxLsn(pool: sql.ConnectionPool): Promise<Lsn> {
  const result = await pool.request().query<{ max_lsn: Buffer | null }>(MAX_LSN_SQL);
  const raw = result.recordset[0]?.max_lsn;
  return raw ? lsnFromBytes(raw) : ZERO_LSN;
}
