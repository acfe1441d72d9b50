import type { ChangeEvent, LogicalType, Position, Row, Sink, TableSchema, Value } from '@nanosync/core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { type KitRow, kitRow, kitTableSchema, sortById, uniqueTableName } from './kit-table.js';
import {
  checkNothingLost,
  checkPositionOrder,
  compareWithSnapshot,
  type ExpectedChange,
  type OracleRecord,
  reduceByKey,
} from './oracle.js';
import { suite } from './skip.js';

/** One durable record of a log-shaped target (a topic message, a file line), as the reader decoded it. */
export interface ReadBackRecord {
  op: string;
  /** The key columns (values as the target decoded them); empty for `truncate`. */
  key: Record<string, unknown>;
  after?: Record<string, unknown> | null;
  unchanged?: string[];
  /** The event's position, when the target keeps it. */
  position?: Position;
}

/**
 * What a reader found in the target for one table:
 * - `records`: a log-shaped target (Kafka, files): every durable record, in the order the
 *   target keeps them per key (offset order). The kit reduces them by key.
 * - `rows`: a state-shaped target (a warehouse table): its current rows.
 */
export type ReadBack = { records: ReadBackRecord[] } | { rows: Record<string, unknown>[] };

/** What the factory returns once per suite. */
export interface SinkTestHarness {
  /**
   * A new sink writing to the destination named `target` (a fresh name per test; a topic
   * prefix, a folder, a dataset). The same name again is the same destination, as after a
   * restart. The kit calls `open()` and closes every sink it gets.
   */
  createSink(target: string): Promise<Sink>;
  /**
   * Read back what is durable in `target` for `table`, through a client of its own (a
   * consumer, a file read, a query), never through the sink's buffers.
   */
  read(target: string, table: TableSchema): Promise<ReadBack>;
  /** Called after the last test. */
  dispose?(): PromiseLike<void> | void;
}

/** A value the sink can never write for a column of this type. */
export interface UnrepresentableValue {
  type: LogicalType;
  value: Value;
  /** Shown in the test title: `int32 above 2^31`. */
  description: string;
}

export interface SinkSuiteOptions {
  /** The connector's name in test titles (`kafka`). */
  name: string;
  /** Register every test as skipped with this reason in the title; the factory is never called. */
  skip?: string | false | undefined;
  /** Schema of the kit's tables (default `public`). */
  schema?: string;
  /**
   * Values that must be rejected with an error naming table, column and key. An empty
   * list registers that test as skipped (the sink writes anything the event model holds).
   */
  unrepresentable: UnrepresentableValue[];
}

/**
 * Register the sink conformance suite: durability of `write`, order per key, idempotent
 * replays, snapshot rows, unchanged columns, truncate, and bad values. Call it at the top
 * level of a vitest test file.
 */
export function registerSinkTests(factory: () => Promise<SinkTestHarness>, options: SinkSuiteOptions): void {
  const schemaName = options.schema ?? 'public';
  suite(`${options.name} sink conformance (@nanosync/connector-testkit)`, options.skip, () => {
    let harness: SinkTestHarness;
    let sinks: Sink[] = [];
    beforeAll(async () => {
      harness = await factory();
    });
    afterAll(async () => {
      await harness?.dispose?.();
    });
    afterEach(async () => {
      await Promise.allSettled(sinks.map((s) => s.close()));
      sinks = [];
    });

    const openSink = async (target: string, tables: TableSchema[]) => {
      const sink = await harness.createSink(target);
      sinks.push(sink);
      await sink.open(tables);
      return sink;
    };
    const closeSink = async (sink: Sink) => {
      sinks = sinks.filter((s) => s !== sink);
      await sink.close();
    };

    /** Builds events with increasing positions (`000…0001` — fixed width, so they sort as text). */
    const events = () => {
      let n = 0;
      const next = () => String(++n).padStart(16, '0');
      const at = () => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n)).toISOString().replace('Z', '000Z');
      return {
        insert: (table: TableSchema, row: KitRow, op: 'insert' | 'read' = 'insert'): ChangeEvent => ({
          op,
          table,
          key: { id: row.id },
          after: { ...row },
          position: next(),
          ...(op === 'insert' ? { commitTime: at() } : {}),
        }),
        update: (table: TableSchema, before: KitRow, after: KitRow, unchanged?: (keyof KitRow)[]): ChangeEvent => {
          const image: Row = { ...after };
          for (const column of unchanged ?? []) delete image[column];
          return {
            op: 'update',
            table,
            key: { id: after.id },
            before: { ...before },
            after: image,
            ...(unchanged ? { unchanged: [...unchanged] } : {}),
            position: next(),
            commitTime: at(),
          };
        },
        delete: (table: TableSchema, row: KitRow): ChangeEvent => ({
          op: 'delete',
          table,
          key: { id: row.id },
          before: { ...row },
          position: next(),
          commitTime: at(),
        }),
        truncate: (table: TableSchema): ChangeEvent => ({
          op: 'truncate',
          table,
          key: {},
          position: next(),
          commitTime: at(),
          truncate: { cascade: false, restartIdentity: false },
        }),
      };
    };

    const newTable = (label: string) => kitTableSchema(schemaName, uniqueTableName(label));
    const targetName = (label: string) => uniqueTableName(label).replace(/^kit_/, 'kitsink_');
    const qualified = (t: TableSchema) => `${t.schema}.${t.name}`;

    /** Expected state of a table after `written`, reduced the way a consumer would. */
    const expectedState = (table: TableSchema, written: ChangeEvent[]): Row[] => {
      const reduced = reduceByKey(written.filter((e) => e.table === table).map(toRecord));
      return sortById([...(reduced.get(qualified(table))?.values() ?? [])].map(kitRow)) as unknown as Row[];
    };

    /** Read back, then check state (and, for logs, order and completeness). Returns the problems. */
    const verify = async (target: string, table: TableSchema, written: ChangeEvent[], context: string) => {
      const back = await harness.read(target, table);
      const problems: string[] = [];
      let held: Record<string, unknown>[];
      if ('records' in back) {
        const records = asOracleRecords(back.records, table);
        const reduced = reduceByKey(records);
        held = [...(reduced.get(qualified(table))?.values() ?? [])];
        problems.push(...checkPositionOrder(records));
        problems.push(
          ...checkNothingLost(
            records,
            written.filter((e) => e.table === table).map((e) => toExpected(e)),
          ),
        );
      } else {
        held = back.rows;
      }
      problems.push(
        ...compareWithSnapshot(
          held.map((r) => kitRow(r) as unknown as Row),
          expectedState(table, written),
          { keyColumns: ['id'], table: qualified(table) },
        ),
      );
      if (problems.length > 0) throw new Error(`${context}:\n  ${problems.slice(0, 25).join('\n  ')}`);
      return back;
    };

    it('write() resolves only once the events are durable: a separate reader sees every one of them at once', async () => {
      const table = newTable('durable');
      const target = targetName('durable');
      const sink = await openSink(target, [table]);
      await sink.open([table]);
      const make = events();
      const written: ChangeEvent[] = [];
      const batches: ChangeEvent[][] = [
        [make.insert(table, { id: 1, note: 'first', qty: 1 })],
        Array.from({ length: 50 }, (_, i) => make.insert(table, { id: 100 + i, note: `n${i}`, qty: i })),
        Array.from({ length: 600 }, (_, i) =>
          make.update(
            table,
            { id: 100 + (i % 50), note: null, qty: null },
            { id: 100 + (i % 50), note: `u${i}`, qty: i },
          ),
        ),
      ];
      for (const [i, batch] of batches.entries()) {
        await sink.write(batch);
        written.push(...batch);
        // Nothing else happens between the write resolving and the read: no close, no flush.
        await verify(target, table, written, `right after write #${i + 1} resolved (${batch.length} events)`);
      }
    });

    it('keeps the order of changes per key, within a batch and across batches', async () => {
      const table = newTable('order');
      const target = targetName('order');
      const sink = await openSink(target, [table]);
      const make = events();
      const first: ChangeEvent[] = [];
      const second: ChangeEvent[] = [];
      for (let id = 1; id <= 20; id++) {
        const row = (note: string, qty: number | null): KitRow => ({ id, note, qty });
        first.push(make.insert(table, row('v1', 1)));
      }
      for (let round = 2; round <= 4; round++)
        for (let id = 1; id <= 20; id++)
          first.push(make.update(table, { id, note: `v${round - 1}`, qty: 1 }, { id, note: `v${round}`, qty: round }));
      for (let id = 1; id <= 20; id += 3) {
        first.push(make.delete(table, { id, note: 'v4', qty: 4 }));
        first.push(make.insert(table, { id, note: 'reborn', qty: null }));
      }
      for (let id = 2; id <= 20; id += 4)
        second.push(make.update(table, { id, note: 'v4', qty: 4 }, { id, note: 'last', qty: 5 }));
      for (let id = 3; id <= 20; id += 5) second.push(make.delete(table, { id, note: 'x', qty: null }));
      await sink.write(first);
      await sink.write(second);
      const written = [...first, ...second];
      const back = await verify(target, table, written, 'after two batches of interleaved changes');
      if ('records' in back) {
        const perKey = (
          list: { op: string; key: Record<string, unknown>; after?: Record<string, unknown> | null }[],
        ) => {
          const out = new Map<number, string[]>();
          for (const r of list) {
            const id = Number(r.key.id);
            out.set(id, [...(out.get(id) ?? []), `${r.op}:${r.after ? String(r.after.note) : '-'}`]);
          }
          return Object.fromEntries([...out].sort((a, b) => a[0] - b[0]));
        };
        expect(perKey(back.records), 'per key, the target holds the changes in the order they were written').toEqual(
          perKey(written),
        );
      }
    });

    it('a replay after a restart (the unacknowledged suffix written again) leaves the same result', async () => {
      const table = newTable('replay');
      const target = targetName('replay');
      const make = events();
      const b1 = Array.from({ length: 30 }, (_, i) => make.insert(table, { id: i + 1, note: 'b1', qty: i }));
      const b2 = [
        ...Array.from({ length: 10 }, (_, i) =>
          make.update(table, { id: i + 1, note: 'b1', qty: i }, { id: i + 1, note: 'b2', qty: i * 2 }),
        ),
        make.delete(table, { id: 30, note: 'b1', qty: 29 }),
      ];
      const b3 = [
        make.insert(table, { id: 31, note: 'b3', qty: 31 }),
        make.update(table, { id: 1, note: 'b2', qty: 0 }, { id: 1, note: 'b3', qty: 100 }),
      ];
      const before = await openSink(target, [table]);
      await before.write(b1);
      await before.write(b2);
      await closeSink(before);
      const after = await openSink(target, [table]);
      await after.write(b2);
      await after.write(b3);
      await verify(target, table, [...b1, ...b2, ...b3], 'after b1, b2, restart, b2 again, b3');
    });

    it('snapshot rows (op read) followed by stream changes give the source state', async () => {
      const table = newTable('snapshot');
      const target = targetName('snapshot');
      const sink = await openSink(target, [table]);
      const make = events();
      const reads = Array.from({ length: 40 }, (_, i) =>
        make.insert(table, { id: i + 1, note: 'snap', qty: i }, 'read'),
      );
      await sink.write(reads.slice(0, 25));
      await sink.write(reads.slice(25));
      const stream = [
        make.update(table, { id: 1, note: 'snap', qty: 0 }, { id: 1, note: 'live', qty: 1 }),
        make.delete(table, { id: 2, note: 'snap', qty: 1 }),
        make.insert(table, { id: 41, note: 'live', qty: null }),
      ];
      await sink.write(stream);
      await verify(target, table, [...reads, ...stream], 'after snapshot rows and stream changes');
    });

    it('an update with unchanged columns never overwrites them with NULL', async () => {
      const table = newTable('unchanged');
      const target = targetName('unchanged');
      const sink = await openSink(target, [table]);
      const make = events();
      const written = [
        make.insert(table, { id: 1, note: 'large value kept by the source', qty: 1 }),
        make.update(table, { id: 1, note: 'large value kept by the source', qty: 1 }, { id: 1, note: null, qty: 2 }, [
          'note',
        ]),
      ];
      await sink.write(written);
      const back = await harness.read(target, table);
      const held =
        'records' in back
          ? [...(reduceByKey(asOracleRecords(back.records, table)).get(qualified(table))?.values() ?? [])]
          : back.rows;
      expect(held.map(kitRow), 'the unchanged column keeps its value').toEqual([
        { id: 1, note: 'large value kept by the source', qty: 2 },
      ]);
    });

    it('a truncate event empties its table (and only that table); later rows stay', async () => {
      const truncated = newTable('truncated');
      const other = newTable('untouched');
      const target = targetName('truncate');
      const sink = await openSink(target, [truncated, other]);
      const make = events();
      const first = [
        ...Array.from({ length: 5 }, (_, i) => make.insert(truncated, { id: i + 1, note: 't', qty: i })),
        ...Array.from({ length: 3 }, (_, i) => make.insert(other, { id: i + 1, note: 'o', qty: i })),
      ];
      const second = [make.truncate(truncated), make.insert(truncated, { id: 9, note: 'after', qty: 9 })];
      await sink.write(first);
      await sink.write(second);
      const written = [...first, ...second];
      const back = await verify(target, truncated, written, 'the truncated table');
      await verify(target, other, written, 'the other table');
      if ('records' in back)
        expect(
          back.records.filter((r) => r.op === 'truncate').length,
          'the target records the truncate',
        ).toBeGreaterThanOrEqual(1);
    });

    const cases = options.unrepresentable;
    it.skipIf(cases.length === 0)(
      `rejects a value it cannot represent, naming table, column and key${cases.length === 0 ? ' (none declared)' : ''}`,
      async () => {
        for (const bad of cases) {
          const table: TableSchema = {
            schema: schemaName,
            name: uniqueTableName('badvalue'),
            columns: [
              { name: 'id', type: { kind: 'int32' }, nullable: false },
              { name: 'bad_value', type: bad.type, nullable: true },
            ],
            keyColumns: ['id'],
          };
          const target = targetName('badvalue');
          const sink = await openSink(target, [table]);
          const write = sink.write([
            { op: 'insert', table, key: { id: 4242 }, after: { id: 4242, bad_value: bad.value }, position: '0001' },
          ]);
          const error = await write.then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(error, `${bad.description}: write() rejects`).toBeInstanceOf(Error);
          const message = (error as Error).message;
          expect(message, `${bad.description}: the error names the table`).toContain(table.name);
          expect(message, `${bad.description}: the error names the column`).toContain('bad_value');
          expect(message, `${bad.description}: the error names the key`).toContain('4242');
          await closeSink(sink);
        }
      },
    );
  });
}

function toRecord(event: ChangeEvent): OracleRecord {
  return {
    table: `${event.table.schema}.${event.table.name}`,
    op: event.op,
    key: event.key,
    ...(event.after ? { after: event.after } : {}),
    ...(event.unchanged ? { unchanged: event.unchanged } : {}),
    position: event.position,
  };
}

function toExpected(event: ChangeEvent): ExpectedChange {
  const table = `${event.table.schema}.${event.table.name}`;
  const after = event.after ? (kitRow(event.after) as unknown as Row) : undefined;
  if (after && event.unchanged) for (const column of event.unchanged) delete after[column];
  return {
    table,
    op: event.op,
    key: event.op === 'truncate' ? {} : { id: Number(event.key.id) },
    ...(after ? { after } : {}),
  };
}

/** Reader records in the kit's canonical form (numbers for `id` and `qty`), tagged with their table. */
function asOracleRecords(records: ReadBackRecord[], table: TableSchema): OracleRecord[] {
  return records.map((r) => {
    const out: OracleRecord = {
      table: `${table.schema}.${table.name}`,
      op: r.op,
      key: r.op === 'truncate' ? {} : { id: Number(r.key.id) },
    };
    if (r.after) {
      const after = kitRow(r.after) as unknown as Row;
      for (const column of ['note', 'qty']) if (!(column in r.after)) delete after[column];
      out.after = after;
    }
    if (r.unchanged) out.unchanged = r.unchanged;
    if (r.position !== undefined) out.position = r.position;
    return out;
  });
}
