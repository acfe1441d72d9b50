import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { defineSink, defineSource, type Sink, type TableRef } from '../../src/contract/connector.js';
import type { ChangeBatch, ChangeEvent, Position, Row, TableSchema } from '../../src/model.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, InMemorySink, inMemorySource, testPipeline } from './fixtures/in-memory.js';

/**
 * The change stream through a pipeline's worker threads, with real threads: a test source
 * whose raw batches are JSON (its worker module, fixtures/workers/stream-source-worker.mjs,
 * makes the workers finish out of order) and a test sink whose encoded batches are JSON lines
 * (fixtures/workers/sink-worker.mjs).
 */

const ACCEPT = { safeParse: (input: unknown) => ({ success: true as const, data: input }) };
const SOURCE_WORKER = new URL('./fixtures/workers/stream-source-worker.mjs', import.meta.url).href;
const SINK_WORKER = new URL('./fixtures/workers/sink-worker.mjs', import.meta.url).href;
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const WORKER_RUNTIME = { workerExecArgv: ['--import', TSX] };

/** Memory shared with the worker threads: which batches were decoded, and in what order. */
class Shared {
  next = 0;
  readonly done = new Int32Array(new SharedArrayBuffer(4 * 4096));
  readonly order = new Int32Array(new SharedArrayBuffer(4 * 4097));
  get finished(): number[] {
    return [...this.order.subarray(1, 1 + Atomics.load(this.order, 0))];
  }
}

/** The in-memory source, handing stream batches over raw (JSON) when asked. */
function rawStreamSource(db: InMemoryDatabase, shared: Shared) {
  return defineSource<unknown>({
    type: 'in-memory-raw-stream',
    configSchema: ACCEPT,
    workerModule: SOURCE_WORKER,
    create: () => {
      const base = inMemorySource(db);
      return {
        ...base,
        async *stream(
          from: Position,
          options: { signal: AbortSignal; tables: TableRef[]; raw?: boolean },
        ): AsyncIterable<ChangeBatch> {
          db.calls.push(`stream-raw:${options.raw === true}`);
          for await (const batch of base.stream(from, options)) {
            if (options.raw !== true || batch.events.length === 0) {
              yield batch;
              continue;
            }
            const events = batch.events;
            const tables = [...new Set(events.map((e) => e.table))];
            const json = JSON.stringify(events.map(({ table, ...e }) => ({ ...e, t: tables.indexOf(table) })));
            const bytes = new TextEncoder().encode(json);
            const raw = {
              bytes: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
              setup: { tables, batch: shared.next++, done: shared.done, order: shared.order },
              count: events.length,
              first: events[0]!.position,
              last: events.at(-1)!.position,
              tables: tables.map((table) => ({ table, events: events.filter((e) => e.table === table).length })),
            };
            yield batch.safePosition === undefined
              ? { events: [], raw }
              : { events: [], raw, safePosition: batch.safePosition };
          }
        },
      };
    },
  });
}

/** An in-memory sink that can write what the workers encoded (JSON lines), counting those writes. */
class WorkerSink extends InMemorySink {
  encodedBatches = 0;
  encodedEvents = 0;
  /** What `encoderSetup` gives the worker module (`{ json: true }`: it encodes from JSON text too). */
  setup: Record<string, unknown> = {};
  private tables: TableSchema[] = [];

  override definition() {
    return defineSink<unknown>({
      type: 'in-memory-encoded',
      configSchema: ACCEPT,
      workerModule: SINK_WORKER,
      create: () => this.instance(),
    });
  }

  override instance(): Sink {
    const base = super.instance();
    return {
      ...base,
      open: async (tables) => {
        this.tables = tables;
        await base.open(tables);
      },
      encoderSetup: async () => this.setup,
      writeEncoded: async (batch, info) => {
        const records = new TextDecoder()
          .decode(new Uint8Array(batch.bytes))
          .split('\n')
          .map((line) => JSON.parse(line) as ChangeEvent & { table: string });
        expect(records).toHaveLength(info.count);
        expect(records[0]!.position).toBe(info.first);
        expect(records.at(-1)!.position).toBe(info.last);
        this.encodedBatches++;
        for (const r of records) {
          const table = this.tables.find((t) => `${t.schema}.${t.name}` === (r.table as unknown as string))!;
          this.events.push({ ...r, table });
          this.encodedEvents++;
        }
      },
    };
  }
}

let h: Harness;
afterEach(async () => {
  await h?.dispose();
});

describe('the change stream through worker threads', () => {
  it('hands batches to 3 workers, which finish out of order, and writes them in stream order; acknowledges only what is durable', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ maxBatchEvents: 5 });
    db.createTable('public', 'orders', 0);
    const shared = new Shared();
    const sink = new WorkerSink();
    const p = testPipeline(db, { name: 'wst', type: 'cdc', sinks: [{ sink }], workers: 3 });
    p.materialized.source.definition = rawStreamSource(db, shared);
    p.materialized.sinks[0]!.definition = sink.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wst', p.definition, p.hash, p.type);
    await waitForState(engine, 'wst', 'LIVE_CDC');
    // 12 transactions of 7 inserts: batches of 5 and 2 (the first without a safe position), 24 in all.
    let id = 0;
    for (let tx = 0; tx < 12; tx++)
      db.commit(
        Array.from({ length: 7 }, () => ({ table: 'public.orders', op: 'insert' as const, row: { id: String(++id) } })),
      );
    const expected = db.log.flatMap((c) => c.events.map((e) => e.position));
    await until(() => sink.events.length === expected.length, 'every change in the sink');
    expect(db.calls).toContain('stream-raw:true');
    // In stream order, each once, all written from batches the workers encoded.
    expect(sink.events.map((e) => e.position)).toEqual(expected);
    expect(sink.events.map((e) => e.key)).toEqual(expected.map((_, i) => ({ id: String(i + 1) })));
    expect(sink.encodedEvents).toBe(expected.length);
    expect(sink.encodedBatches).toBe(24);
    // The workers did finish out of order: a batch decoded before the one in front of it.
    const finished = shared.finished;
    expect([...finished].sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(finished).not.toEqual([...finished].sort((a, b) => a - b));
    expect(finished.indexOf(1)).toBeLessThan(finished.indexOf(0));
    // Acknowledged up to the last transaction, only ever at transaction ends, in order.
    await until(() => db.acks.at(-1) === db.log.at(-1)!.end, 'the last transaction acknowledged');
    expect(db.ackViolations).toEqual([]);
    expect(h.log.lines.some((l) => l.includes('stream changes are decoded and encoded in worker threads'))).toBe(true);
    const status = await engine.status('wst');
    expect(status.workers?.stream).toEqual({ mode: 'workers', batches: 24, inlineBatches: 0 });
  });

  it('workers: 0 asks the source for decoded batches, as before', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ maxBatchEvents: 5 });
    db.createTable('public', 'orders', 0);
    const sink = new WorkerSink();
    const p = testPipeline(db, { name: 'wst0', type: 'cdc', sinks: [{ sink }], workers: 0 });
    p.materialized.source.definition = rawStreamSource(db, new Shared());
    p.materialized.sinks[0]!.definition = sink.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wst0', p.definition, p.hash, p.type);
    await waitForState(engine, 'wst0', 'LIVE_CDC');
    for (let id = 1; id <= 12; id++) db.insert('public.orders', id);
    await until(() => sink.events.length === 12, 'every change in the sink');
    expect(db.calls).toContain('stream-raw:false');
    expect(sink.encodedEvents).toBe(0);
    expect((await engine.status('wst0')).workers?.stream).toBeUndefined();
  });

  it('workers: 0 with a source and a sink that take the JSON text path: raw batches encoded from JSON text on the main thread, in order; a batch the writer declines is decoded', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ maxBatchEvents: 5 });
    db.createTable('public', 'orders', 0);
    const sink = new WorkerSink();
    sink.setup = { json: true };
    const p = testPipeline(db, { name: 'wsj', type: 'cdc', sinks: [{ sink }], workers: 0 });
    p.materialized.source.definition = rawStreamSource(db, new Shared());
    p.materialized.sinks[0]!.definition = sink.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wsj', p.definition, p.hash, p.type);
    await waitForState(engine, 'wsj', 'LIVE_CDC');
    // 6 transactions of 7 inserts, then 6 of 4 updates and 3 deletes: 24 batches of 5 and 2.
    let id = 0;
    for (let tx = 0; tx < 6; tx++)
      db.commit(
        Array.from({ length: 7 }, () => ({ table: 'public.orders', op: 'insert' as const, row: { id: String(++id) } })),
      );
    for (let tx = 0; tx < 6; tx++)
      db.commit(
        Array.from({ length: 7 }, (_, i) => ({
          table: 'public.orders',
          op: i < 4 ? ('update' as const) : ('delete' as const),
          row: (i < 4 ? { id: String(tx * 7 + i + 1), status: `s${tx}` } : { id: String(tx * 7 + i + 1) }) as Row,
        })),
      );
    const expected = db.log.flatMap((c) => c.events);
    await until(() => sink.events.length === expected.length, 'every change in the sink');
    expect(db.calls).toContain('stream-raw:true');
    expect(db.calls).not.toContain('stream-raw:false');
    // In stream order, each once, each as the decoded event says.
    expect(sink.events.map((e) => [e.position, e.op, e.key, e.after])).toEqual(
      expected.map((e) => [e.position, e.op, e.key, e.after]),
    );
    expect(sink.encodedEvents).toBe(expected.length);
    // Batches 3, 7, … 23 (two changes each) were declined by the writer and decoded.
    const viaJson = sink.events.filter((e) => (e as { via?: string }).via === 'json').length;
    expect(viaJson).toBe(expected.length - 12);
    await until(() => db.acks.at(-1) === db.log.at(-1)!.end, 'the last transaction acknowledged');
    expect(db.ackViolations).toEqual([]);
    expect(
      h.log.lines.some((l) =>
        l.includes('sink wrote its first stream batch encoded from JSON text, on the main thread'),
      ),
    ).toBe(true);
    expect(h.log.lines.some((l) => l.includes('in worker threads'))).toBe(false);
    expect((await engine.status('wsj')).workers?.stream).toBeUndefined();
  });
});
