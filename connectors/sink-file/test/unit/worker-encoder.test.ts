import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeEvent, EncodedBatch, Sink, TableSchema } from '@nanosync/core';
import { OrderedWorkerPool } from '@nanosync/core/host';
import { afterAll, describe, expect, it } from 'vitest';
import fileSink from '../../src/index.js';

/**
 * Lines encoded in real worker threads by the file sink's worker module and appended with
 * `writeEncoded` leave every file exactly as `write()` of the same events leaves it, one file
 * per table and one file for all, with tables interleaved and values JSON needs care with.
 */

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
    { name: 'ratio', type: { kind: 'float64' }, nullable: true },
    { name: 'blob', type: { kind: 'bytes' }, nullable: true },
  ],
};
const items: TableSchema = { ...orders, schema: 'sales', name: 'order.items' };

function eventsOf(n: number): ChangeEvent[] {
  return Array.from({ length: n }, (_, i): ChangeEvent => {
    const table = i % 7 < 4 ? orders : items;
    const row = {
      id: String(i),
      note: i % 5 === 0 ? null : `n${i} "q" \\ ü✓𝄞\n\t`,
      ratio: i % 3 === 0 ? Number.NaN : i / 7,
      blob: new Uint8Array([i & 255, 0, 255]),
    };
    if (i % 11 === 0) return { op: 'delete', table, key: { id: row.id }, before: row, position: `p${i}` };
    return i % 13 === 0
      ? { op: 'read', table, key: { id: row.id }, after: row, position: 'p0', chunk: 'c1' }
      : { op: 'insert', table, key: { id: row.id }, after: row, position: `p${i}`, commitTime: '2024-01-02T03:04:05Z' };
  });
}

const made: string[] = [];
let pool: OrderedWorkerPool<ChangeEvent[], EncodedBatch, { module: string; setup: unknown }> | undefined;
afterAll(async () => {
  await pool?.close();
  await Promise.all(made.map((d) => rm(d, { recursive: true, force: true })));
});

async function sinkAt(properties: Record<string, unknown>): Promise<Sink> {
  const parsed = fileSink.configSchema.safeParse(properties);
  if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
  const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };
  const sink = await fileSink.create(parsed.data, { pipeline: 't', logger, signal: new AbortController().signal });
  await sink.open([orders, items]);
  return sink;
}

async function files(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = await readFile(join(dir, name), 'utf8');
  return out;
}

describe('file sink lines encoded in worker threads', () => {
  for (const mode of ['path', 'file'] as const) {
    it(`${mode}: writeEncoded leaves the files exactly as write() does`, async () => {
      const inlineDir = await mkdtemp(join(tmpdir(), 'ns-file-inline-'));
      const encodedDir = await mkdtemp(join(tmpdir(), 'ns-file-encoded-'));
      made.push(inlineDir, encodedDir);
      const where = (dir: string) => (mode === 'path' ? { path: dir } : { file: join(dir, 'all.jsonl') });
      const batches = [eventsOf(40), eventsOf(25).map((e) => ({ ...e, position: `q${e.position}` }))];

      const inline = await sinkAt(where(inlineDir));
      for (const batch of batches) await inline.write(batch);
      await inline.close();

      const sink = await sinkAt(where(encodedDir));
      const setup = await sink.encoderSetup!([orders, items]);
      pool ??= await OrderedWorkerPool.start({
        name: 'file-encode-test',
        module: new URL('../fixtures/encode-worker.ts', import.meta.url),
        size: 2,
        data: { module: fileSink.workerModule!, setup },
        maxBytesPerWorker: 1 << 20,
        execArgv: ['--import', 'tsx', '--conditions=@nanosync/source'],
      });
      let n = 0;
      for await (const batch of pool.map(batches.map((task) => ({ task, bytes: 1 })))) {
        const events = batches[n++]!;
        expect(batch.records).toBe(events.length);
        await sink.writeEncoded!(batch, {
          count: events.length,
          first: events[0]!.position,
          last: events.at(-1)!.position,
        });
      }
      await sink.close();

      const expected = await files(inlineDir);
      expect(Object.keys(expected)).toHaveLength(mode === 'path' ? 2 : 1);
      expect(await files(encodedDir)).toEqual(expected);
    });
  }
});
