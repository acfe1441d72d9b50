import type { PartitionSpec, Row, Source, TableSchema } from '@nanosync/core';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgFixture, uniqueName } from './fixture.js';

/**
 * readPartitionChunk: the bounded reads of the concurrent snapshot. Whatever the partition's
 * size, each call returns at most `maxRows` rows and stops at `maxBytes`, and the chunks of a
 * partition together hold each of its rows once.
 */

const orders = { schema: 'public', name: 'orders' };

async function createOrders(admin: pg.Client, rows: number, noteWidth = 40): Promise<void> {
  await admin.query('CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, amount numeric(12,2))');
  await admin.query(
    `INSERT INTO public.orders SELECT g, repeat('x', ${noteWidth} + g % 50), g * 1.25 FROM generate_series(1, $1) g`,
    [rows],
  );
  await admin.query('ALTER TABLE public.orders SET (autovacuum_enabled = false)');
}

async function readChunks(
  source: Source,
  schema: TableSchema,
  partition: PartitionSpec,
  bound: { maxRows: number; maxBytes: number },
  between?: (chunk: number) => Promise<void>,
): Promise<{ rows: Row[]; sizes: number[]; bytes: number[] }> {
  const rows: Row[] = [];
  const sizes: number[] = [];
  const bytes: number[] = [];
  let after: unknown;
  for (let n = 0; ; n++) {
    const chunk = await source.readPartitionChunk!(schema, partition, {
      after,
      ...bound,
      signal: new AbortController().signal,
    });
    rows.push(...chunk.rows);
    sizes.push(chunk.rows.length);
    bytes.push(chunk.bytes);
    if (chunk.next === undefined) break;
    after = chunk.next;
    await between?.(n);
  }
  return { rows, sizes, bytes };
}

describe('readPartitionChunk (concurrent snapshot chunks)', () => {
  it('reads one open-ended partition holding the whole table in chunks of at most maxRows, rows added meanwhile included', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 30_000);
    await fx.admin.query('DELETE FROM public.orders WHERE id % 7 = 0');
    await fx.grantRead([orders]);
    const pipeline = uniqueName('chunks');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    await source.open([orders], { wantSnapshot: false });
    const [schema] = await source.describe([orders]);
    // A plan stored by an older version (or for a table never analysed): one partition, open-ended.
    const partition: PartitionSpec = { id: '0', bounds: { startPage: 0, endPage: null }, estimatedRows: 1 };

    let added = 0;
    const { rows, sizes } = await readChunks(
      source,
      schema!,
      partition,
      { maxRows: 1000, maxBytes: 64 << 20 },
      async (n) => {
        // The table grows while it is read: new pages at its end belong to the open-ended partition.
        if (n % 5 === 0) {
          await fx.admin.query(
            `INSERT INTO public.orders SELECT g, 'late', 1 FROM generate_series(${100_000 + added}, ${100_000 + added + 199}) g`,
          );
          added += 200;
        }
      },
    );
    const ids = rows.map((r) => r.id as string);
    expect(added).toBeGreaterThan(0);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1000);
    // No row twice; every row that was there before the read began, read; rows appended to
    // the table's end while it was read, read too (a row put into a page already read is the
    // stream's to carry, not the snapshot's).
    expect(new Set(ids).size).toBe(ids.length);
    const initial = ids.filter((id) => Number(id) < 100_000);
    expect(initial).toHaveLength(30_000 - Math.floor(30_000 / 7));
    expect(ids.length - initial.length).toBeGreaterThan(0);
    expect(sizes.length).toBeGreaterThanOrEqual(Math.ceil(initial.length / 1000));
    expect(rows.find((r) => r.id === '3')).toEqual({ id: '3', note: 'x'.repeat(43), amount: '3.75' });
  });

  it('stops a chunk at maxBytes when rows are wide, and still reads every row once', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 3_000, 3_000);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('chunkbytes');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    await source.open([orders], { wantSnapshot: false });
    const [schema] = await source.describe([orders]);
    const partition: PartitionSpec = { id: '0', bounds: { startPage: 0, endPage: null } };
    const maxBytes = 64 * 1024;
    const { rows, sizes, bytes } = await readChunks(source, schema!, partition, { maxRows: 10_000, maxBytes });
    const widest = 3_000 + 49 + 30;
    expect(Math.max(...bytes)).toBeLessThan(maxBytes + widest);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(Math.ceil(maxBytes / 3_000) + 1);
    expect(new Set(rows.map((r) => r.id)).size).toBe(3_000);
    expect(rows).toHaveLength(3_000);
  });

  it('the chunks of a closed page range hold exactly the rows readPartition reads for it', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 20_000);
    await fx.admin.query('ANALYZE public.orders');
    await fx.grantRead([orders]);
    const pipeline = uniqueName('chunkrange');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    await source.open([orders], { wantSnapshot: false });
    const [schema] = await source.describe([orders]);
    const plan = await source.planPartitions(schema!, { targetRowsPerPartition: 7_000 });
    expect(plan.length).toBeGreaterThanOrEqual(2);
    const middle = plan[1]!;
    const whole: Row[] = [];
    for await (const part of source.readPartition(schema!, middle, {
      maxRowsPerChunk: 100_000,
      signal: new AbortController().signal,
    }))
      whole.push(...part);
    const { rows, sizes } = await readChunks(source, schema!, middle, { maxRows: 500, maxBytes: 64 << 20 });
    expect(Math.max(...sizes)).toBeLessThanOrEqual(500);
    const ids = (list: Row[]) => list.map((r) => Number(r.id)).sort((a, b) => a - b);
    expect(ids(rows)).toEqual(ids(whole));
  });
});
