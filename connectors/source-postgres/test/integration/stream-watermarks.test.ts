import type { ChangeBatch } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { decodePosition } from '../../src/position.js';
import { expectOrderedBatches, ids, streamPipeline, terminateWalsender } from './stream-helpers.js';

const items = { schema: 'public', name: 'items' };
const ITEMS_DDL = ['CREATE TABLE public.items (id int PRIMARY KEY, label text)'];

const watermarks = (batches: ChangeBatch[]) => batches.flatMap((b) => (b.watermark ? [b.watermark.id] : []));

/** Events delivered strictly between the watermark batches `low` and `high`. */
function between(batches: ChangeBatch[], low: string, high: string): number[] {
  const from = batches.findIndex((b) => b.watermark?.id === low);
  const to = batches.findIndex((b) => b.watermark?.id === high);
  return ids(batches.slice(from + 1, to).flatMap((b) => b.events));
}

describe('streamChanges: watermarks', () => {
  it("ignores another pipeline's watermarks and transactional messages; a reconnect between a low and a high watermark neither loses nor repeats a watermark or a change", async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const stream = p.open(p.startPosition, { watermarkPrefix: prefix });
    const emit = (messagePrefix: string, id: string, transactional = false) =>
      p.fx.admin.query('SELECT pg_logical_emit_message($1, $2, $3)', [transactional, messagePrefix, id]);

    await p.fx.admin.query("INSERT INTO public.items VALUES (1, 'before')");
    // Another pipeline's watermarks (its slot name in the prefix), one whose prefix only
    // starts like ours, and one of ours inside a transaction: none of them counts.
    await emit('nanosync.watermark.other_pipeline', 'low-foreign');
    await emit(`${prefix}x`, 'low-lookalike');
    await p.fx.admin.query('BEGIN');
    await emit(prefix, 'low-transactional', true);
    await p.fx.admin.query("INSERT INTO public.items VALUES (2, 'with a transactional message')");
    await p.fx.admin.query('COMMIT');
    await emit(prefix, 'low-1');
    await p.fx.admin.query("INSERT INTO public.items SELECT g, 'in the chunk' FROM generate_series(3, 10) g");
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 10), 'the changes after the low watermark');
    expect(watermarks(stream.batches)).toEqual(['low-1']);

    // The replication connection dies between the watermarks; nothing after the low
    // watermark's changes is acknowledged yet for some of them.
    stream.autoAcknowledge = false;
    await p.fx.admin.query("INSERT INTO public.items SELECT g, 'unacknowledged' FROM generate_series(11, 20) g");
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 20), 'the unacknowledged changes');
    await terminateWalsender(p.fx.admin, p.slot);
    await p.fx.admin.query("INSERT INTO public.items SELECT g, 'after the reconnect' FROM generate_series(21, 30) g");
    await emit('nanosync.watermark.other_pipeline', 'high-foreign');
    await emit(prefix, 'high-1');
    await stream.waitFor(() => watermarks(stream.batches).includes('high-1'), 'the high watermark');
    stream.autoAcknowledge = true;

    expect(stream.error).toBeUndefined();
    expect(p.logLines.some((l) => l.includes('reconnecting'))).toBe(true);
    expect(watermarks(stream.batches)).toEqual(['low-1', 'high-1']);
    expect(ids(stream.events)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(between(stream.batches, 'low-1', 'high-1')).toEqual(Array.from({ length: 28 }, (_, i) => i + 3));
    // Each watermark sits between transactions: at index 0 of its own LSN.
    for (const b of stream.batches.filter((b) => b.watermark))
      expect(decodePosition(b.watermark!.position).index).toBe(0);
    expectOrderedBatches(stream.batches);
  });
});

describe('streamChanges: a partition attached while streaming', () => {
  const DDL = [
    `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, note text, PRIMARY KEY (id, created))
       PARTITION BY RANGE (created)`,
    `CREATE TABLE public.orders_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
    `INSERT INTO public.orders SELECT g, '2024-01-05', 'seed' FROM generate_series(1, 10) g`,
  ];
  const orders = { schema: 'public', name: 'orders' };

  it('the chunk messages of a process that died before delivering them make the stream read the partition again, once; other changes keep flowing', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    // No periodic check during the test: only the messages can start the read.
    const stream = p.open(p.startPosition, { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 });
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'streamed')`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 100), 'the stream running');

    await p.fx.admin.query('CREATE TABLE public.orders_02 (LIKE public.orders INCLUDING ALL)');
    await p.fx.admin.query(
      `INSERT INTO public.orders_02 SELECT g, '2024-02-03', 'brought' FROM generate_series(1000, 1499) g`,
    );
    await p.fx.admin.query(
      `ALTER TABLE public.orders ATTACH PARTITION public.orders_02 FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`,
    );
    // What the dead process left in the WAL: its low and high messages, its rows never delivered.
    const left = (attach: 'low' | 'high') =>
      JSON.stringify({ attach, id: 'dead0000', table: orders, leaf: { schema: 'public', name: 'orders_02' } });
    await p.fx.admin.query('SELECT pg_logical_emit_message(false, $1, $2)', [`${prefix}.attach`, left('low')]);
    await p.fx.admin.query('SELECT pg_logical_emit_message(false, $1, $2)', [`${prefix}.attach`, left('high')]);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (101, '2024-01-07', 'streamed')`);

    await stream.waitFor(
      () =>
        stream.events.filter((e) => e.op === 'read').length >= 500 && stream.events.some((e) => e.after?.id === 101),
      'the partition read again',
    );
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (102, '2024-02-07', 'after')`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 102), 'a change after the chunk');
    const reads = stream.events.filter((e) => e.op === 'read');
    expect(ids(reads).sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => 1000 + i));
    expect(reads.every((e) => e.table.name === 'orders' && e.after?.note === 'brought')).toBe(true);
    expect(reads[0]!.key).toEqual({ id: 1000, created: '2024-02-03' });
    expectOrderedBatches(stream.batches);
    // The chunk is one committed unit: a safePosition right after its last row.
    const last = reads.at(-1)!.position;
    expect(stream.batches.some((b) => b.safePosition === last)).toBe(true);
  });
});

describe('streamChanges: a primary key redefined while streaming', () => {
  const DDL = [
    'CREATE TABLE public.items (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)',
    `INSERT INTO public.items SELECT g, 'c' || g, 'seed' FROM generate_series(1, 50) g`,
  ];

  it('a truncate of the table, then its rows again under the new key; changes in between stay newer', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [items] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const stream = p.open(p.startPosition, { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 });
    await p.fx.admin.query(`UPDATE public.items SET note = 'old key' WHERE id = 1`);
    await stream.waitFor(() => stream.events.length >= 1, 'the update under the old key');
    expect(stream.events[0]!.key).toEqual({ id: 1 });

    await p.fx.admin.query('BEGIN');
    await p.fx.admin.query('ALTER TABLE public.items DROP CONSTRAINT items_pkey');
    await p.fx.admin.query('ALTER TABLE public.items ADD PRIMARY KEY (code)');
    await p.fx.admin.query('COMMIT');
    await p.fx.admin.query(`UPDATE public.items SET note = 'new key' WHERE id = 2`);
    await p.fx.admin.query('DELETE FROM public.items WHERE id = 3');
    await stream.waitFor(() => stream.events.filter((e) => e.op === 'read').length >= 40, 'the rows again');
    await p.fx.admin.query(`UPDATE public.items SET note = 'after' WHERE id = 4`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.note === 'after'), 'a change after the chunk');

    const ops = stream.events.map((e) => e.op);
    const truncateAt = ops.indexOf('truncate');
    expect(truncateAt).toBeGreaterThan(0);
    expect(stream.events[truncateAt]!.table.keyColumns).toEqual(['code']);
    const reads = stream.events.filter((e) => e.op === 'read');
    expect(stream.events.indexOf(reads[0]!)).toBeGreaterThan(truncateAt);
    // Keyed by the new key; row 3 is gone; row 2's update is newer than or as new as its read.
    expect(reads.every((e) => Object.keys(e.key).join() === 'code')).toBe(true);
    expect(reads.some((e) => e.key.code === 'c3')).toBe(false);
    expect(new Set(reads.map((e) => e.key.code)).size).toBe(reads.length);
    // Reduced with the truncate applied, the stream holds exactly the table.
    const live = new Map<string, unknown>();
    for (const e of stream.events.slice(truncateAt + 1)) {
      if (e.op === 'delete') live.delete(String(e.key.code));
      else live.set(String(e.key.code), e.after?.note);
    }
    const { rows } = await p.fx.admin.query('SELECT code, note FROM public.items');
    expect(Object.fromEntries(live)).toEqual(Object.fromEntries(rows.map((r) => [r.code, r.note])));
    expectOrderedBatches(stream.batches);
  });
});

describe('streamChanges: a partition attached while no stream runs', () => {
  const DDL = [
    `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, note text, PRIMARY KEY (id, created))
       PARTITION BY RANGE (created)`,
    `CREATE TABLE public.orders_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
    `INSERT INTO public.orders SELECT g, '2024-01-05', 'seed' FROM generate_series(1, 10) g`,
  ];
  const orders = { schema: 'public', name: 'orders' };

  it('the next stream finds it (linked after the slot’s catalog_xmin) and reads its rows; older partitions are not read', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const options = { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'streamed')`);
    await first.waitFor(() => first.lastSafePosition !== undefined, 'the first change acknowledged');
    const acknowledged = first.lastSafePosition!;
    await first.stop();

    // While no stream runs: a table with rows attached.
    await p.fx.admin.query('CREATE TABLE public.orders_02 (LIKE public.orders INCLUDING ALL)');
    await p.fx.admin.query(
      `INSERT INTO public.orders_02 SELECT g, '2024-02-03', 'brought' FROM generate_series(1000, 1199) g`,
    );
    await p.fx.admin.query(
      `ALTER TABLE public.orders ATTACH PARTITION public.orders_02 FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`,
    );

    const second = p.open(acknowledged, options);
    await second.waitFor(() => second.events.filter((e) => e.op === 'read').length >= 200, 'the attached rows');
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (101, '2024-01-07', 'after')`);
    await second.waitFor(() => second.events.some((e) => e.after?.id === 101), 'a change after them');
    const reads = second.events.filter((e) => e.op === 'read');
    expect(ids(reads).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => 1000 + i));
    expect(p.logLines.some((l) => l.includes('attached to a captured table recently'))).toBe(true);
    expectOrderedBatches(second.batches);
  });
});

describe('streamChanges: a primary key redefined while no stream runs', () => {
  const DDL = [
    'CREATE TABLE public.items (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)',
    `INSERT INTO public.items SELECT g, 'c' || g, 'seed' FROM generate_series(1, 50) g`,
  ];

  it('the next stream sees a key index newer than the slot’s catalog_xmin: a truncate, then the rows under the new key; an unchanged key reads nothing', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [items] });
    const options = { watermarkPrefix: `nanosync.watermark.${p.slot}`, catalogCheckIntervalMs: 3_600_000 };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`UPDATE public.items SET note = 'old key' WHERE id = 1`);
    await first.waitFor(() => first.lastSafePosition !== undefined, 'a change under the old key');
    expect(first.events.some((e) => e.op === 'read' || e.op === 'truncate')).toBe(false);
    const acknowledged = first.lastSafePosition!;
    await first.stop();

    await p.fx.admin.query('BEGIN');
    await p.fx.admin.query('ALTER TABLE public.items DROP CONSTRAINT items_pkey');
    await p.fx.admin.query('ALTER TABLE public.items ADD PRIMARY KEY (code)');
    await p.fx.admin.query('COMMIT');
    await p.fx.admin.query(`UPDATE public.items SET note = 'new key' WHERE id = 2`);

    const second = p.open(acknowledged, options);
    await second.waitFor(() => second.events.filter((e) => e.op === 'read').length >= 49, 'the rows again');
    const truncateAt = second.events.findIndex((e) => e.op === 'truncate');
    expect(truncateAt).toBeGreaterThanOrEqual(0);
    const reads = second.events.filter((e) => e.op === 'read');
    expect(reads.every((e) => Object.keys(e.key).join() === 'code')).toBe(true);
    expect(second.events.indexOf(reads[0]!)).toBeGreaterThan(truncateAt);
    expectOrderedBatches(second.batches);
  });
});
