import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeBatch, ChangeEvent, ConnectorMemory, Position, TableRef } from '@nanosync/core';
import { createConnectorMemory, openSqliteStateStore } from '@nanosync/core/host';
import type { PostgresService } from '@nanosync/testcontainers';
import pg from 'pg';
import { configSchema } from '../../src/config.js';
import { buildConnectionConfig, type PgConnectionConfig } from '../../src/connection.js';
import { comparePositions, encodePosition, parseLsn } from '../../src/position.js';
import { publicationNameFor, slotNameFor } from '../../src/slot/names.js';
import { createSlot } from '../../src/slot/replication-slot.js';
import {
  type Acknowledger,
  createAcknowledger,
  type StreamChangesOptions,
  streamChanges,
} from '../../src/stream/index.js';
import { memoryLogger, type PgFixture, pgFixture, quoteIdent, uniqueName } from './fixture.js';

export interface StreamPipeline {
  fx: PgFixture;
  pipeline: string;
  slot: string;
  publication: string;
  /** Connection of the least-privilege role (LOGIN REPLICATION, SELECT, publication owner). */
  connection: PgConnectionConfig;
  startPosition: Position;
  logLines: string[];
  /**
   * The pipeline's memory as core gives it (over a SQLite state store of the test's own),
   * shared by every stream `open` starts, as by the processes of one pipeline.
   */
  memory: ConnectorMemory;
  /** streamChanges with this pipeline's settings; overrides merged in. */
  open(from: Position, overrides?: Partial<StreamChangesOptions>): ConsumedStream;
  confirmedFlushLsn(): Promise<bigint>;
  walsenderPid(): Promise<number | undefined>;
}

/**
 * A fresh database with `ddl` applied, the tables readable by the least-privilege role, the
 * publication owned by that role, and the slot created by the role through the replication
 * protocol (src/slot/). Streams consume as the role.
 */
export async function streamPipeline(options: {
  ddl: string[];
  tables: TableRef[];
  service?: PostgresService;
  /**
   * As on a busy server: a transaction that began before the DDL is still running when the
   * slot is created (it commits while the slot waits for it), so the slot's catalog_xmin
   * is older than every catalog row the DDL wrote.
   */
  oldTransaction?: boolean;
}): Promise<StreamPipeline & AsyncDisposable> {
  const fx = await pgFixture(options.service ? { service: options.service } : {});
  const streams: ConsumedStream[] = [];
  let old: pg.Client | undefined;
  try {
    if (options.oldTransaction) {
      old = new pg.Client({ connectionString: fx.adminUrl });
      await old.connect();
      await old.query('BEGIN');
      await old.query('SELECT pg_catalog.txid_current()');
    }
    for (const statement of options.ddl) await fx.admin.query(statement);
    await fx.grantRead(options.tables);
    const pipeline = uniqueName('stream');
    await fx.preparePublication(pipeline, options.tables);
    const parsed = configSchema.safeParse(fx.roleProperties());
    if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
    const connection = buildConnectionConfig(parsed.data);
    const slot = slotNameFor(pipeline);
    const logLines: string[] = [];
    const creating = createSlot(connection, slot, { exportSnapshot: false, logger: memoryLogger(logLines) });
    if (old) {
      // The slot waits for the old transaction to end before it is consistent.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await old.query('COMMIT');
    }
    const created = await creating;
    const startPosition = encodePosition(created.consistentPoint, 0);
    const stateDir = await mkdtemp(join(tmpdir(), 'ns-stream-state-'));
    const store = await openSqliteStateStore(join(stateDir, 'state.db'));
    const memory = createConnectorMemory({ store, pipeline, role: 'source', scope: async () => startPosition });
    const self: StreamPipeline & AsyncDisposable = {
      fx,
      pipeline,
      slot,
      publication: publicationNameFor(pipeline),
      connection,
      startPosition,
      logLines,
      memory,
      open(from, overrides = {}) {
        const stream = new ConsumedStream({
          connection,
          slot,
          publication: publicationNameFor(pipeline),
          from,
          logger: memoryLogger(logLines),
          tables: options.tables,
          acknowledger: createAcknowledger(),
          reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
          memory,
          ...overrides,
        });
        streams.push(stream);
        return stream;
      },
      async confirmedFlushLsn() {
        const { rows } = await fx.admin.query(
          'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        return parseLsn(String(rows[0]?.lsn));
      },
      async walsenderPid() {
        const { rows } = await fx.admin.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [
          slot,
        ]);
        const pid = rows[0]?.active_pid;
        return pid === null || pid === undefined ? undefined : Number(pid);
      },
      async [Symbol.asyncDispose]() {
        await Promise.allSettled(streams.map((s) => s.stop()));
        await store.close().catch(() => {});
        await rm(stateDir, { recursive: true, force: true });
        await fx[Symbol.asyncDispose]();
      },
    };
    return self;
  } catch (error) {
    await fx[Symbol.asyncDispose]();
    throw error;
  } finally {
    await old?.end().catch(() => {});
  }
}

/**
 * Runs a stream in the background like core would: keeps every batch, and (unless told
 * otherwise) acknowledges each safePosition once the batch is "durable" (right away).
 */
export class ConsumedStream {
  readonly batches: ChangeBatch[] = [];
  readonly events: ChangeEvent[] = [];
  readonly acknowledger: Acknowledger;
  error: unknown;
  done = false;
  autoAcknowledge = true;
  /** Called for every batch before it is recorded; may be slow (backpressure tests). */
  onBatch: ((batch: ChangeBatch) => Promise<void> | void) | undefined;
  /** When false, batches are counted but not kept (large transactions). */
  keep = true;
  eventCount = 0;
  readonly #controller = new AbortController();
  readonly #finished: Promise<void>;

  constructor(options: Omit<StreamChangesOptions, 'signal'> & { acknowledger: Acknowledger }) {
    const acknowledger = options.acknowledger;
    this.acknowledger = acknowledger;
    const stream = streamChanges({ ...options, signal: this.#controller.signal });
    this.#finished = (async () => {
      try {
        for await (const batch of stream) {
          if (this.onBatch) await this.onBatch(batch);
          this.eventCount += batch.events.length;
          if (this.keep) {
            this.batches.push(batch);
            this.events.push(...batch.events);
          } else if (batch.safePosition !== undefined) {
            this.batches.push({ events: [], safePosition: batch.safePosition });
          }
          if (this.autoAcknowledge && batch.safePosition !== undefined)
            await acknowledger.acknowledge(batch.safePosition);
        }
      } catch (error) {
        this.error = error;
      } finally {
        this.done = true;
      }
    })();
  }

  /** The last safePosition received. */
  get lastSafePosition(): Position | undefined {
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const position = this.batches[i]?.safePosition;
      if (position !== undefined) return position;
    }
    return undefined;
  }

  async waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (this.error) throw this.error;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (events so far: ${this.eventCount})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    this.#controller.abort();
    await this.#finished;
  }

  async finished(): Promise<void> {
    await this.#finished;
  }
}

/**
 * The ChangeBatch contract as a consumer sees it: event positions strictly increase across
 * batches, and every safePosition is at or after every event delivered before it and after
 * the previous safePosition.
 */
export function expectOrderedBatches(batches: ChangeBatch[]): void {
  let last: Position | undefined;
  let lastSafe: Position | undefined;
  for (const batch of batches) {
    for (const event of batch.events) {
      if (last !== undefined && comparePositions(event.position, last) <= 0)
        throw new Error(`position ${event.position} after ${last}`);
      last = event.position;
    }
    if (batch.safePosition !== undefined) {
      if (last !== undefined && comparePositions(batch.safePosition, last) < 0)
        throw new Error(`safePosition ${batch.safePosition} before event ${last}`);
      if (lastSafe !== undefined && comparePositions(batch.safePosition, lastSafe) <= 0)
        throw new Error(`safePosition ${batch.safePosition} after ${lastSafe}`);
      lastSafe = batch.safePosition;
      last = last === undefined || comparePositions(batch.safePosition, last) > 0 ? batch.safePosition : last;
    }
  }
}

export function ids(events: ChangeEvent[]): number[] {
  return events.map((e) => Number((e.after ?? e.before)?.id));
}

export async function terminateWalsender(admin: pg.Client, slot: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await admin.query(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
      [slot],
    );
    const pid = rows[0]?.active_pid;
    if (pid) {
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      return Number(pid);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no walsender for slot ${slot}`);
}

export { quoteIdent };
