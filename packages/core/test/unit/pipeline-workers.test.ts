import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  defineSink,
  defineSource,
  type PartitionSpec,
  type ReadPartitionChunkOptions,
  recordError,
  type Sink,
} from '../../src/contract/connector.js';
import { NanosyncError } from '../../src/errors.js';
import type { ChangeEvent, Row, TableSchema } from '../../src/model.js';
import { workerExecArgv } from '../../src/runtime/snapshot-workers.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, InMemorySink, inMemorySource, testPipeline } from './fixtures/in-memory.js';

/**
 * The snapshot through a pipeline's worker threads, with real threads: a test source whose
 * raw chunks are JSON lines and a test sink whose encoded batches are JSON lines (their worker
 * modules are fixtures/workers/*.mjs). What reaches the sink must be what the inline path
 * gives, and the threads must actually have been used.
 */

const ACCEPT = { safeParse: (input: unknown) => ({ success: true as const, data: input }) };
const SOURCE_WORKER = new URL('./fixtures/workers/source-worker.mjs', import.meta.url).href;
const SINK_WORKER = new URL('./fixtures/workers/sink-worker.mjs', import.meta.url).href;
/** The same module, declaring `jsonRowObjects`. */
const OBJECTS_SINK_WORKER = new URL('./fixtures/workers/sink-worker-objects.mjs', import.meta.url).href;
// The pipeline's worker module is core's TypeScript: the threads load it through tsx, as a
// process started from the sources does.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const WORKER_RUNTIME = { workerExecArgv: ['--import', TSX] };

/** The in-memory source, with chunked reads that can hand rows over raw (JSON lines) and a worker module. */
function workerSourceDefinition(db: InMemoryDatabase, options: { decoderSetup?: boolean } = {}) {
  return defineSource<unknown>({
    type: 'in-memory-raw',
    configSchema: ACCEPT,
    workerModule: SOURCE_WORKER,
    create: () => {
      const base = inMemorySource(db);
      return {
        ...base,
        readPartitionChunk: async (table: TableSchema, spec: PartitionSpec, read: ReadPartitionChunkOptions) => {
          const name = `${table.schema}.${table.name}`;
          db.calls.push(`chunk:${name}:${spec.id}:${read.raw === true ? 'raw' : 'rows'}`);
          const { from, to } = spec.bounds as { from: number; to: number | null };
          const all = db
            .snapshotRows(name, read.snapshotToken)
            .filter((r) => Number(r.id) >= from && (to === null || Number(r.id) <= to))
            .sort((a, b) => Number(a.id) - Number(b.id));
          const start = (read.after as number | undefined) ?? 0;
          const end =
            read.upTo !== undefined
              ? ((read.upTo.next as number | undefined) ?? all.length)
              : Math.min(all.length, start + read.maxRows);
          const rows = all.slice(start, end);
          const next = end < all.length ? end : undefined;
          if (read.raw !== true) return { rows, bytes: JSON.stringify(rows).length, next };
          const text = rows.map((r) => `${JSON.stringify(r)}\n`).join('');
          const bytes = new TextEncoder().encode(text);
          const raw: { bytes: ArrayBuffer; rows: number; keys?: string[] } = {
            bytes: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
            rows: rows.length,
          };
          if (read.rawKeys === true) raw.keys = rows.map((r) => JSON.stringify([r.id]));
          return { rows: [], bytes: bytes.byteLength, next, raw };
        },
        ...(options.decoderSetup === false
          ? {}
          : { decoderSetup: async (table: TableSchema) => ({ table: `${table.schema}.${table.name}` }) }),
      };
    },
  });
}

/** An in-memory sink that can write what the workers encoded (JSON lines), counting those writes. */
class WorkerSink extends InMemorySink {
  encodedBatches = 0;
  encodedEvents = 0;
  /** Records the worker encoded from the chunk's values' JSON text (`createJsonEncoder`, with `setup.json`). */
  jsonEvents = 0;
  /** Of those, records encoded from rows written as JSON objects (`JsonRows.starts`). */
  jsonObjectEvents = 0;
  /** The worker module: SINK_WORKER, or OBJECTS_SINK_WORKER to take rows as objects. */
  workerModule = SINK_WORKER;
  /** What `encoderSetup` returns. */
  setup: Record<string, unknown> | undefined = {};
  /** A record `writeEncoded` refuses alone (marked with recordError). */
  refuseRecord: ((record: { after?: Row }) => boolean) | undefined;
  private tables: TableSchema[] = [];

  override definition() {
    return defineSink<unknown>({
      type: 'in-memory-encoded',
      configSchema: ACCEPT,
      workerModule: this.workerModule,
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
        // A closed gate holds encoded writes as it holds decoded ones (a slow sink is slow for both).
        this.waiting++;
        await this.gate.wait();
        this.waiting--;
        const records = new TextDecoder()
          .decode(new Uint8Array(batch.bytes))
          .split('\n')
          .map((line) => JSON.parse(line) as Record<string, unknown> & { after?: Row });
        expect(records).toHaveLength(info.count);
        const refused = this.refuseRecord ? records.findIndex(this.refuseRecord) : -1;
        if (refused >= 0)
          throw recordError(new NanosyncError('NS_K6003', `record ${refused} refused as too large`), refused);
        this.encodedBatches++;
        for (const r of records) {
          const table = this.tables.find((t) => `${t.schema}.${t.name}` === r.table)!;
          const event = { op: r.op, table, key: r.key, after: r.after, position: r.position } as ChangeEvent;
          if (r.chunk !== undefined) event.chunk = r.chunk as string;
          expect(event.chunk).toBe(info.chunk);
          this.events.push(event);
          this.encodedEvents++;
          if (r.via === 'json' || r.via === 'json-objects') this.jsonEvents++;
          if (r.via === 'json-objects') this.jsonObjectEvents++;
        }
      },
    };
  }
}

/** What a sink holds, comparable between runs: chunk ids are random, so only whether there is one. */
function comparable(events: readonly ChangeEvent[]) {
  return events
    .map((e) => ({
      table: `${e.table.schema}.${e.table.name}`,
      op: e.op,
      key: e.key,
      after: e.after,
      chunked: e.chunk !== undefined,
    }))
    .sort((a, b) => Number(a.key.id) - Number(b.key.id) || a.op.localeCompare(b.op));
}

let h: Harness;
afterEach(async () => {
  await h?.dispose();
});

async function runSnapshot(
  workers: number,
  options: {
    rows?: number;
    onError?: 'fail' | 'skip';
    prepare?: (sink: WorkerSink, db: InMemoryDatabase) => void;
  } = {},
) {
  h = await Harness.create();
  const db = new InMemoryDatabase({ partitionSize: 40 });
  db.createTable('public', 'orders', options.rows ?? 130);
  db.createTable('public', 'items', 25);
  const sink = new WorkerSink();
  options.prepare?.(sink, db);
  const p = testPipeline(db, {
    name: `wk${workers}`,
    type: 'snapshot',
    tables: ['public.orders', 'public.items'],
    sinks: [{ sink, onError: options.onError ?? 'fail' }],
    workers,
  });
  p.materialized.source.definition = workerSourceDefinition(db);
  p.materialized.sinks[0]!.definition = sink.definition();
  h.registry.add(p);
  const engine = h.engine({ runtime: WORKER_RUNTIME });
  await engine.start();
  const name = `wk${workers}`;
  await engine.apply(name, p.definition, p.hash, p.type);
  const done = await waitForState(engine, name, 'COMPLETED');
  return { sink, db, engine, status: done };
}

describe('snapshot through worker threads', () => {
  it('gives the sink exactly what the inline path gives, written from encoded batches; status and log say so', async () => {
    const inline = await runSnapshot(0);
    expect(inline.sink.encodedBatches).toBe(0);
    expect(inline.db.calls.filter((c) => c.startsWith('chunk:')).every((c) => c.endsWith(':rows'))).toBe(true);
    const expected = comparable(inline.sink.events);
    expect(expected).toHaveLength(155);
    await h.dispose();

    for (const workers of [1, 3]) {
      const run = await runSnapshot(workers);
      expect(comparable(run.sink.events), `workers: ${workers}`).toEqual(expected);
      // Every snapshot row went through the workers: read raw, written encoded.
      expect(run.db.calls.filter((c) => c.startsWith('chunk:')).every((c) => c.endsWith(':raw'))).toBe(true);
      expect(run.sink.encodedEvents).toBe(155);
      expect(run.sink.encodedBatches).toBeGreaterThanOrEqual(5);
      expect(run.sink.events.every((e) => e.chunk !== undefined)).toBe(true);
      expect(h.log.lines.some((l) => l.includes('snapshot rows are decoded and encoded in worker threads'))).toBe(true);
      await h.dispose();
    }
  });

  it('encodes chunks from their values’ JSON text where source and sink can (in threads, or on the main thread with workers: 0), and decodes a chunk the writer declines', async () => {
    const inline = await runSnapshot(0, { prepare: (_, db) => db.insert('public.orders', 1001, 'decline') });
    expect(inline.sink.encodedBatches).toBe(0);
    const expected = comparable(inline.sink.events);
    expect(expected).toHaveLength(156);
    await h.dispose();
    const prepare = (sink: WorkerSink, db: InMemoryDatabase) => {
      sink.setup = { json: true };
      db.insert('public.orders', 1001, 'decline');
    };
    for (const workers of [0, 1, 3]) {
      const run = await runSnapshot(workers, { prepare });
      expect(comparable(run.sink.events), `workers: ${workers}`).toEqual(expected);
      expect(run.sink.encodedEvents).toBe(156);
      if (workers === 0) expect(run.status.workers).toEqual({ setting: 0, threads: 0 });
      // Every chunk but the declined one came from the JSON text; that one was decoded.
      const declined = run.sink.events.find((e) => e.after?.status === 'decline')!;
      const sameChunk = run.sink.events.filter((e) => e.chunk === declined.chunk).length;
      expect(sameChunk).toBeGreaterThan(0);
      expect(run.sink.jsonEvents).toBe(156 - sameChunk);
      await h.dispose();
    }
  });

  it('with workers: 0 and two sinks, one of which declines a table: each sink gets every row once, from JSON text where it took it', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 10 });
    db.createTable('public', 'orders', 130);
    db.createTable('public', 'items', 25);
    const all = new WorkerSink();
    all.setup = { json: true };
    const ordersOnly = new WorkerSink();
    ordersOnly.setup = { json: 'orders' };
    const p = testPipeline(db, {
      name: 'wk2',
      type: 'snapshot',
      tables: ['public.orders', 'public.items'],
      sinks: [
        { sink: all, onError: 'fail' },
        { sink: ordersOnly, onError: 'fail' },
      ],
      workers: 0,
    });
    p.materialized.source.definition = workerSourceDefinition(db);
    p.materialized.sinks[0]!.definition = all.definition();
    p.materialized.sinks[1]!.definition = ordersOnly.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wk2', p.definition, p.hash, p.type);
    await waitForState(engine, 'wk2', 'COMPLETED');
    const expected = comparable(all.events);
    expect(expected).toHaveLength(155);
    expect(comparable(ordersOnly.events)).toEqual(expected);
    expect(all.jsonEvents).toBe(155);
    expect(ordersOnly.jsonEvents).toBe(130);
    expect(ordersOnly.encodedEvents).toBe(155);
  });

  it('asks the source for rows as JSON objects only when every sink encoding from the JSON text takes them', async () => {
    const run = async (modules: string[], workers: number) => {
      h = await Harness.create();
      const db = new InMemoryDatabase({ partitionSize: 10 });
      db.createTable('public', 'orders', 40);
      const sinks = modules.map((module) => {
        const sink = new WorkerSink();
        sink.setup = { json: true };
        sink.workerModule = module;
        return sink;
      });
      const p = testPipeline(db, {
        name: 'wk3',
        type: 'snapshot',
        tables: ['public.orders'],
        sinks: sinks.map((sink) => ({ sink, onError: 'fail' as const })),
        workers,
      });
      p.materialized.source.definition = workerSourceDefinition(db);
      sinks.forEach((sink, i) => {
        p.materialized.sinks[i]!.definition = sink.definition();
      });
      h.registry.add(p);
      const engine = h.engine({ runtime: WORKER_RUNTIME });
      await engine.start();
      await engine.apply('wk3', p.definition, p.hash, p.type);
      await waitForState(engine, 'wk3', 'COMPLETED');
      await h.dispose();
      return sinks;
    };
    for (const workers of [0, 1]) {
      const [objects] = await run([OBJECTS_SINK_WORKER], workers);
      expect(objects!.jsonObjectEvents, `workers: ${workers}`).toBe(40);
      const expected = comparable(objects!.events);
      expect(expected).toHaveLength(40);
      // One sink that does not declare it: the values alone, for both.
      const both = await run([OBJECTS_SINK_WORKER, SINK_WORKER], workers);
      for (const sink of both) {
        expect(sink.jsonEvents, `workers: ${workers}`).toBe(40);
        expect(sink.jsonObjectEvents, `workers: ${workers}`).toBe(0);
        expect(comparable(sink.events)).toEqual(expected);
      }
    }
  });

  it('shows the workers in the status while the pipeline runs: threads, chunks through them, encoded writes per sink', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 20 });
    db.createTable('public', 'orders', 60);
    const sink = new WorkerSink();
    const p = testPipeline(db, { name: 'wks', type: 'cdc_backfill', sinks: [{ sink }], workers: 2 });
    p.materialized.source.definition = workerSourceDefinition(db);
    p.materialized.sinks[0]!.definition = sink.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wks', p.definition, p.hash, p.type);
    await waitForState(engine, 'wks', 'LIVE_CDC');
    db.insert('public.orders', 61);
    await until(() => sink.events.length === 61, 'the snapshot and the streamed insert');
    const status = await engine.status('wks');
    expect(status.workers).toEqual({
      setting: 2,
      threads: 2,
      mode: 'workers',
      chunks: 3,
      stream: {
        mode: 'inline',
        inlineReason:
          'the source connector in-memory-raw cannot decode changes in a worker thread (its worker module has no createChangeDecoder)',
      },
    });
    expect(status.sinks[0]!.encodedWrites).toBe(3);
    // The stream stays on the main thread.
    expect(sink.events.find((e) => e.op === 'insert')?.key).toEqual({ id: '61' });
  });

  it('a record the sink refuses: the batch is written again decoded, so on_error applies to that one event', async () => {
    const run = await runSnapshot(2, {
      onError: 'skip',
      prepare: (sink) => {
        sink.refuseRecord = (r) => r.after?.id === '77';
        sink.refuse = (e) => e.table.name === 'orders' && e.after?.id === '77';
      },
    });
    expect(run.sink.events.map((e) => `${e.table.name}:${e.key.id}`)).not.toContain('orders:77');
    expect(new Set(run.sink.events.map((e) => `${e.table.name}:${e.key.id}`)).size).toBe(154);
    expect(run.status.sinks[0]!.skippedEvents).toBe(1);
  });

  it('an event the worker cannot encode: that chunk is written decoded, so on_error applies', async () => {
    const run = await runSnapshot(2, {
      onError: 'skip',
      prepare: (sink, db) => {
        db.tables.get('public.orders')!.rows.get(12)!.status = 'huge';
        sink.setup = { refuseStatus: 'huge' };
        sink.refuse = (e) => e.after?.status === 'huge';
      },
    });
    expect(run.sink.events.map((e) => `${e.table.name}:${e.key.id}`)).not.toContain('orders:12');
    expect(new Set(run.sink.events.map((e) => `${e.table.name}:${e.key.id}`)).size).toBe(154);
    expect(run.status.sinks[0]!.skippedEvents).toBe(1);
    // The other chunks still went through the workers.
    expect(run.sink.encodedEvents).toBe(155 - 40);
  });

  it('a worker that dies fails the run (NS_R2012, retriable): the pipeline restarts from its checkpoints and completes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ns-worker-crash-'));
    try {
      const marker = join(dir, 'crashed');
      const run = await runSnapshot(2, {
        prepare: (sink) => {
          sink.setup = { crashMarker: marker };
        },
      });
      expect(existsSync(marker)).toBe(true);
      expect(h.log.lines.some((l) => l.includes('NS_R2012'))).toBe(true);
      expect(new Set(run.sink.events.map((e) => `${e.table.name}:${e.key.id}`)).size).toBe(155);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a sink that falls behind spills encoded chunks as decoded events, and gets every row once it catches up', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 20 });
    db.createTable('public', 'orders', 200);
    const fast = new WorkerSink();
    const slow = new WorkerSink();
    slow.gate.close();
    const p = testPipeline(db, { name: 'wksp', type: 'snapshot', sinks: [{ sink: fast }, { sink: slow }], workers: 2 });
    p.materialized.source.definition = workerSourceDefinition(db);
    p.materialized.sinks[0]!.definition = fast.definition();
    p.materialized.sinks[1]!.definition = slow.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: { ...WORKER_RUNTIME, dataDir: h.dir, queue: { maxEvents: 30 } } });
    await engine.start();
    await engine.apply('wksp', p.definition, p.hash, p.type);
    await until(() => fast.events.length === 200, 'the fast sink to have every row');
    const behind = await engine.status('wksp');
    expect(behind.sinks[1]!.state).toBe('spilling');
    expect(behind.sinks[1]!.spillEvents).toBeGreaterThan(0);
    slow.gate.release();
    await waitForState(engine, 'wksp', 'COMPLETED');
    // A lane whose memory queue is full spills whatever it is given (the fast one too, at
    // times: the snapshot does not wait for lanes that can spill); the rest went encoded.
    expect(fast.encodedEvents).toBeGreaterThan(0);
    expect(comparable(slow.events)).toEqual(comparable(fast.events));
    expect(new Set(slow.events.map((e) => e.key.id)).size).toBe(200);
    // What went through the spill log was written decoded.
    expect(slow.encodedEvents).toBeLessThan(200);
  });

  it('runs inline, saying once why, when a part cannot work in a worker at run time', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 20 });
    db.createTable('public', 'orders', 30);
    const sink = new WorkerSink();
    sink.setup = undefined;
    const p = testPipeline(db, { name: 'wki', type: 'snapshot', sinks: [{ sink }], workers: 2 });
    p.materialized.source.definition = workerSourceDefinition(db);
    p.materialized.sinks[0]!.definition = sink.definition();
    h.registry.add(p);
    const engine = h.engine({ runtime: WORKER_RUNTIME });
    await engine.start();
    await engine.apply('wki', p.definition, p.hash, p.type);
    await waitForState(engine, 'wki', 'COMPLETED');
    expect(sink.events).toHaveLength(30);
    expect(sink.encodedBatches).toBe(0);
    const said = h.log.lines.filter((l) => l.includes('the snapshot runs on the main thread'));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('sink 0:mem0 cannot encode these tables in a worker thread now');
  });
});

describe('the main-thread snapshot line', () => {
  it('is not logged for a cdc pipeline (it takes no snapshot), only for a pipeline whose snapshot runs inline', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const cdc = testPipeline(db, { name: 'wkc', type: 'cdc', sinks: [{ sink: new InMemorySink() }], workers: 2 });
    const full = testPipeline(db, { name: 'wkf', sinks: [{ sink: new InMemorySink() }], workers: 2 });
    h.registry.add(cdc);
    h.registry.add(full);
    const engine = h.engine();
    await engine.start();
    await engine.apply('wkc', cdc.definition, cdc.hash, cdc.type);
    await waitForState(engine, 'wkc', 'LIVE_CDC');
    // The status still says why no worker thread decodes a snapshot.
    expect((await engine.status('wkc')).workers).toMatchObject({
      mode: 'inline',
      inlineReason: 'a cdc pipeline takes no snapshot',
    });
    expect(h.log.lines.filter((l) => l.includes('the snapshot runs on the main thread'))).toEqual([]);
    await engine.apply('wkf', full.definition, full.hash, full.type);
    await waitForState(engine, 'wkf', 'LIVE_CDC');
    const said = h.log.lines.filter((l) => l.includes('the snapshot runs on the main thread'));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('the source connector in-memory cannot decode rows in a worker thread');
  });
});

describe('the Node options worker threads get', () => {
  it('keeps what decides how modules load and leaves out process-wide options a worker refuses', () => {
    // The nanosync binary starts with --max-semi-space-size=16 (its shebang); a Worker given
    // that option throws ERR_WORKER_INVALID_EXEC_ARGV.
    expect(
      workerExecArgv([
        '--max-semi-space-size=16',
        '--conditions=@nanosync/source',
        '--import',
        'file:///tsx/esm.mjs',
        '--max-old-space-size=500',
        '--enable-source-maps',
        '-r',
        './hook.cjs',
        '--no-warnings',
      ]),
    ).toEqual([
      '--conditions=@nanosync/source',
      '--import',
      'file:///tsx/esm.mjs',
      '--enable-source-maps',
      '-r',
      './hook.cjs',
      '--no-warnings',
    ]);
  });
});
