import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PartitionSpec, ReadPartitionChunkOptions, Source } from '../../src/contract/connector.js';
import { createLogger } from '../../src/log/logger.js';
import type { ChangeEvent, Row, TableSchema } from '../../src/model.js';
import type { FanOut } from '../../src/runtime/fan-out.js';
import { SnapshotCoordinator } from '../../src/runtime/snapshot-coordinator.js';
import { PipelineStats } from '../../src/runtime/stats.js';
import { WatermarkMerge } from '../../src/runtime/watermark-merge.js';
import { openSqliteStateStore } from '../../src/state/sqlite.js';
import type { StateStore } from '../../src/state/store.js';

/**
 * The concurrent snapshot's memory bound at the coordinator: a partition larger than
 * `chunk_rows` / `chunk_bytes` (as a plan persisted by an older version, or the open-ended
 * last partition of a grown table) is read as several bounded chunks, each between its own
 * watermarks. No real source can run in a unit test: `StubChunkSource` is a test double
 * whose stream reaches each watermark as soon as it is written.
 */

const table: TableSchema = {
  schema: 'public',
  name: 'big',
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'doc', type: { kind: 'string' }, nullable: true },
  ],
  keyColumns: ['id'],
};

const ROWS = 25_000;
const rowOf = (id: number, width: number): Row => ({ id, doc: 'x'.repeat(width) });

interface Delivered {
  rows: number;
  bytes: number;
}

interface Read extends Delivered {
  after: number | undefined;
  /** Set when the chunk was read again within recorded bounds. */
  upTo?: number | undefined;
}

function stubChunkSource(merge: WatermarkMerge, emitted: ChangeEvent[], width: number) {
  const rows = Array.from({ length: ROWS }, (_, i) => rowOf(i + 1, width));
  const size = (r: Row) => JSON.stringify(r).length;
  const reads: Read[] = [];
  const source = {
    // The whole partition at once: what a reader without the bound buffers.
    async *readPartition() {
      yield rows;
    },
    async readPartitionChunk(_t: TableSchema, _p: PartitionSpec, options: ReadPartitionChunkOptions) {
      const after = options.after as number | undefined;
      let i = after ?? 0;
      const out: Row[] = [];
      let bytes = 0;
      if (options.upTo !== undefined) {
        // Read again over the recorded range, whatever the bounds.
        const end = (options.upTo.next as number | undefined) ?? rows.length;
        while (i < end) out.push(rows[i++]!);
        reads.push({ rows: out.length, bytes, after, upTo: options.upTo.next as number | undefined });
        return { rows: out, bytes, next: options.upTo.next };
      }
      while (i < rows.length && out.length < options.maxRows && bytes < options.maxBytes) {
        const r = rows[i++]!;
        out.push(r);
        bytes += size(r);
      }
      reads.push({ rows: out.length, bytes, after });
      return { rows: out, bytes, next: i < rows.length ? i : undefined };
    },
    async writeWatermark(id: string) {
      // The stream reaches the watermark right after it is written.
      queueMicrotask(() => {
        const out = merge.onWatermark({ id, position: `wm-${id}` });
        if (out) emitted.push(...out);
      });
    },
  } as unknown as Source;
  return { source, reads };
}

const fanOut = {
  push: () => false,
  waitForRoom: async () => {},
  barrier: async () => {},
} as unknown as FanOut;

let dir: string | undefined;
let store: StateStore | undefined;
afterEach(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  store = undefined;
  dir = undefined;
});

async function snapshotOnePartition(
  bound: { rows: number; bytes: number },
  width: number,
  extra: {
    /** Runs on the store before the snapshot (chunk records of an earlier run). */
    prepare?: (store: StateStore) => Promise<void>;
    oneChunkInFlight?: boolean;
    concurrency?: number;
    fanOut?: FanOut;
    wrapStore?: (store: StateStore) => StateStore;
    /** Blocking mode: no merge, the rows go to the sinks at the snapshot's position. */
    blocking?: boolean;
    /** Replaces the stub's chunk reads (it gets the stub's own). */
    wrapRead?: (read: Source['readPartitionChunk'] & {}) => Source['readPartitionChunk'];
    maxAttempts?: number;
  } = {},
) {
  dir = await mkdtemp(join(tmpdir(), 'ns-chunks-'));
  store = await openSqliteStateStore(join(dir, 'state.db'));
  // One partition for the whole table, as stored by a version that planned larger partitions.
  await store.savePartitions('p', 'public.big', [
    { id: '0', ordinal: 0, bounds: { from: 1, to: null }, estimatedRows: ROWS },
  ]);
  await extra.prepare?.(store);
  const merge = new WatermarkMerge();
  const emitted: ChangeEvent[] = [];
  const { source, reads } = stubChunkSource(merge, emitted, width);
  const delivered: Delivered[] = [];
  const deliver = merge.deliver.bind(merge);
  merge.deliver = (chunk, rows) => {
    delivered.push({ rows: rows.length, bytes: rows.reduce((n, r) => n + JSON.stringify(r).length, 0) });
    deliver(chunk, rows);
  };
  if (extra.wrapRead) {
    const own = source.readPartitionChunk!.bind(source);
    source.readPartitionChunk = extra.wrapRead(own);
  }
  const coordinator = new SnapshotCoordinator({
    pipeline: 'p',
    source,
    store: extra.wrapStore ? extra.wrapStore(store) : store,
    fanOut: extra.fanOut ?? fanOut,
    tables: [table],
    tableKey: () => 'public.big',
    position: 'start',
    ...(extra.blocking ? {} : { merge }),
    snapshotToken: undefined,
    concurrency: extra.concurrency ?? 2,
    targetRowsPerPartition: 100_000,
    chunkRows: 2_000,
    concurrentChunk: bound,
    retry: { maxAttempts: extra.maxAttempts ?? 1, baseDelayMs: 1, maxDelayMs: 1 },
    ...(extra.oneChunkInFlight ? { oneChunkInFlight: true } : {}),
    signal: new AbortController().signal,
    logger: createLogger({ level: 'error' }),
    stats: new PipelineStats(),
  });
  await coordinator.run();
  const [record] = await store.listPartitions('p', 'public.big');
  return { delivered, reads, emitted, record, chunks: await store.listChunks('p') };
}

describe('concurrent snapshot: a partition larger than the chunk bound', () => {
  it('is read in chunks of at most snapshot.chunk_rows rows, each between its own watermarks', async () => {
    const { delivered, emitted, record } = await snapshotOnePartition({ rows: 1_000, bytes: 64 * 1024 * 1024 }, 10);
    expect(delivered.length).toBe(25);
    expect(Math.max(...delivered.map((d) => d.rows))).toBe(1_000);
    const ids = new Set(emitted.map((e) => e.key.id));
    expect(ids.size).toBe(ROWS);
    expect(new Set(emitted.map((e) => e.position)).size).toBe(25);
    expect(record).toMatchObject({ status: 'done', rowsRead: ROWS });
  });

  it('is read in chunks of at most snapshot.chunk_bytes (plus the row that crossed it) when rows are wide', async () => {
    const width = 1_000;
    const { delivered, reads, emitted } = await snapshotOnePartition({ rows: 10_000, bytes: 64 * 1024 }, width);
    const rowBytes = JSON.stringify(rowOf(ROWS, width)).length;
    expect(reads.length).toBeGreaterThan(ROWS / 70);
    for (const d of delivered) expect(d.bytes).toBeLessThan(64 * 1024 + rowBytes);
    expect(new Set(emitted.map((e) => e.key.id)).size).toBe(ROWS);
  });
});

/** `store` with some methods replaced (the others still the store's own). */
function overriding(store: StateStore, methods: Partial<StateStore>): StateStore {
  return Object.assign(Object.create(store) as StateStore, methods);
}

describe('snapshot chunk progress', () => {
  it('resumes a partition after its last chunk recorded as done, and reads a recorded chunk again only within its bounds, under its id', async () => {
    const { reads, emitted, record, chunks } = await snapshotOnePartition(
      { rows: 1_000, bytes: 64 * 1024 * 1024 },
      10,
      {
        prepare: async (s) => {
          // An earlier run: chunks 0 and 1 done, chunk 2 read (with an odd end) but not done.
          const base = { table: 'public.big', partition: '0' };
          await s.saveChunk('p', {
            ...base,
            ordinal: 0,
            id: 'c0',
            after: null,
            next: 1_000,
            status: 'done',
            position: 'wm-a',
            rows: 1_000,
          });
          await s.saveChunk('p', {
            ...base,
            ordinal: 1,
            id: 'c1',
            after: 1_000,
            next: 2_000,
            status: 'done',
            position: 'wm-b',
            rows: 1_000,
          });
          await s.saveChunk('p', { ...base, ordinal: 2, id: 'c2', after: 2_000, next: 2_700, status: 'read' });
        },
      },
    );
    // No acknowledged chunk is read again; chunk 2 exactly over [2000, 2700); then new chunks from 2700.
    expect(reads[0]).toMatchObject({ after: 2_000, upTo: 2_700, rows: 700 });
    expect(reads.slice(1).every((r) => r.upTo === undefined && (r.after ?? 0) >= 2_700)).toBe(true);
    expect(reads[1]?.after).toBe(2_700);
    const ids = emitted.map((e) => Number(e.key.id));
    expect(Math.min(...ids)).toBe(2_001);
    expect(new Set(ids).size).toBe(ROWS - 2_000);
    expect(ids.length).toBe(ROWS - 2_000);
    // The chunk read again keeps its id; every new chunk has its own.
    expect(new Set(emitted.filter((e) => Number(e.key.id) <= 2_700).map((e) => e.chunk))).toEqual(new Set(['c2']));
    const newIds = new Set(emitted.filter((e) => Number(e.key.id) > 2_700).map((e) => e.chunk));
    expect(newIds.size).toBe(reads.length - 1);
    expect(newIds.has(undefined)).toBe(false);
    // The partition's rows count the done chunks of the earlier run; its chunk records are gone.
    expect(record).toMatchObject({ status: 'done', rowsRead: ROWS });
    expect(chunks).toEqual([]);
  });

  it('records each chunk with its bounds before its rows go out, and as done with its position once durable', async () => {
    const saved: string[] = [];
    await snapshotOnePartition({ rows: 10_000, bytes: 64 * 1024 * 1024 }, 10, {
      wrapStore: (s) =>
        overriding(s, {
          saveChunk: async (pipeline, chunk, fence) => {
            saved.push(
              `${chunk.ordinal}:${chunk.status}:${JSON.stringify(chunk.after)}-${JSON.stringify(chunk.next)}:${chunk.position ?? ''}`,
            );
            await s.saveChunk(pipeline, chunk, fence);
          },
        }),
    });
    // 3 chunks: each recorded as read, then done at its high watermark; the last one's done is the partition's.
    expect(saved.filter((x) => x.includes(':read:'))).toEqual([
      '0:read:null-10000:',
      '1:read:10000-20000:',
      '2:read:20000-null:',
    ]);
    expect(saved.filter((x) => x.includes(':done:')).map((x) => x.replace(/wm-.*/, 'wm'))).toEqual([
      '0:done:null-10000:wm',
      '1:done:10000-20000:wm',
    ]);
  });

  it('with a sink that skips its last committed chunk, a chunk to read again goes out before any new chunk', async () => {
    // The sink skips only the chunk its last transaction named: a new chunk written first
    // would make it forget that one, and the chunk read again would be written twice.
    // One worker: in plan order, partition 0 (new chunks only) would be read whole first.
    const { emitted } = await snapshotOnePartition({ rows: 500, bytes: 64 * 1024 * 1024 }, 10, {
      oneChunkInFlight: true,
      concurrency: 1,
      prepare: async (s) => {
        await s.clearPartitions('p');
        await s.savePartitions('p', 'public.big', [
          { id: '0', ordinal: 0, bounds: null },
          { id: '1', ordinal: 1, bounds: null },
        ]);
        await s.saveChunk('p', {
          table: 'public.big',
          partition: '1',
          ordinal: 0,
          id: 'again',
          after: null,
          next: 500,
          status: 'read',
        });
      },
    });
    const first = emitted.find((e) => e.chunk !== undefined)?.chunk;
    expect(first).toBe('again');
    expect(emitted.filter((e) => e.chunk === 'again').length).toBe(500);
  });

  it('with a sink that skips its last committed chunk, no chunk goes out while the one before is not recorded', async () => {
    const run = async (oneChunkInFlight: boolean) => {
      let unrecorded = 0;
      let most = 0;
      const slowFanOut = {
        push: () => false,
        waitForRoom: async () => {},
        // Durable a little later, so a chunk may be emitted while the one before is not recorded.
        barrier: () => new Promise<void>((resolve) => setTimeout(resolve, 5)),
      } as unknown as FanOut;
      await snapshotOnePartition({ rows: 500, bytes: 64 * 1024 * 1024 }, 10, {
        oneChunkInFlight,
        fanOut: slowFanOut,
        prepare: async (s) => {
          await s.clearPartitions('p');
          await s.savePartitions('p', 'public.big', [
            { id: '0', ordinal: 0, bounds: null },
            { id: '1', ordinal: 1, bounds: null },
          ]);
        },
        wrapStore: (s) =>
          overriding(s, {
            saveChunk: async (pipeline, chunk, fence) => {
              if (chunk.status === 'read') most = Math.max(most, ++unrecorded);
              else unrecorded--;
              await s.saveChunk(pipeline, chunk, fence);
            },
            markPartitionDone: async (pipeline, t, id, rows, fence) => {
              unrecorded--;
              await s.markPartitionDone(pipeline, t, id, rows, fence);
            },
          }),
      });
      await store?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
      store = undefined;
      dir = undefined;
      return most;
    };
    expect(await run(true)).toBe(1);
    // Without it two workers (and a worker's next chunk) overlap: what the gate prevents.
    expect(await run(false)).toBeGreaterThan(1);
  });
});

describe('blocking snapshot: the next chunk is read while this one goes out', () => {
  /** A fan-out that keeps what it gets and logs each push. */
  const collecting = (log: string[], pushed: ChangeEvent[]) =>
    ({
      push: (events: ChangeEvent[]) => {
        log.push(`push ${events[0]!.chunk}`);
        pushed.push(...events);
        return false;
      },
      waitForRoom: async () => {},
      barrier: async () => {},
    }) as unknown as FanOut;

  it('starts the next read once a chunk is read, before the chunk is recorded and pushed; every row goes out once, in order, each chunk recorded before its rows', async () => {
    const log: string[] = [];
    const pushed: ChangeEvent[] = [];
    const ids = new Map<unknown, string>();
    const { record } = await snapshotOnePartition({ rows: 1_000, bytes: 64 * 1024 * 1024 }, 10, {
      blocking: true,
      concurrency: 1,
      fanOut: collecting(log, pushed),
      wrapRead: (read) => async (t, p, options) => {
        log.push(`read ${options.after ?? 0}`);
        return read(t, p, options);
      },
      wrapStore: (s) =>
        overriding(s, {
          saveChunk: async (pipeline, chunk, fence) => {
            if (chunk.status === 'read') {
              ids.set(chunk.after ?? 0, chunk.id);
              log.push(`record ${chunk.id}`);
            }
            await s.saveChunk(pipeline, chunk, fence);
          },
        }),
    });
    expect(record).toMatchObject({ status: 'done', rowsRead: ROWS });
    expect(pushed.map((e) => Number(e.key.id))).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1));
    expect(log.filter((l) => l.startsWith('read'))).toHaveLength(25);
    for (let k = 0; k < 25; k++) {
      const id = ids.get(k * 1_000);
      const recorded = log.indexOf(`record ${id}`);
      // Recorded before its rows go out, and read before that.
      expect(recorded, `chunk ${k}`).toBeGreaterThan(log.indexOf(`read ${k * 1_000}`));
      expect(log.indexOf(`push ${id}`)).toBeGreaterThan(recorded);
      // The next chunk's read started before this chunk was recorded.
      if (k < 24) expect(log.indexOf(`read ${(k + 1) * 1_000}`), `chunk ${k + 1}`).toBeLessThan(recorded);
    }
  });

  it('a read started ahead that fails is not lost: the partition is read again from its records, and every row goes out', async () => {
    const pushed: ChangeEvent[] = [];
    let failed = false;
    const { record } = await snapshotOnePartition({ rows: 1_000, bytes: 64 * 1024 * 1024 }, 10, {
      blocking: true,
      concurrency: 1,
      maxAttempts: 3,
      fanOut: collecting([], pushed),
      wrapRead: (read) => async (t, p, options) => {
        if (options.after === 5_000 && !failed) {
          failed = true;
          throw Object.assign(new Error('connection lost'), { retriable: true });
        }
        return read(t, p, options);
      },
    });
    expect(failed).toBe(true);
    expect(record).toMatchObject({ status: 'done', rowsRead: ROWS });
    // Every row, none missing; a chunk read before the failure may go out twice (replay).
    expect(new Set(pushed.map((e) => Number(e.key.id))).size).toBe(ROWS);
    expect(Number(pushed.at(-1)!.key.id)).toBe(ROWS);
  });
});
