import type {
  ChangeBatch,
  CheckResult,
  ConnectorContext,
  Logger,
  OpenOptions,
  OpenResult,
  PartitionSpec,
  Position,
  RawRows,
  PartitionChunk,
  ReadPartitionChunkOptions,
  ReadPartitionOptions,
  Row,
  Source,
  SourceMetrics,
  SourceMetricsOptions,
  TableRef,
  TableSchema,
} from '@nanosync/core';
import { ErrorCode, NanosyncError, redact } from '@nanosync/core';
import type pg from 'pg';
import type { PostgresSourceConfig } from './config.js';
import { buildConnectionConfig, connectClient, type PgConnectionConfig } from './connection.js';
import { describeTables, listLeafPartitions, type PgColumn, type PgTable } from './describe.js';
import {
  connectionError,
  describeEndpoint,
  isTransientPgError,
  PgErrorCode,
  quoteIdent,
  quoteLiteral,
  quoteTable,
  sqlState,
  tableNotFound,
} from './errors.js';
import { comparePositions, encodePosition, formatPosition, parseLsn } from './position.js';
import { runChecks } from './slot/check.js';
import { publicationNameFor, slotNameFor } from './slot/names.js';
import { oldestPendingCommit, type PendingCommitCache } from './slot/pending.js';
import { dropOwnPublication, dropPublication, ensurePublication } from './slot/publication.js';
import { findMissingIdentity, missingIdentityError } from './slot/replica-identity.js';
import { createSlot, dropSlot, readSlot, verifySlot } from './slot/replication-slot.js';
import { type CtidBounds, isCtidBounds, planCtidPartitions } from './snapshot/ctid-partitions.js';
import { estimateTableSize } from './snapshot/estimate.js';
import { type CtidChunkCursor, isChunkCursor, readCtidChunk, readCtidRaw } from './snapshot/read-chunk.js';
import { type RawDecoderSetup, rawRowKeys } from './snapshot/raw-rows.js';
import {
  beginSnapshotRead,
  DEFAULT_READ_PATH,
  type ReadPath,
  readCtidPartition,
  rowDecoder,
} from './snapshot/read-partition.js';
import { parseSnapshotView, RecentCommits, SNAPSHOT_VIEW_SQL } from './snapshot/visibility.js';
import { createAcknowledger, type KeyShape, keyMemoryEntry, streamChanges } from './stream/index.js';
import { TypeCatalog } from './types/index.js';

export interface PostgresSourceOptions {
  /** Snapshot read path; the default is the measured faster one (see read-partition.ts). */
  readPath?: ReadPath;
}

/**
 * The PostgreSQL source of one pipeline. Connections:
 * - one admin connection (catalog queries, publication, checks, metrics), opened lazily and
 *   replaced when it breaks;
 * - a small pool of reader connections for snapshot partitions and `query`, one per
 *   concurrent `readPartition`;
 * - on a first run, the replication connection that created the slot, kept idle until the
 *   exported snapshot is released;
 * - the stream's own replication connection (stream/).
 */
export class PostgresSource implements Source {
  readonly #connection: PgConnectionConfig;
  readonly #logger: Logger;
  readonly #pipeline: string;
  readonly #slot: string;
  readonly #publication: string;
  readonly #catalog = new TypeCatalog();
  readonly #acknowledger;
  readonly #readPath: ReadPath;
  readonly #reportWaiting: ConnectorContext['reportWaiting'];
  readonly #memory: ConnectorContext['memory'];
  /** Key shapes given to the memory at planning, not yet awaited by a read (see `#rememberKey`). */
  readonly #keyWrites: Promise<void>[] = [];
  /** Settles once every key shape given to the memory at planning so far is written (or failed). */
  #keysWritten: Promise<unknown> = Promise.resolve();
  #admin: Promise<pg.Client> | undefined;
  readonly #idleReaders: pg.Client[] = [];
  /** Exported snapshots found gone (server restarted under them), so each is reported once. */
  readonly #deadSnapshots = new Set<string>();
  readonly #busyReaders = new Set<pg.Client>();
  readonly #brokenReaders = new WeakSet<pg.Client>();
  readonly #tables = new Map<string, PgTable>();
  /** Partitions the role may SELECT from directly, by `tableKey`. */
  readonly #leafSelect = new Map<string, boolean>();
  #releaseSnapshot: (() => Promise<void>) | undefined;
  /** The paused slot's oldest pending commit, by confirmed_flush_lsn (see slot/pending.ts). */
  readonly #pendingCache: PendingCommitCache = {};
  /** Transactions the slot's streams decoded, for the chunk reads' snapshot check (snapshot/visibility.ts). */
  readonly #commits: RecentCommits;
  readonly #refreshCommits = () =>
    this.#withAdmin('reading the running transactions', async (client) =>
      parseSnapshotView((await client.query(SNAPSHOT_VIEW_SQL)).rows[0] ?? {}),
    );
  #closed = false;

  constructor(config: PostgresSourceConfig, context: ConnectorContext, options: PostgresSourceOptions = {}) {
    this.#connection = buildConnectionConfig(config);
    this.#logger = context.logger;
    this.#pipeline = context.pipeline;
    this.#slot = slotNameFor(context.pipeline);
    this.#publication = publicationNameFor(context.pipeline);
    this.#commits = RecentCommits.forSlot(this.#slot);
    this.#commits.refresh = this.#refreshCommits;
    this.#acknowledger = createAcknowledger({ logger: context.logger });
    this.#readPath = options.readPath ?? DEFAULT_READ_PATH;
    this.#reportWaiting = context.reportWaiting;
    this.#memory = context.memory;
  }

  get slotName(): string {
    return this.#slot;
  }

  get publicationName(): string {
    return this.#publication;
  }

  /** Run `fn` on the admin connection; a broken connection is dropped so the next call reconnects. */
  async #withAdmin<T>(doing: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    if (this.#closed)
      throw new NanosyncError(ErrorCode.PipelineStopped, `source of pipeline "${this.#pipeline}" is closed`);
    if (!this.#admin) {
      const connecting = connectClient(this.#connection).then((client) => {
        client.on('error', () => {
          if (this.#admin === connecting) this.#admin = undefined;
        });
        return client;
      });
      this.#admin = connecting;
      connecting.catch(() => {
        if (this.#admin === connecting) this.#admin = undefined;
      });
    }
    const current = this.#admin;
    const client = await current;
    try {
      return await fn(client);
    } catch (err) {
      if (isTransientPgError(err)) {
        if (this.#admin === current) this.#admin = undefined;
        await client.end().catch(() => {});
        throw connectionError(err, this.#connection, doing);
      }
      throw err;
    }
  }

  async check(tables: TableRef[]): Promise<CheckResult[]> {
    try {
      return await this.#withAdmin('checking', (client) =>
        runChecks(client, { tables, slot: this.#slot, publication: this.#publication }),
      );
    } catch (err) {
      const wrapped = connectionError(err, this.#connection, 'connecting');
      return [
        { name: 'connection', ok: false, message: wrapped.message, severity: 'error', retriable: wrapped.retriable },
      ];
    }
  }

  async open(tables: TableRef[], options: OpenOptions): Promise<OpenResult> {
    if (tables.length === 0)
      throw new NanosyncError(ErrorCode.ConfigInvalid, `pipeline "${this.#pipeline}" lists no tables`);
    await this.#describe(tables);
    await this.#withAdmin('checking replica identities', async (client) => {
      const missing = await findMissingIdentity(client, tables);
      if (missing.length > 0)
        throw missingIdentityError(missing, `pipeline "${this.#pipeline}" cannot start; nothing was created`);
    });
    await this.#withAdmin('preparing the publication', async (client) => {
      const outcome = await ensurePublication(client, this.#publication, tables);
      if (outcome !== 'unchanged')
        this.#logger.info(`publication ${outcome}`, { publication: this.#publication, tables: tables.length });
    });

    if (options.existingStartPosition !== undefined) {
      const info = await this.#withAdmin('verifying the replication slot', (client) =>
        verifySlot(client, this.#slot, {
          database: this.#connection.database,
          ...(options.checkpoint !== undefined ? { checkpoint: formatPosition(options.checkpoint) } : {}),
        }),
      );
      this.#logger.info('reusing replication slot', {
        slot: this.#slot,
        wal_status: info.wal_status ?? undefined,
        start: formatPosition(options.existingStartPosition),
      });
      return { startPosition: options.existingStartPosition, watermarks: true };
    }

    // First run: a slot left by an attempt whose start position was never persisted holds
    // nothing anyone depends on; replace it so the new snapshot and slot agree.
    await this.#withAdmin('checking for a leftover slot', async (client) => {
      const leftover = await readSlot(client, this.#slot);
      if (!leftover) return;
      if (leftover.active) {
        throw new NanosyncError(
          PgErrorCode.PgCheck,
          `replication slot "${this.#slot}" is in use by another process (pid ${leftover.active_pid}); is the pipeline running elsewhere?`,
        );
      }
      this.#logger.warn(
        'dropping a replication slot left by an earlier attempt that never recorded its start position',
        { slot: this.#slot },
      );
      await dropSlot(client, this.#slot);
    });

    const created = await createSlot(this.#connection, this.#slot, {
      exportSnapshot: options.wantSnapshot,
      logger: this.#logger,
    });
    const startPosition = encodePosition(created.consistentPoint, 0);
    this.#logger.info('replication slot created', { slot: this.#slot, start: formatPosition(startPosition) });
    // check() refused servers before 14, so logical messages (watermarks) reach pgoutput.
    const watermarks = true;
    if (!created.snapshotName) return { startPosition, watermarks };
    this.#releaseSnapshot = created.release;
    return {
      startPosition,
      watermarks,
      snapshot: {
        token: created.snapshotName,
        release: async () => {
          this.#releaseSnapshot = undefined;
          await created.release();
        },
      },
    };
  }

  /** Prefix of this pipeline's watermark messages: the slot name makes them its own. */
  get watermarkPrefix(): string {
    return `nanosync.watermark.${this.#slot}`;
  }

  /**
   * A non-transactional logical message (`pg_logical_emit_message`), which needs no table
   * and is decoded where it lies in the WAL. It is written inside a transaction that takes
   * an xid only so that its commit flushes the WAL up to the message (PostgreSQL before 17
   * does not flush non-transactional messages), so the stream sees it without waiting for
   * the WAL writer; that transaction changes nothing and pgoutput does not send it.
   * Takes the admin connection for one round trip (one simple query, so no other query
   * can run inside the transaction).
   */
  async writeWatermark(id: string): Promise<void> {
    if (!/^[A-Za-z0-9_.-]{1,100}$/.test(id))
      throw new NanosyncError(ErrorCode.Internal, `watermark id ${JSON.stringify(id.slice(0, 40))} is malformed`);
    await this.#withAdmin('writing a snapshot watermark', async (client) => {
      try {
        await client.query(
          `BEGIN; SELECT pg_catalog.pg_logical_emit_message(false, ${quoteLiteral(this.watermarkPrefix)}, ${quoteLiteral(id)}); SELECT pg_catalog.txid_current(); COMMIT`,
        );
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        if (isTransientPgError(err)) throw err;
        throw watermarkWriteError(err, this.#pipeline, this.#connection);
      }
    });
  }

  async #describe(tables: TableRef[]): Promise<PgTable[]> {
    const described = await this.#withAdmin('reading table definitions', (client) =>
      describeTables(client, tables, this.#catalog, this.#connection.database),
    );
    for (const t of described) this.#tables.set(tableKey(t), t);
    return described;
  }

  async describe(tables: TableRef[]): Promise<TableSchema[]> {
    return (await this.#describe(tables)).map((t) => t.schemaInfo);
  }

  async #table(table: TableRef): Promise<PgTable> {
    return this.#tables.get(tableKey(table)) ?? (await this.#describe([table]))[0]!;
  }

  /**
   * CTID page ranges of the table; for a partitioned table, of each leaf partition (every
   * range names its leaf and is read from it directly, so the leaves are read in parallel
   * and the rows still carry the partitioned table's schema and name).
   */
  async planPartitions(table: TableSchema, options: { targetRowsPerPartition: number }): Promise<PartitionSpec[]> {
    const pgTable = await this.#table(table);
    this.#rememberKey(table, pgTable);
    const targets: { oid: number; schema: string; name: string; leaf?: TableRef }[] =
      pgTable.kind === 'p'
        ? (await this.#withAdmin('listing the partitions', (client) => listLeafPartitions(client, pgTable.oid))).map(
            (leaf) => ({ ...leaf, leaf: { schema: leaf.schema, name: leaf.name } }),
          )
        : [pgTable];
    const partitions: PartitionSpec[] = [];
    for (const target of targets) {
      const size = await this.#withAdmin('estimating the table size', (client) =>
        estimateTableSize(client, { ...target, kind: 'r' }),
      );
      const ranges = planCtidPartitions(size, options.targetRowsPerPartition);
      for (const range of ranges) {
        if (target.leaf === undefined) partitions.push(range);
        else
          partitions.push({
            ...range,
            id: `${target.leaf.schema}.${target.leaf.name}#${range.id}`,
            bounds: { ...(range.bounds as CtidBounds), leaf: target.leaf },
          });
      }
      this.#logger.debug('planned snapshot partitions', {
        table: `${table.schema}.${table.name}`,
        ...(target.leaf ? { partition: `${target.leaf.schema}.${target.leaf.name}` } : {}),
        pages: size.pages,
        rows: size.estimatedRows,
        partitions: ranges.length,
      });
    }
    return partitions;
  }

  /**
   * Give the pipeline's memory the key shape under which the snapshot reads `table`, as the
   * stream would (see change-stream.ts `#noteKeyColumns`), unless it holds one already (a
   * stream saw the table): the first stream then finds a key redefined while the snapshot
   * read the table, or while the pipeline was down before its first stream. Keyless tables
   * are not remembered, as by the stream. Planning runs after the start position is stored,
   * so the entry is under this pipeline's start. Written in the background (a snapshot may
   * plan thousands of tables); every read waits for it (`#keysRemembered`).
   */
  #rememberKey(table: TableSchema, pgTable: PgTable): void {
    const memory = this.#memory;
    if (memory === undefined || table.keyColumns.length === 0) return;
    const entry = keyMemoryEntry(table);
    const columns = pgTable.columns.map((c) => c.name);
    // The stream's view (stream/relations.ts): under REPLICA IDENTITY FULL the primary key in
    // its index's order, else the identity columns in the table's order; the same columns as
    // the snapshot's key, and in the same order they would not count as another key.
    const keys =
      pgTable.replicaIdentity === 'full'
        ? table.keyColumns
        : [...table.keyColumns].sort((a, b) => columns.indexOf(a) - columns.indexOf(b));
    const shape: KeyShape = { keys, columns };
    const write = (async () => {
      if ((await memory.get(entry)) === undefined) await memory.set(entry, JSON.stringify(shape));
    })().catch((error: unknown) => {
      this.#logger.warn(
        'the key columns of a table could not be remembered before its snapshot: a key redefined before the first stream will not be found for it',
        { table: `${table.schema}.${table.name}`, error: (error as Error).message },
      );
    });
    this.#keyWrites.push(write);
  }

  /** Resolves once the key shapes remembered at planning are written: before any row is read. */
  #keysRemembered(): Promise<unknown> {
    if (this.#keyWrites.length > 0) this.#keysWritten = Promise.all([this.#keysWritten, ...this.#keyWrites.splice(0)]);
    return this.#keysWritten;
  }

  async #acquireReader(): Promise<pg.Client> {
    let client = this.#idleReaders.pop();
    while (client && this.#brokenReaders.has(client)) {
      await client.end().catch(() => {});
      client = this.#idleReaders.pop();
    }
    if (!client) {
      const fresh = await connectClient(this.#connection);
      // An idle pooled connection that dies (server restart) must not crash the process.
      fresh.on('error', () => this.#brokenReaders.add(fresh));
      client = fresh;
    }
    this.#busyReaders.add(client);
    return client;
  }

  async #releaseReader(client: pg.Client, reusable: boolean): Promise<void> {
    this.#busyReaders.delete(client);
    if (reusable && !this.#closed && !this.#brokenReaders.has(client)) this.#idleReaders.push(client);
    else await client.end().catch(() => {});
  }

  /** The columns to read: the ones in `table` (core's view), typed from the catalog. */
  async #columnsFor(table: TableSchema): Promise<PgColumn[]> {
    let pgTable = await this.#table(table);
    const byName = () => new Map(pgTable.columns.map((c) => [c.name, c]));
    let known = byName();
    if (table.columns.some((c) => !known.has(c.name))) {
      pgTable = (await this.#describe([table]))[0]!;
      known = byName();
    }
    return table.columns.map((c) => {
      const column = known.get(c.name);
      if (!column) {
        throw new NanosyncError(
          PgErrorCode.PgCheck,
          `column "${c.name}" of table ${quoteTable(table)} no longer exists; re-snapshot the pipeline`,
        );
      }
      return column;
    });
  }

  async *readPartition(
    table: TableSchema,
    partition: PartitionSpec,
    options: ReadPartitionOptions,
  ): AsyncIterable<Row[]> {
    if (!isCtidBounds(partition.bounds)) {
      throw new NanosyncError(
        ErrorCode.StateCorrupt,
        `partition ${partition.id} of ${quoteTable(table)} has bounds ${JSON.stringify(partition.bounds)}, not a CTID page range`,
      );
    }
    await this.#keysRemembered();
    const columns = await this.#columnsFor(table);
    const leaf = partition.bounds.leaf;
    if (leaf !== undefined && options.snapshotToken === undefined && !(await this.#stillPartitionOf(leaf, table))) {
      this.#logger.info(
        'partition detached or dropped since the snapshot was planned; its rows are no longer part of the table',
        {
          table: `${table.schema}.${table.name}`,
          partition: `${leaf.schema}.${leaf.name}`,
        },
      );
      return;
    }
    const client = await this.#acquireReader();
    const state = { clientReusable: false };
    try {
      yield* readCtidPartition(
        {
          client,
          table: leaf ?? table,
          ...(leaf !== undefined && !(await this.#maySelect(leaf)) ? { through: table } : {}),
          columns,
          keyColumns: table.keyColumns,
          bounds: partition.bounds,
          maxRowsPerChunk: options.maxRowsPerChunk,
          signal: options.signal,
          path: this.#readPath,
          logger: this.#logger,
          deadSnapshots: this.#deadSnapshots,
          ...(options.snapshotToken !== undefined ? { snapshotToken: options.snapshotToken } : {}),
        },
        state,
      );
    } catch (err) {
      if (err instanceof NanosyncError) throw err;
      if ((err as { code?: string }).code === '42P01') throw tableNotFound(table, this.#connection.database);
      if (options.signal.aborted) throw err;
      throw connectionError(err, this.#connection, `reading partition ${partition.id} of ${quoteTable(table)}`);
    } finally {
      await this.#releaseReader(client, state.clientReusable);
    }
  }

  async readPartitionChunk(
    table: TableSchema,
    partition: PartitionSpec,
    options: ReadPartitionChunkOptions,
  ): Promise<PartitionChunk> {
    if (!isCtidBounds(partition.bounds)) {
      throw new NanosyncError(
        ErrorCode.StateCorrupt,
        `partition ${partition.id} of ${quoteTable(table)} has bounds ${JSON.stringify(partition.bounds)}, not a CTID page range`,
      );
    }
    for (const cursor of [options.after, options.upTo?.next])
      if (cursor !== undefined && !isChunkCursor(cursor))
        throw new NanosyncError(ErrorCode.StateCorrupt, `malformed snapshot chunk cursor ${JSON.stringify(cursor)}`);
    await this.#keysRemembered();
    const columns = await this.#columnsFor(table);
    const leaf = partition.bounds.leaf;
    if (
      leaf !== undefined &&
      options.after === undefined &&
      options.snapshotToken === undefined &&
      !(await this.#stillPartitionOf(leaf, table))
    ) {
      this.#logger.info(
        'partition detached or dropped since the snapshot was planned; its rows are no longer part of the table',
        { table: `${table.schema}.${table.name}`, partition: `${leaf.schema}.${leaf.name}` },
      );
      return {
        rows: [],
        bytes: 0,
        next: undefined,
        ...(options.raw
          ? { raw: { bytes: new ArrayBuffer(0), rows: 0, ...(options.rawKeys ? { keys: [] } : {}) } }
          : {}),
      };
    }
    const client = await this.#acquireReader();
    const state = { clientReusable: false };
    try {
      const read = {
        client,
        table: leaf ?? table,
        ...(leaf !== undefined && !(await this.#maySelect(leaf)) ? { through: table } : {}),
        columns,
        keyColumns: table.keyColumns,
        bounds: partition.bounds,
        after: options.after as CtidChunkCursor | undefined,
        maxRows: options.maxRows,
        maxBytes: options.maxBytes,
        ...(options.upTo !== undefined ? { upTo: { next: options.upTo.next as CtidChunkCursor | undefined } } : {}),
        ...(options.snapshotToken !== undefined
          ? {
              begin: (c: pg.Client) =>
                beginSnapshotRead(c, {
                  table: leaf ?? table,
                  snapshotToken: options.snapshotToken,
                  deadSnapshots: this.#deadSnapshots,
                  logger: this.#logger,
                }),
            }
          : {}),
        signal: options.signal,
        commits: this.#commits,
        logger: this.#logger,
      };
      if (!options.raw) return await readCtidChunk(read, state);
      const chunk = await readCtidRaw({ ...read, columnNames: columns.map((c) => c.name) }, state);
      const raw: RawRows = { bytes: chunk.raw, rows: chunk.rows };
      if (options.rawKeys) raw.keys = rawRowKeys(new Uint8Array(chunk.raw), table, columns);
      return { rows: [], bytes: chunk.bytes, next: chunk.next, raw };
    } catch (err) {
      if (err instanceof NanosyncError) throw err;
      if ((err as { code?: string }).code === '42P01') throw tableNotFound(table, this.#connection.database);
      if (options.signal.aborted) throw err;
      throw connectionError(err, this.#connection, `reading partition ${partition.id} of ${quoteTable(table)}`);
    } finally {
      await this.#releaseReader(client, state.clientReusable);
    }
  }

  /**
   * What a worker needs to decode raw chunks of `table` (`@nanosync/source-postgres/worker`):
   * the catalog details of its columns, the ones a raw read of it selects, in that order.
   */
  async decoderSetup(table: TableSchema): Promise<RawDecoderSetup> {
    return { columns: await this.#columnsFor(table) };
  }

  /** Whether the role may SELECT from a partition directly (else it is read through its partitioned table). */
  async #maySelect(leaf: TableRef): Promise<boolean> {
    const key = tableKey(leaf);
    let may = this.#leafSelect.get(key);
    if (may === undefined) {
      may = await this.#withAdmin('checking privileges', async (client) => {
        const { rows } = await client.query(
          `SELECT has_table_privilege(c.oid, 'SELECT')::text AS may
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2`,
          [leaf.schema, leaf.name],
        );
        return rows[0]?.may === 'true';
      });
      this.#leafSelect.set(key, may);
    }
    return may;
  }

  /** Whether `leaf` is (still) a partition somewhere under `table`. */
  async #stillPartitionOf(leaf: TableRef, table: TableRef): Promise<boolean> {
    const pgTable = await this.#table(table);
    return this.#withAdmin('checking a partition', async (client) => {
      const leaves = await listLeafPartitions(client, pgTable.oid);
      return leaves.some((l) => l.schema === leaf.schema && l.name === leaf.name);
    });
  }

  stream(
    from: Position,
    options: { signal: AbortSignal; tables: TableRef[]; chunk?: { rows: number; bytes: number }; raw?: boolean },
  ): AsyncIterable<ChangeBatch> {
    return streamChanges({
      ...(options.raw === true ? { raw: true } : {}),
      connection: this.#connection,
      slot: this.#slot,
      publication: this.#publication,
      from,
      signal: options.signal,
      logger: this.#logger,
      tables: options.tables,
      acknowledger: this.#acknowledger,
      commits: this.#commits,
      watermarkPrefix: this.watermarkPrefix,
      ...(options.chunk ? { chunk: options.chunk } : {}),
      ...(this.#reportWaiting ? { reportWaiting: this.#reportWaiting } : {}),
      ...(this.#memory ? { memory: this.#memory } : {}),
    });
  }

  acknowledge(position: Position): Promise<void> {
    return this.#acknowledger.acknowledge(position);
  }

  comparePositions(a: Position, b: Position): number {
    return comparePositions(a, b);
  }

  formatPosition(position: Position): string {
    return formatPosition(position);
  }

  /**
   * A `query` pipeline's SQL, through a cursor in a READ ONLY transaction; values decoded
   * like snapshot rows (result column types resolved through the catalog).
   */
  async *query(sql: string, options: { signal: AbortSignal; maxRowsPerChunk: number }): AsyncIterable<Row[]> {
    const client = await this.#acquireReader();
    let reusable = false;
    const maxRows = Math.max(1, Math.floor(options.maxRowsPerChunk));
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(`DECLARE nanosync_query NO SCROLL CURSOR FOR ${sql.trim().replace(/;\s*$/, '')}`);
      let decode: ((fields: (string | null)[]) => Row) | undefined;
      for (;;) {
        options.signal.throwIfAborted();
        const result = await client.query({ text: `FETCH FORWARD ${maxRows} FROM nanosync_query`, rowMode: 'array' });
        if (!decode) {
          await this.#catalog.resolve(
            client,
            result.fields.map((f) => f.dataTypeID),
          );
          const columns: PgColumn[] = result.fields.map((f) => ({
            name: f.name,
            type: this.#catalog.get(f.dataTypeID),
            typmod: f.dataTypeModifier,
            notNull: false,
          }));
          decode = rowDecoder({ table: { schema: 'query', name: this.#pipeline }, columns, keyColumns: [] });
        }
        const rows = result.rows as unknown as (string | null)[][];
        if (rows.length > 0) yield rows.map(decode);
        if (rows.length < maxRows) break;
      }
      await client.query('COMMIT');
      reusable = true;
    } catch (err) {
      if (err instanceof NanosyncError || options.signal.aborted) throw err;
      throw new NanosyncError(
        PgErrorCode.PgCheck,
        `query of pipeline "${this.#pipeline}" failed: ${(err as Error).message}`,
        {
          cause: err,
          retriable: isTransientPgError(err),
        },
      );
    } finally {
      if (!reusable) {
        try {
          await client.query('ROLLBACK');
          reusable = true;
        } catch {
          // connection unusable: released below as broken
        }
      }
      await this.#releaseReader(client, reusable);
    }
  }

  /**
   * Retained WAL = head − restart_lsn (what the server keeps for this slot); safe bytes =
   * `safe_wal_size` (null when max_slot_wal_keep_size is unlimited).
   */
  async metrics(options: SourceMetricsOptions = {}): Promise<SourceMetrics> {
    return this.#withAdmin('reading slot metrics', async (client) => {
      const { rows } = await client.query(
        `SELECT pg_catalog.pg_current_wal_lsn()::text AS head, s.active::text AS active,
                s.restart_lsn::text AS restart_lsn, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
                s.safe_wal_size::text AS safe_wal_size,
                pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::text AS retained
           FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`,
        [this.#slot],
      );
      const row = rows[0] ?? {};
      const metrics: SourceMetrics = { headPosition: encodePosition(parseLsn(String(row.head)), 0) };
      if (row.retained !== null && row.retained !== undefined) metrics.retainedBytes = Number(row.retained);
      if (row.restart_lsn !== null && row.restart_lsn !== undefined)
        metrics.safeBytes = row.safe_wal_size === null ? null : Number(row.safe_wal_size);
      if (row.confirmed_flush_lsn !== null && row.confirmed_flush_lsn !== undefined) {
        metrics.confirmedPosition = encodePosition(parseLsn(String(row.confirmed_flush_lsn)), 0);
      }
      // Paused pipeline: the slot is idle, so it can be peeked for the oldest change it holds.
      if (options.pending && row.active === 'false') {
        const oldest = await oldestPendingCommit(client, this.#slot, this.#publication, {
          ...(this.#tables.size > 0 ? { tables: new Set(this.#tables.keys()) } : {}),
          ...(row.confirmed_flush_lsn !== null && row.confirmed_flush_lsn !== undefined
            ? { confirmedFlush: String(row.confirmed_flush_lsn), cache: this.#pendingCache }
            : {}),
        });
        if (oldest !== undefined) metrics.oldestPendingCommitAt = oldest;
      }
      return metrics;
    });
  }

  async drop(): Promise<void> {
    await this.#releaseSnapshot?.();
    await this.#withAdmin('dropping the slot and publication', async (client) => {
      const dropped = await dropSlot(client, this.#slot);
      RecentCommits.dropSlot(this.#slot);
      await dropPublication(client, this.#publication);
      this.#logger.info('dropped replication slot and publication', {
        slot: this.#slot,
        slotExisted: dropped,
        publication: this.#publication,
      });
    });
  }

  /** `drop()` by hand: what an operator runs on the source database when nanosync could not. */
  manualDropSteps(): string[] {
    const { host, port, database } = this.#connection;
    const slot = this.#slot.replace(/'/g, "''");
    return [
      `-- on database ${quoteIdent(database)} at ${host}:${port}, as a superuser or the replication role:`,
      `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '${slot}' AND active_pid IS NOT NULL;`,
      `SELECT pg_drop_replication_slot('${slot}') FROM pg_replication_slots WHERE slot_name = '${slot}';`,
      `DROP PUBLICATION IF EXISTS ${quoteIdent(this.#publication)};`,
    ];
  }

  /**
   * A first start failed: drop the slot, and the publication only when nanosync created it
   * (an owner-prepared one stays, as found).
   */
  async abandon(): Promise<void> {
    await this.#releaseSnapshot?.();
    await this.#withAdmin('removing what the failed start created', async (client) => {
      const slotDropped = await dropSlot(client, this.#slot);
      RecentCommits.dropSlot(this.#slot);
      const publicationDropped = await dropOwnPublication(client, this.#publication);
      if (slotDropped || publicationDropped)
        this.#logger.info('removed what the failed first start created', {
          slot: slotDropped ? this.#slot : undefined,
          publication: publicationDropped ? this.#publication : undefined,
        });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#commits.refresh === this.#refreshCommits) this.#commits.refresh = undefined;
    await this.#releaseSnapshot?.();
    this.#releaseSnapshot = undefined;
    const admin = this.#admin;
    this.#admin = undefined;
    const clients = [...this.#idleReaders.splice(0), ...this.#busyReaders];
    this.#busyReaders.clear();
    await Promise.all([admin?.then((c) => c.end()).catch(() => {}), ...clients.map((c) => c.end().catch(() => {}))]);
  }
}

/**
 * A watermark that could not be written: names the server and the SQLSTATE; the GRANT is
 * advised only when the server said the privilege is missing (42501).
 */
export function watermarkWriteError(
  err: unknown,
  pipeline: string,
  target: { host?: string; port?: number; database?: string; user?: string },
): NanosyncError {
  const code = sqlState(err);
  const denied = code === '42501';
  const role = target.user !== undefined ? quoteIdent(target.user) : '<role>';
  return new NanosyncError(
    denied ? PgErrorCode.PgPermission : PgErrorCode.PgCheck,
    `pipeline "${pipeline}" could not write a snapshot watermark with pg_logical_emit_message on ${describeEndpoint(target)}: ${redact((err as Error).message ?? String(err))}${code !== undefined ? ` (SQLSTATE ${code})` : ''}` +
      (denied
        ? `; grant it (GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) TO ${role};), or set snapshot.mode: blocking`
        : ''),
    { cause: err },
  );
}

function tableKey(t: { schema: string; name: string }): string {
  return `${t.schema}\u0000${t.name}`;
}
