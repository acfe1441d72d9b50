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

function stubChunkSource(merge: WatermarkMerge, emitted: ChangeEvent[], width: number) {
  const rows = Array.from({ length: ROWS }, (_, i) => rowOf(i + 1, width));
  const size = (r: Row) => JSON.stringify(r).length;
  const reads: Delivered[] = [];
  const source = {
    // The whole partition at once: what a reader without the bound buffers.
    async *readPartition() {
      yield rows;
    },
    async readPartitionChunk(_t: TableSchema, _p: PartitionSpec, options: ReadPartitionChunkOptions) {
      let i = (options.after as number | undefined) ?? 0;
      const out: Row[] = [];
      let bytes = 0;
      while (i < rows.length && out.length < options.maxRows && bytes < options.maxBytes) {
        const r = rows[i++]!;
        out.push(r);
        bytes += size(r);
      }
      reads.push({ rows: out.length, bytes });
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

async function snapshotOnePartition(bound: { rows: number; bytes: number }, width: number) {
  dir = await mkdtemp(join(tmpdir(), 'ns-chunks-'));
  store = await openSqliteStateStore(join(dir, 'state.db'));
  // One partition for the whole table, as stored by a version that planned larger partitions.
  await store.savePartitions('p', 'public.big', [
    { id: '0', ordinal: 0, bounds: { from: 1, to: null }, estimatedRows: ROWS },
  ]);
  const merge = new WatermarkMerge();
  const emitted: ChangeEvent[] = [];
  const { source, reads } = stubChunkSource(merge, emitted, width);
  const delivered: Delivered[] = [];
  const deliver = merge.deliver.bind(merge);
  merge.deliver = (chunk, rows) => {
    delivered.push({ rows: rows.length, bytes: rows.reduce((n, r) => n + JSON.stringify(r).length, 0) });
    deliver(chunk, rows);
  };
  const coordinator = new SnapshotCoordinator({
    pipeline: 'p',
    source,
    store,
    fanOut,
    tables: [table],
    tableKey: () => 'public.big',
    position: 'start',
    merge,
    snapshotToken: undefined,
    concurrency: 2,
    targetRowsPerPartition: 100_000,
    chunkRows: 2_000,
    concurrentChunk: bound,
    retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
    signal: new AbortController().signal,
    logger: createLogger({ level: 'error' }),
    stats: new PipelineStats(),
  });
  await coordinator.run();
  const [record] = await store.listPartitions('p', 'public.big');
  return { delivered, reads, emitted, record };
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
