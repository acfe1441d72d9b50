import type {
  ChangeEvent,
  OpenResult,
  PartitionSpec,
  Position,
  Row,
  Source,
  TableRef,
  TableSchema,
} from '@nanosync/core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { type KitRow, kitRow, seedRows, sortById, uniquePipelineName, uniqueTableName } from './kit-table.js';
import { compareWithSnapshot, keyId, type OracleRecord, reduceByKey } from './oracle.js';
import { suite } from './skip.js';
import { describeEvents, StreamReader } from './stream-reader.js';

/** One change the kit asks the driver to make. Several make one transaction. */
export type DriverChange =
  | { op: 'insert'; table: TableRef; row: KitRow }
  | { op: 'update'; table: TableRef; key: { id: number }; set: Partial<Omit<KitRow, 'id'>> }
  | { op: 'delete'; table: TableRef; key: { id: number } }
  | { op: 'truncate'; table: TableRef };

/**
 * How the kit changes the source database. It is the only thing a source author writes
 * besides the factory: a few statements in the source's own dialect.
 */
export interface SourceTestDriver {
  /** Create an empty kit table (see {@link KitRow}: `id` int32 primary key, `note` text, `qty` int32) ready for capture. */
  createTable(table: TableRef): Promise<void>;
  /**
   * Apply `changes` in order as ONE transaction, committed before the promise resolves.
   * `update` sets only the columns in `set`. `truncate` is only asked for when the
   * suite's `truncate` option is on.
   */
  transaction(changes: DriverChange[]): Promise<void>;
  /** The table's current rows, any order (values are compared after {@link kitRow}). */
  rows(table: TableRef): Promise<Record<string, unknown>[]>;
}

/** What the factory returns once per suite (before the first test). */
export interface SourceTestHarness {
  driver: SourceTestDriver;
  /** The schema (namespace) the kit creates its tables in: `public`, `dbo`, … */
  schema: string;
  /**
   * A new running source for `pipeline`, as core would create it from a validated config.
   * Called again with the same name to simulate a restart: the new instance must find
   * what the earlier one created (slot, capture instance). `tables` exist when this is
   * called (grant or publish them here if the connector's role needs it). The kit closes
   * every source it gets.
   */
  createSource(pipeline: string, tables: TableRef[]): Promise<Source>;
  /**
   * Simulate a crash of a running source: by default `close()` without acknowledging
   * anything more. A connector with server-side sessions may kill them instead.
   */
  crash?(source: Source): Promise<void>;
  /** Called after the last test. */
  dispose?(): PromiseLike<void> | void;
}

export interface SourceSuiteOptions {
  /** The connector's name in test titles (`postgres`). */
  name: string;
  /**
   * Register every test as skipped, with this reason in the title — e.g.
   * `'needs SQL Server: Docker or NANOSYNC_TEST_MSSQL_URL'`. The factory is never called.
   */
  skip?: string | false | undefined;
  /** `open()` exports a snapshot on the first run (PostgreSQL does): the kit then insists on it. */
  exportsSnapshot: boolean;
  /** The source captures TRUNCATE and streams a `truncate` event. */
  truncate: boolean;
  /** Rows seeded for the partition tests (default 2000). */
  partitionRows?: number;
  /** `targetRowsPerPartition` for planning (default 200). */
  targetRowsPerPartition?: number;
  /** The plan of `partitionRows` rows must have at least this many partitions (default 2). */
  minPartitions?: number;
  /** How long a stream may stay silent before a wait fails (default 60 s). A guard, not an assertion. */
  streamWaitMs?: number;
}

interface ExpectedEvent {
  op: ChangeEvent['op'];
  table: string;
  id?: number;
  after?: KitRow;
  /** Index of the transaction in the test (for boundary checks). */
  txn: number;
}

const qualified = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

/**
 * Register the source conformance suite: the handoff rules of the connector contract
 * (packages/core/src/contract/connector.ts), partition planning, concurrency, resume,
 * drop and check. Call it at the top level of a vitest test file.
 */
export function registerSourceTests(factory: () => Promise<SourceTestHarness>, options: SourceSuiteOptions): void {
  const waitMs = options.streamWaitMs ?? 60_000;
  suite(`${options.name} source conformance (@nanosync/connector-testkit)`, options.skip, () => {
    let harness: SourceTestHarness;
    /** Sources made during the current test, newest last per pipeline. */
    let made: { pipeline: string; source: Source; closed: boolean }[] = [];
    let readers: StreamReader[] = [];

    beforeAll(async () => {
      harness = await factory();
    });
    afterAll(async () => {
      await harness?.dispose?.();
    });
    afterEach(async () => {
      await Promise.allSettled(readers.map((r) => r.close()));
      const newest = new Map<string, (typeof made)[number]>();
      for (const entry of made) newest.set(entry.pipeline, entry);
      const older = made.filter((entry) => newest.get(entry.pipeline) !== entry && !entry.closed);
      await Promise.allSettled(older.map((entry) => entry.source.close()));
      for (const entry of newest.values()) {
        await entry.source.drop().catch(() => undefined);
        if (!entry.closed) await entry.source.close().catch(() => undefined);
      }
      made = [];
      readers = [];
    });

    const createSource = async (pipeline: string, tables: TableRef[]) => {
      const source = await harness.createSource(pipeline, tables);
      made.push({ pipeline, source, closed: false });
      return source;
    };
    const closeSource = async (source: Source, how: 'close' | 'crash') => {
      const entry = made.find((m) => m.source === source);
      if (entry) entry.closed = true;
      if (how === 'crash' && harness.crash) await harness.crash(source);
      else await source.close();
    };
    const newTable = async (label: string): Promise<TableRef> => {
      const table = { schema: harness.schema, name: uniqueTableName(label) };
      await harness.driver.createTable(table);
      return table;
    };
    const stream = (source: Source, from: Position, tables: TableRef[]) => {
      const reader = new StreamReader(source, from, tables, waitMs);
      readers.push(reader);
      return reader;
    };
    const currentRows = async (table: TableRef) => sortById((await harness.driver.rows(table)).map(kitRow));
    const seed = async (table: TableRef, rows: KitRow[]) => {
      for (let i = 0; i < rows.length; i += 1000)
        await harness.driver.transaction(rows.slice(i, i + 1000).map((row) => ({ op: 'insert', table, row })));
    };

    /** Commit `txns` one transaction each; returns the events the stream must yield for them. */
    let txnCounter = 0;
    const commit = async (txns: DriverChange[][]): Promise<ExpectedEvent[]> => {
      const expected: ExpectedEvent[] = [];
      for (const changes of txns) {
        const txn = txnCounter++;
        await harness.driver.transaction(changes);
        expected.push(...(await expectedEvents(changes, txn)));
      }
      return expected;
    };
    /** The events a transaction yields; update images are taken from the source after commit. */
    const expectedEvents = async (changes: DriverChange[], txn: number): Promise<ExpectedEvent[]> => {
      const state = new Map<string, Map<number, KitRow>>();
      const out: ExpectedEvent[] = [];
      for (const change of changes) {
        const table = qualified(change.table);
        let rows = state.get(table);
        if (!rows) {
          rows = new Map();
          state.set(table, rows);
        }
        if (change.op === 'truncate') {
          rows.clear();
          out.push({ op: 'truncate', table, txn });
        } else if (change.op === 'insert') {
          rows.set(change.row.id, change.row);
          out.push({ op: 'insert', table, id: change.row.id, after: change.row, txn });
        } else if (change.op === 'delete') {
          out.push({ op: 'delete', table, id: change.key.id, txn });
        } else {
          out.push({
            op: 'update',
            table,
            id: change.key.id,
            txn,
            after: { id: change.key.id, ...change.set } as KitRow,
          });
        }
      }
      return out;
    };

    /** The stream's events must be exactly `expected` (op, table, key, and the columns the change set). */
    const expectEvents = (events: ChangeEvent[], expected: ExpectedEvent[], context: string) => {
      const got = events.map((e) => {
        const base = { op: e.op, table: qualified(e.table) } as Record<string, unknown>;
        if (e.op !== 'truncate') base.id = Number(e.key.id);
        return base;
      });
      const want = expected.map((e) => ({ op: e.op, table: e.table, ...(e.id !== undefined ? { id: e.id } : {}) }));
      expect(got, `${context}: events (op, table, key) — got ${describeEvents(events)}`).toEqual(want);
      expected.forEach((e, i) => {
        const event = events[i]!;
        if (e.after) {
          expect(event.after, `${context}: event ${i} (${e.op} #${e.id}) has no after image`).toBeDefined();
          const after = kitRow(event.after!);
          for (const column of Object.keys(e.after) as (keyof KitRow)[])
            expect(after[column], `${context}: event ${i} (${e.op} #${e.id}) column ${column}`).toEqual(
              e.after[column],
            );
        }
        if (e.op === 'truncate') {
          expect(event.key, `${context}: a truncate event has an empty key`).toEqual({});
          expect(event.after, `${context}: a truncate event has no after image`).toBeUndefined();
        }
      });
    };

    const expectStrictlyIncreasing = (source: Source, from: Position, events: ChangeEvent[], context: string) => {
      let previous = from;
      for (const [i, event] of events.entries()) {
        const order = source.comparePositions(previous, event.position);
        if (order >= 0)
          throw new Error(
            `${context}: event ${i} (${event.op}) at ${source.formatPosition(event.position)} is not after ${i === 0 ? 'the stream start' : 'the event before it'} ${source.formatPosition(previous)}`,
          );
        previous = event.position;
      }
    };

    /** Every row of every partition, read as core reads them (bounds through JSON, as persisted). */
    const readPartitions = async (
      source: Source,
      schema: TableSchema,
      plan: PartitionSpec[],
      token: string | undefined,
      concurrently: boolean,
    ): Promise<Row[][]> => {
      const readOne = async (partition: PartitionSpec) => {
        const persisted = JSON.parse(JSON.stringify(partition)) as PartitionSpec;
        const rows: Row[] = [];
        for await (const chunk of source.readPartition(schema, persisted, {
          maxRowsPerChunk: 97,
          signal: new AbortController().signal,
          ...(token ? { snapshotToken: token } : {}),
        })) {
          expect(
            chunk.length,
            `partition ${partition.id}: a chunk holds at most maxRowsPerChunk rows`,
          ).toBeLessThanOrEqual(97);
          rows.push(...chunk);
        }
        return rows;
      };
      if (concurrently) return Promise.all(plan.map(readOne));
      const out: Row[][] = [];
      for (const partition of plan) out.push(await readOne(partition));
      return out;
    };

    /**
     * At every batch with a `safePosition`, the events delivered so far are whole
     * transactions; the safe position is not before them and is before every later event.
     */
    const expectBoundaries = (source: Source, reader: StreamReader, expected: ExpectedEvent[]) => {
      const txnSize = new Map<number, number>();
      for (const e of expected) txnSize.set(e.txn, (txnSize.get(e.txn) ?? 0) + 1);
      let delivered = 0;
      for (const [b, batch] of reader.batches.entries()) {
        delivered += batch.events.length;
        if (batch.safePosition === undefined) continue;
        const seen = new Map<number, number>();
        for (const e of expected.slice(0, delivered)) seen.set(e.txn, (seen.get(e.txn) ?? 0) + 1);
        for (const [txn, count] of seen) {
          if (count !== txnSize.get(txn))
            throw new Error(
              `batch ${b} carries safePosition ${source.formatPosition(batch.safePosition)} after ${count} of the ${txnSize.get(txn)} changes of one transaction: safePosition must only be set at a transaction boundary`,
            );
        }
        const lastEvent = reader.events[delivered - 1];
        if (lastEvent)
          expect(
            source.comparePositions(batch.safePosition, lastEvent.position),
            `batch ${b}: safePosition is not before the events it covers`,
          ).toBeGreaterThanOrEqual(0);
        const nextEvent = reader.events[delivered];
        if (nextEvent)
          expect(
            source.comparePositions(batch.safePosition, nextEvent.position),
            `batch ${b}: safePosition is before every later event`,
          ).toBeLessThan(0);
      }
    };

    const openFirst = async (source: Source, tables: TableRef[], wantSnapshot = true): Promise<OpenResult> => {
      const opened = await source.open(tables, { wantSnapshot });
      if (options.exportsSnapshot && wantSnapshot)
        expect(opened.snapshot, 'first open() of a source that exports snapshots returns one').toBeDefined();
      return opened;
    };

    it('describe() names the key and the columns; a missing table is refused by name', async () => {
      const table = await newTable('describe');
      const source = await createSource(uniquePipelineName('describe'), [table]);
      const [schema] = await source.describe([table]);
      expect(schema, 'describe() returns one schema per table').toBeDefined();
      expect(schema!.schema).toBe(table.schema);
      expect(schema!.name).toBe(table.name);
      expect(schema!.keyColumns).toEqual(['id']);
      const kinds = Object.fromEntries(schema!.columns.map((c) => [c.name, c.type.kind]));
      expect(kinds).toMatchObject({ id: 'int32', note: 'string', qty: 'int32' });
      const missing = { schema: harness.schema, name: uniqueTableName('missing') };
      await expect(source.describe([missing]), 'describe() of a missing table names it').rejects.toThrow(missing.name);
    });

    it('check() passes on a ready table and fails naming a missing one', async () => {
      const table = await newTable('check');
      const source = await createSource(uniquePipelineName('check'), [table]);
      const good = await source.check([table]);
      const failing = good.filter((r) => !r.ok && r.severity !== 'warning');
      expect(failing, `check() on a ready table: ${JSON.stringify(failing)}`).toEqual([]);
      const missing = { schema: harness.schema, name: uniqueTableName('missing') };
      const bad = await source.check([table, missing]);
      const named = bad.filter((r) => !r.ok && `${r.name} ${r.message}`.includes(missing.name));
      expect(named.length, `check() names the missing table ${missing.name}: ${JSON.stringify(bad)}`).toBeGreaterThan(
        0,
      );
      for (const result of bad) {
        expect(typeof result.name, 'every check result has a name').toBe('string');
        expect(result.message.length, `check result ${result.name} has a message`).toBeGreaterThan(0);
      }
    });

    it('the snapshot shows the state at the start position; the stream from it holds exactly the later changes', async () => {
      const table = await newTable('handoff');
      const seeded = seedRows(50);
      await seed(table, seeded);
      const source = await createSource(uniquePipelineName('handoff'), [table]);
      const opened = await openFirst(source, [table]);
      // Committed after open() returned: must not be in an exported snapshot, must be in the stream.
      const later = await commit([
        [
          { op: 'insert', table, row: { id: 51, note: 'after-open', qty: 1 } },
          { op: 'update', table, key: { id: 1 }, set: { note: 'changed-after-open' } },
        ],
        [
          { op: 'delete', table, key: { id: 3 } },
          { op: 'insert', table, row: { id: 52, note: 'after-open', qty: null } },
        ],
      ]);
      const [schema] = await source.describe([table]);
      const plan = await source.planPartitions(schema!, { targetRowsPerPartition: 20 });
      const snapshot = (await readPartitions(source, schema!, plan, opened.snapshot?.token, false)).flat();
      await opened.snapshot?.release();
      if (opened.snapshot) {
        expect(
          sortById(snapshot.map(kitRow)),
          'rows read with the exported snapshot equal the table at the start position',
        ).toEqual(seeded);
      }
      const reader = stream(source, opened.startPosition, [table]);
      await reader.readUntil((events) => events.length >= later.length, 'the changes committed after open()');
      expectEvents(reader.events, later, 'stream(startPosition)');
      expectStrictlyIncreasing(source, opened.startPosition, reader.events, 'stream(startPosition)');
      const records: OracleRecord[] = [
        ...snapshot.map((row) => ({ table: qualified(table), op: 'read', key: { id: Number(row.id) }, after: row })),
        ...reader.events.map(toRecord),
      ];
      const reduced = reduceByKey(records, { comparePositions: () => 0 });
      const problems = compareWithSnapshot(
        [...(reduced.get(qualified(table))?.values() ?? [])].map((r) => kitRow(r) as unknown as Row),
        (await currentRows(table)) as unknown as Row[],
        { keyColumns: ['id'], table: qualified(table) },
      );
      expect(problems, 'snapshot + stream reduced by key equals the table').toEqual([]);
    });

    it('stream(from) yields only changes strictly after from, in commit order, with safePosition only at transaction boundaries', async () => {
      const table = await newTable('boundaries');
      await seed(table, seedRows(10));
      const source = await createSource(uniquePipelineName('boundaries'), [table]);
      const opened = await openFirst(source, [table], false);
      await opened.snapshot?.release();
      const bigTxn: DriverChange[] = seedRows(40, 200).map((row) => ({ op: 'insert', table, row }));
      bigTxn.push(
        { op: 'update', table, key: { id: 200 }, set: { qty: 7 } },
        { op: 'delete', table, key: { id: 201 } },
      );
      const phase1 = await commit([
        [{ op: 'insert', table, row: { id: 100, note: 'one', qty: 1 } }],
        [
          { op: 'update', table, key: { id: 1 }, set: { note: 'a' } },
          { op: 'update', table, key: { id: 2 }, set: { note: 'b', qty: null } },
          { op: 'delete', table, key: { id: 3 } },
          { op: 'insert', table, row: { id: 101, note: 'two', qty: 2 } },
          { op: 'update', table, key: { id: 101 }, set: { qty: 3 } },
        ],
        bigTxn,
      ]);
      const first = stream(source, opened.startPosition, [table]);
      await first.readUntil((events) => events.length >= phase1.length, 'the first transactions');
      await first.close();
      const s1 = first.lastSafePosition!;
      expectEvents(first.events, phase1, 'stream(startPosition)');

      const phase2 = await commit([
        [
          { op: 'insert', table, row: { id: 300, note: 'three', qty: 3 } },
          { op: 'delete', table, key: { id: 4 } },
        ],
        [{ op: 'update', table, key: { id: 5 }, set: { note: 'c' } }],
      ]);
      const resumed = stream(source, s1, [table]);
      await resumed.readUntil((events) => events.length >= phase2.length, 'the transactions after the safe position');
      expectEvents(resumed.events, phase2, 'stream(safePosition) after the first transactions');
      expectStrictlyIncreasing(source, s1, resumed.events, 'stream(safePosition)');

      expectBoundaries(source, first, phase1);
      expectBoundaries(source, resumed, phase2);
    });

    it('acknowledge() accepts the start position and each safePosition in order, repeated or not', async () => {
      const table = await newTable('ack');
      await seed(table, seedRows(5));
      const source = await createSource(uniquePipelineName('ack'), [table]);
      const opened = await openFirst(source, [table], false);
      await opened.snapshot?.release();
      await source.acknowledge(opened.startPosition);
      const changes = await commit([
        [{ op: 'insert', table, row: { id: 10, note: 'x', qty: 1 } }],
        [{ op: 'update', table, key: { id: 1 }, set: { qty: 2 } }],
        [{ op: 'delete', table, key: { id: 2 } }],
      ]);
      const reader = stream(source, opened.startPosition, [table]);
      await reader.readUntil((events) => events.length >= changes.length, 'three transactions');
      let confirmed: Position | undefined;
      let previousSafe = opened.startPosition;
      for (const batch of reader.batches) {
        if (batch.safePosition === undefined) continue;
        expect(
          source.comparePositions(batch.safePosition, previousSafe),
          'safe positions never go backwards',
        ).toBeGreaterThanOrEqual(0);
        previousSafe = batch.safePosition;
        await source.acknowledge(batch.safePosition);
        await source.acknowledge(batch.safePosition);
        const metrics = await source.metrics?.();
        if (metrics?.confirmedPosition !== undefined) {
          if (confirmed !== undefined)
            expect(
              source.comparePositions(metrics.confirmedPosition, confirmed),
              'the confirmed position never goes backwards',
            ).toBeGreaterThanOrEqual(0);
          confirmed = metrics.confirmedPosition;
        }
      }
    });

    it('after a crash, a new source resumes from the acknowledged position: unacknowledged changes replay, none is lost', async () => {
      const table = await newTable('resume');
      await seed(table, seedRows(5));
      const pipeline = uniquePipelineName('resume');
      const first = await createSource(pipeline, [table]);
      const opened = await openFirst(first, [table]);
      await opened.snapshot?.release();
      const reader = stream(first, opened.startPosition, [table]);
      const acked = await commit([
        [{ op: 'insert', table, row: { id: 10, note: 'acked', qty: 1 } }],
        [{ op: 'update', table, key: { id: 1 }, set: { note: 'acked' } }],
      ]);
      await reader.readUntil((events) => events.length >= acked.length, 'the transactions to acknowledge');
      const checkpoint = reader.lastSafePosition!;
      await first.acknowledge(checkpoint);
      const unacked = await commit([
        [
          { op: 'insert', table, row: { id: 11, note: 'not acked', qty: 2 } },
          { op: 'delete', table, key: { id: 2 } },
        ],
      ]);
      await reader.readUntil(
        (events) => events.length >= acked.length + unacked.length,
        'the unacknowledged transaction',
      );
      await reader.close();
      await closeSource(first, 'crash');

      const whileDown = await commit([
        [{ op: 'update', table, key: { id: 11 }, set: { qty: 3 } }],
        [{ op: 'insert', table, row: { id: 12, note: 'while down', qty: null } }],
      ]);
      const second = await createSource(pipeline, [table]);
      const reopened = await second.open([table], {
        existingStartPosition: opened.startPosition,
        checkpoint,
        wantSnapshot: true,
      });
      expect(reopened.snapshot, 'a restarted source exports no snapshot').toBeUndefined();
      const resumed = stream(second, checkpoint, [table]);
      const expected = [...unacked, ...whileDown];
      await resumed.readUntil((events) => events.length >= expected.length, 'the changes after the checkpoint');
      expectEvents(resumed.events, expected, 'stream(checkpoint) after the crash');
      expect(
        resumed.events.slice(0, unacked.length).map((e) => e.position),
        'replayed changes keep the positions they had before the crash',
      ).toEqual(reader.events.slice(acked.length).map((e) => e.position));
      expectStrictlyIncreasing(second, checkpoint, resumed.events, 'stream(checkpoint) after the crash');
    });

    it('planPartitions() is stable and complete: every row in exactly one partition', async () => {
      const rows = seedRows(options.partitionRows ?? 2000);
      const table = await newTable('partitions');
      await seed(table, rows);
      const source = await createSource(uniquePipelineName('partitions'), [table]);
      const opened = await openFirst(source, [table]);
      try {
        const [schema] = await source.describe([table]);
        const target = { targetRowsPerPartition: options.targetRowsPerPartition ?? 200 };
        const plan = await source.planPartitions(schema!, target);
        const again = await source.planPartitions(schema!, target);
        expect(JSON.parse(JSON.stringify(again)), 'planning the same table twice gives the same plan').toEqual(
          JSON.parse(JSON.stringify(plan)),
        );
        expect(
          plan.length,
          `${rows.length} rows at ${target.targetRowsPerPartition} per partition`,
        ).toBeGreaterThanOrEqual(options.minPartitions ?? 2);
        expect(new Set(plan.map((p) => p.id)).size, 'partition ids are unique').toBe(plan.length);
        const perPartition = await readPartitions(source, schema!, plan, opened.snapshot?.token, false);
        const owner = new Map<string, string>();
        for (const [i, partRows] of perPartition.entries()) {
          for (const row of partRows) {
            const id = keyId({ id: Number(row.id) });
            const other = owner.get(id);
            if (other !== undefined)
              throw new Error(`row id ${row.id} is in partition ${other} and in partition ${plan[i]!.id}`);
            owner.set(id, plan[i]!.id);
          }
        }
        expect(sortById(perPartition.flat().map(kitRow)), 'the partitions together hold every row').toEqual(rows);
      } finally {
        await opened.snapshot?.release();
      }
    });

    it('readPartition() runs concurrently for different partitions and yields the same rows', async () => {
      const rows = seedRows(options.partitionRows ?? 2000);
      const table = await newTable('concurrent');
      await seed(table, rows);
      const source = await createSource(uniquePipelineName('concurrent'), [table]);
      const opened = await openFirst(source, [table]);
      try {
        const [schema] = await source.describe([table]);
        const plan = await source.planPartitions(schema!, {
          targetRowsPerPartition: options.targetRowsPerPartition ?? 200,
        });
        const token = opened.snapshot?.token;
        const [together, oneByOne] = await Promise.all([
          readPartitions(source, schema!, plan, token, true),
          readPartitions(source, schema!, plan, token, true),
        ]);
        const sequential = await readPartitions(source, schema!, plan, token, false);
        const ids = (parts: Row[][]) => parts.map((p) => p.map((r) => Number(r.id)).sort((a, b) => a - b));
        expect(ids(together), 'concurrent reads give each partition the rows a sequential read gives').toEqual(
          ids(sequential),
        );
        expect(ids(oneByOne)).toEqual(ids(sequential));
        expect(sortById(together.flat().map(kitRow))).toEqual(rows);
      } finally {
        await opened.snapshot?.release();
      }
    });

    it('drop() is idempotent, and a dropped pipeline is never silently re-created', async () => {
      const table = await newTable('drop');
      const pipeline = uniquePipelineName('drop');
      const source = await createSource(pipeline, [table]);
      const opened = await openFirst(source, [table], false);
      await opened.snapshot?.release();
      await source.drop();
      await source.drop();
      await closeSource(source, 'close');
      const fresh = await createSource(pipeline, [table]);
      await fresh.drop();
      await expect(
        fresh.open([table], { existingStartPosition: opened.startPosition, wantSnapshot: false }),
        'open() with the start position of a dropped pipeline fails instead of starting over',
      ).rejects.toThrow();
    });

    it.skipIf(!options.truncate)(
      'TRUNCATE streams as one truncate event (empty key, no images) in commit order',
      async () => {
        const table = await newTable('truncate');
        await seed(table, seedRows(5));
        const source = await createSource(uniquePipelineName('truncate'), [table]);
        const opened = await openFirst(source, [table], false);
        await opened.snapshot?.release();
        const changes = await commit([
          [{ op: 'update', table, key: { id: 1 }, set: { note: 'before truncate' } }],
          [{ op: 'truncate', table }],
          [{ op: 'insert', table, row: { id: 9, note: 'after truncate', qty: 9 } }],
        ]);
        const reader = stream(source, opened.startPosition, [table]);
        await reader.readUntil((events) => events.length >= changes.length, 'update, truncate, insert');
        expectEvents(reader.events, changes, 'stream with a TRUNCATE');
        const reduced = reduceByKey(reader.events.map(toRecord), {
          comparePositions: (a, b) => source.comparePositions(a, b),
        });
        expect(
          sortById([...(reduced.get(qualified(table))?.values() ?? [])].map(kitRow)),
          'only the row inserted after the truncate remains',
        ).toEqual(await currentRows(table));
      },
    );
  });
}

function toRecord(event: ChangeEvent): OracleRecord {
  return {
    table: `${event.table.schema}.${event.table.name}`,
    op: event.op,
    key: event.op === 'truncate' ? {} : { id: Number(event.key.id) },
    ...(event.after ? { after: event.after } : {}),
    ...(event.unchanged ? { unchanged: event.unchanged } : {}),
    position: event.position,
  };
}
