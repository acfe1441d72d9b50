import { checkHistoryOrder, reduceByKey } from '@nanosync/connector-testkit';
import type { ChangeBatch, ChangeEvent, Position } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { comparePositions, decodePosition } from '../../src/position.js';
import { readAll } from './fixture.js';
import {
  type ConsumedStream,
  expectOrderedBatches,
  ids,
  type StreamPipeline,
  streamPipeline,
  terminateWalsender,
} from './stream-helpers.js';

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

/** A partitioned `orders` with one monthly partition of 10 rows: the attach tests' starting point. */
const ORDERS_DDL = [
  `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, note text, PRIMARY KEY (id, created))
     PARTITION BY RANGE (created)`,
  `CREATE TABLE public.orders_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
  `INSERT INTO public.orders SELECT g, '2024-01-05', 'seed' FROM generate_series(1, 10) g`,
];
const orders = { schema: 'public', name: 'orders' };

describe('streamChanges: a partition attached while streaming', () => {
  it('the chunk messages of a process that died before delivering them make the stream read the partition again, once; other changes keep flowing', async () => {
    await using p = await streamPipeline({ ddl: ORDERS_DDL, tables: [orders] });
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

describe('streamChanges: a large partition attached while streaming, read in bounded chunks', () => {
  const FIRST = 1000;
  const ROWS = 4000;
  const CHUNK = 500;
  /** The chunk after which the first process is gone (its rows acknowledged). */
  const CUT_AFTER = 3;

  it('is delivered in chunks of at most chunk_rows rows with updates and deletes during the read; a stop right after a chunk is acknowledged (the third or a later one) resumes at the next chunk: nothing lost, no version first seen after a newer one, the sink equals the table', async () => {
    await using p = await streamPipeline({ ddl: ORDERS_DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const options = {
      watermarkPrefix: prefix,
      catalogCheckIntervalMs: 3_600_000,
      chunk: { rows: CHUNK, bytes: 8 * 1024 * 1024 },
    };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'streamed')`);
    await first.waitFor(() => first.events.some((e) => e.after?.id === 100), 'the stream running');

    // The first process stops (like a SIGKILL: nothing more reaches the "sink") right after
    // the batch that ends its third chunk; that batch is acknowledged.
    const chunkEnds = new Set<bigint>();
    let cut: Position | undefined;
    first.onBatch = async (batch) => {
      if (cut !== undefined) {
        first.autoAcknowledge = false;
        return;
      }
      const reads = batch.events.filter((e) => e.op === 'read');
      for (const e of reads) chunkEnds.add(decodePosition(e.position).lsn);
      if (reads.length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      if (chunkEnds.size >= CUT_AFTER && batch.safePosition !== undefined && reads.length > 0) {
        cut = batch.safePosition;
        void first.stop();
      }
    };

    await p.fx.admin.query('CREATE TABLE public.orders_02 (LIKE public.orders INCLUDING ALL)');
    await p.fx.admin.query(
      `INSERT INTO public.orders_02 SELECT g, '2024-02-03', 'brought' FROM generate_series(${FIRST}, ${FIRST + ROWS - 1}) g`,
    );
    await p.fx.admin.query(
      `ALTER TABLE public.orders ATTACH PARTITION public.orders_02 FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`,
    );
    // While its chunks are read: updates (some move the row to the end of the table),
    // deletes and inserts into the partition, through the parent.
    for (let i = 0; i < 40; i++) {
      const id = FIRST + i * 97;
      await p.fx.admin.query(`UPDATE public.orders SET note = repeat('u', 300) || $1 WHERE id = $2`, [i, id]);
      await p.fx.admin.query('DELETE FROM public.orders WHERE id = $1', [id + 1]);
      await p.fx.admin.query(`INSERT INTO public.orders VALUES ($1, '2024-02-04', 'new')`, [90_000 + i]);
    }
    await first.waitFor(() => first.done, 'the first process gone after its third chunk');
    expect(first.error).toBeUndefined();
    expect(cut).toBeDefined();
    const before = first.events.filter((e) => comparePositions(e.position, cut!) <= 0);
    expectOrderedBatches(first.batches);

    // Every chunk holds at most chunk_rows rows: one high message (one LSN) per chunk.
    const perChunk = (events: ChangeEvent[]) => {
      const counts = new Map<bigint, number>();
      for (const e of events.filter((e) => e.op === 'read')) {
        const lsn = decodePosition(e.position).lsn;
        counts.set(lsn, (counts.get(lsn) ?? 0) + 1);
      }
      return [...counts.values()];
    };
    const delivered = perChunk(before).length;
    expect(delivered).toBeGreaterThanOrEqual(CUT_AFTER);
    expect(delivered).toBeLessThan(ROWS / CHUNK);
    expect(Math.max(...perChunk(before))).toBeLessThanOrEqual(CHUNK);

    // The next process starts after the acknowledged chunk: the fourth chunk's low message
    // is in the WAL after it, so the rest of the partition (and only the rest) is read.
    // Only the second process's lines count: the first may have delivered (and logged) later
    // chunks, up to the last, between its cut and its stop; the log is shared.
    const secondFrom = p.logLines.length;
    const second = p.open(cut!, options);
    const lastDelivered = () =>
      p.logLines
        .slice(secondFrom)
        .some((l) => l.includes('rows of an attached partition delivered') && l.includes('"last":true'));
    await second.waitFor(lastDelivered, 'the last chunk');
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (101, '2024-01-07', 'after')`);
    await second.waitFor(() => second.events.some((e) => e.after?.id === 101), 'a change after the chunks');
    expect(second.error).toBeUndefined();
    // The read goes on at the first chunk not acknowledged, whatever messages of later chunks
    // the first process wrote before it stopped (a change acknowledged between a chunk's low
    // and high message puts that low at or before the acknowledged position).
    const resumed = p.logLines.slice(secondFrom).find((l) => l.includes('reading again a chunk'));
    const resumedChunk = Number(/"chunk":(\d+)/.exec(resumed ?? '')?.[1]);
    expect(resumedChunk, resumed).toBe(delivered);
    expectOrderedBatches(second.batches);
    expect(Math.max(...perChunk(second.events))).toBeLessThanOrEqual(CHUNK);
    // (The leaf was in the pipeline memory before the first process stopped: its read was in
    // the WAL. The test "chunk messages of a process that died …" below shows a resume reading
    // only the rest.)

    // What a sink holds (the first process up to its acknowledged chunk, then the second)
    // is the table, and per key no version shows up for the first time after a newer one.
    const records = [...before, ...second.events].map((e) => ({
      table: `${e.table.schema}.${e.table.name}`,
      op: e.op,
      key: e.key,
      after: e.after ?? null,
      position: e.position,
    }));
    // The history check without that truncate: it would count every row read after it as
    // older than the truncate (the reduced state below applies it).
    const truncates = records.filter((r) => r.op === 'truncate').length;
    expect(truncates).toBeLessThanOrEqual(1);
    expect(
      checkHistoryOrder(
        records.filter((r) => r.op !== 'truncate'),
        { comparePositions },
      ),
    ).toEqual([]);
    // The ten seed rows (ids 1-10) were in the table before the stream started: a snapshot's
    // part, which this test has none of. They reach the sink only when the second process reads
    // the table again (see above), so the comparison leaves them out on both sides.
    const held = new Map(
      [...(reduceByKey(records, { comparePositions }).get('public.orders') ?? new Map()).entries()].filter(
        ([, r]) => Number(r.id) > 10,
      ),
    );
    const { rows } = await p.fx.admin.query(
      'SELECT id, created::text AS created, note FROM public.orders WHERE id > 10',
    );
    expect(held.size).toBe(rows.length);
    const notes = new Map([...held.values()].map((r) => [`${r.id} ${r.created}`, r.note]));
    for (const row of rows) expect(notes.get(`${row.id} ${row.created}`), `row ${row.id}`).toBe(row.note);
  });
});

describe('streamChanges: chunk messages of a process that died, at or before the acknowledged position', () => {
  const DDL = [
    `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, note text, PRIMARY KEY (id, created))
       PARTITION BY RANGE (created)`,
    `CREATE TABLE public.orders_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
    `CREATE TABLE public.orders_02 PARTITION OF public.orders FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`,
    `INSERT INTO public.orders SELECT g, '2024-02-03', 'brought' FROM generate_series(1000, 1999) g`,
  ];
  const orders02 = { schema: 'public', name: 'orders_02' };

  it('a later change acknowledged while a chunk was read (the slot held before its low message): the stream reads the leaf again from that chunk, not from its start', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    // What the dead process left: chunk 2 delivered (its high, with chunk 3's low), then a
    // change acknowledged while chunk 3 was read; it died before chunk 3's high.
    const message = (attach: 'low' | 'high', id: string, chunk: number, after?: { page: number; offset: number }) =>
      JSON.stringify({ attach, id, table: orders, leaf: orders02, chunk, ...(after ? { after } : {}) });
    await p.fx.admin.query(
      `BEGIN; SELECT pg_logical_emit_message(false, '${prefix}.attach', '${message('high', 'dead0002', 2, { page: 1, offset: 1 })}');
       SELECT pg_logical_emit_message(false, '${prefix}.attach', '${message('low', 'dead0003', 3, { page: 2, offset: 1 })}'); COMMIT`,
    );
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'acknowledged')`);
    // Its position, as the dead process's sink acknowledged it (the slot stayed before the low message).
    const probe = p.open(p.startPosition, { catalogCheckIntervalMs: 3_600_000 });
    probe.autoAcknowledge = false;
    await probe.waitFor(() => probe.events.some((e) => e.after?.id === 100), 'the acknowledged change');
    const acknowledged = probe.lastSafePosition!;
    await probe.stop();

    const stream = p.open(acknowledged, { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 });
    const { rows } = await p.fx.admin.query(`SELECT id FROM public.orders_02 WHERE ctid >= '(2,1)'::tid`);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(1000);
    await stream.waitFor(
      () => p.logLines.some((l) => l.includes('rows of an attached partition delivered') && l.includes('"last":true')),
      'the rest of the leaf',
    );
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (101, '2024-01-07', 'after')`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 101), 'a change after it');
    expect(stream.error).toBeUndefined();
    // Rows from chunk 3's start on, each once; nothing before it; the acknowledged change not again.
    const reads = stream.events.filter((e) => e.op === 'read');
    expect(ids(reads).sort((a, b) => a - b)).toEqual(rows.map((r) => Number(r.id)).sort((a, b) => a - b));
    expect(ids(stream.events.filter((e) => e.op !== 'read'))).toEqual([101]);
    expect(p.logLines.some((l) => l.includes('reading again a chunk') && l.includes('"chunk":3'))).toBe(true);
    expectOrderedBatches(stream.batches);
  });

  it('the same, when the dead process went on to write chunk 3’s high and later chunks’ messages after that change: the read still goes on at chunk 3', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const message = (attach: 'low' | 'high', id: string, chunk: number, after?: { page: number; offset: number }) =>
      JSON.stringify({ attach, id, table: orders, leaf: orders02, chunk, ...(after ? { after } : {}) });
    const emit = (...messages: string[]) =>
      p.fx.admin.query(
        `BEGIN; ${messages.map((m) => `SELECT pg_logical_emit_message(false, '${prefix}.attach', '${m}');`).join(' ')} COMMIT`,
      );
    await emit(
      message('high', 'dead0002', 2, { page: 1, offset: 1 }),
      message('low', 'dead0003', 3, { page: 2, offset: 1 }),
    );
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'acknowledged')`);
    // After the acknowledged change: chunk 3's high with chunk 4's low, chunk 4's high with 5's low.
    await emit(
      message('high', 'dead0003', 3, { page: 2, offset: 1 }),
      message('low', 'dead0004', 4, { page: 3, offset: 1 }),
    );
    await emit(
      message('high', 'dead0004', 4, { page: 3, offset: 1 }),
      message('low', 'dead0005', 5, { page: 4, offset: 1 }),
    );
    const probe = p.open(p.startPosition, { catalogCheckIntervalMs: 3_600_000 });
    probe.autoAcknowledge = false;
    await probe.waitFor(() => probe.events.some((e) => e.after?.id === 100), 'the acknowledged change');
    const acknowledged = probe.lastSafePosition!;
    await probe.stop();

    const stream = p.open(acknowledged, { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 });
    const { rows } = await p.fx.admin.query(`SELECT id FROM public.orders_02 WHERE ctid >= '(2,1)'::tid`);
    expect(rows.length).toBeGreaterThan(0);
    await stream.waitFor(
      () => p.logLines.some((l) => l.includes('rows of an attached partition delivered') && l.includes('"last":true')),
      'the rest of the leaf',
    );
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (101, '2024-01-07', 'after')`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 101), 'a change after it');
    expect(stream.error).toBeUndefined();
    const reads = stream.events.filter((e) => e.op === 'read');
    expect(ids(reads).sort((a, b) => a - b)).toEqual(rows.map((r) => Number(r.id)).sort((a, b) => a - b));
    const resumed = p.logLines.filter((l) => l.includes('reading again a chunk'));
    expect(resumed.length, resumed.join('\n')).toBeGreaterThan(0);
    expect(
      resumed.every((l) => l.includes('"chunk":3')),
      resumed.join('\n'),
    ).toBe(true);
    expectOrderedBatches(stream.batches);
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

describe('streamChanges: a key redefined twice in a row while streaming, the table read in small chunks', () => {
  const DDL = [
    'CREATE TABLE public.items (id int PRIMARY KEY, code text NOT NULL UNIQUE, code2 text NOT NULL UNIQUE, note text)',
    `INSERT INTO public.items SELECT g, 'c' || g, 'd' || g, 'seed' FROM generate_series(1, 300) g`,
  ];

  it('ends with the table under the last key: after the last truncate, every row once under it (the read in progress starts over)', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [items] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const stream = p.open(p.startPosition, {
      watermarkPrefix: prefix,
      catalogCheckIntervalMs: 3_600_000,
      chunk: { rows: 20, bytes: 1 << 20 },
    });
    await p.fx.admin.query(`UPDATE public.items SET note = 'old key' WHERE id = 1`);
    await stream.waitFor(() => stream.events.length >= 1, 'the update under the old key');
    for (const key of ['code', 'code2']) {
      await p.fx.admin.query('BEGIN');
      await p.fx.admin.query('ALTER TABLE public.items DROP CONSTRAINT items_pkey');
      await p.fx.admin.query(`ALTER TABLE public.items ADD CONSTRAINT items_pkey PRIMARY KEY (${key})`);
      await p.fx.admin.query('COMMIT');
      await p.fx.admin.query(`UPDATE public.items SET note = 'under ${key}' WHERE id = 5`);
    }
    const { rows } = await p.fx.admin.query('SELECT code2, note FROM public.items');
    const table = Object.fromEntries(rows.map((r) => [r.code2, r.note]));
    const afterLastTruncate = () => {
      const at = stream.events.findLastIndex((e) => e.op === 'truncate' && e.table.keyColumns.join() === 'code2');
      if (at < 0) return undefined;
      const live = new Map<string, unknown>();
      for (const e of stream.events.slice(at + 1)) {
        if (e.op === 'delete') live.delete(String(e.key.code2));
        else live.set(String(e.key.code2), e.after?.note);
      }
      return { at, live };
    };
    await stream.waitFor(() => afterLastTruncate()?.live.size === rows.length, 'the rows under the last key');
    await p.fx.admin.query(`UPDATE public.items SET note = 'after' WHERE id = 6`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.note === 'after'), 'a change after it');
    expect(stream.error).toBeUndefined();
    const { at, live } = afterLastTruncate()!;
    table.d6 = 'after';
    expect(Object.fromEntries(live)).toEqual(table);
    const later = stream.events.slice(at + 1);
    expect(later.every((e) => Object.keys(e.key).join() === 'code2')).toBe(true);
    const reads = later.filter((e) => e.op === 'read');
    expect(new Set(reads.map((e) => e.key.code2)).size).toBe(reads.length);
    expectOrderedBatches(stream.batches);
  });
});

describe('streamChanges: a partition attached while no stream runs', () => {
  it('the next stream finds it (not among the leaves the pipeline memory holds from the last stream) and reads its rows; older partitions are not read', async () => {
    await using p = await streamPipeline({ ddl: ORDERS_DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    const options = { watermarkPrefix: prefix, catalogCheckIntervalMs: 3_600_000 };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'streamed')`);
    await first.waitFor(() => first.lastSafePosition !== undefined, 'the first change acknowledged');
    await remembered(p, 'leaves ["public","orders"]', '["public.orders_01"]');
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
    expect(p.logLines.some((l) => l.includes('attached to a captured table since the last stream'))).toBe(true);
    expectOrderedBatches(second.batches);
    // The memory holds the new leaf once its read is in the WAL: a third stream reads nothing.
    await remembered(p, 'leaves ["public","orders"]', '["public.orders_01","public.orders_02"]');
  });
});

describe('streamChanges: a primary key redefined while no stream runs', () => {
  const DDL = [
    'CREATE TABLE public.items (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)',
    `INSERT INTO public.items SELECT g, 'c' || g, 'seed' FROM generate_series(1, 50) g`,
  ];

  it('the next stream sees other key columns than the pipeline memory holds from the last stream: a truncate, then the rows under the new key; an unchanged key reads nothing', async () => {
    await using p = await streamPipeline({ ddl: DDL, tables: [items] });
    const options = { watermarkPrefix: `nanosync.watermark.${p.slot}`, catalogCheckIntervalMs: 3_600_000 };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`UPDATE public.items SET note = 'old key' WHERE id = 1`);
    await first.waitFor(() => first.lastSafePosition !== undefined, 'a change under the old key');
    await remembered(p, 'key ["public","items"]', (v) => JSON.parse(v).keys.join() === 'id');
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
    expect(p.logLines.some((l) => l.includes('changed since the last stream'))).toBe(true);
    expectOrderedBatches(second.batches);
    await remembered(p, 'key ["public","items"]', (v) => JSON.parse(v).keys.join() === 'code');
  });

  it('the snapshot’s plan is remembered until a stream sees the table: a key redefined after the snapshot planned it (before the first stream) brings a truncate and the rows under the new key; a key unchanged but declared in another column order brings nothing', async () => {
    const pairs = { schema: 'public', name: 'pairs' };
    await using p = await streamPipeline({
      ddl: [
        ...DDL,
        // The key in another order than the columns: the stream lists it in the columns' order.
        'CREATE TABLE public.pairs (b int NOT NULL, a int NOT NULL, note text, PRIMARY KEY (a, b))',
        `INSERT INTO public.pairs SELECT g, g, 'seed' FROM generate_series(1, 5) g`,
        'CREATE TABLE public.keyless (note text)',
        'CREATE TABLE public.streamed (id int PRIMARY KEY)',
      ],
      tables: [items, pairs],
    });
    const others = [
      { schema: 'public', name: 'keyless' },
      { schema: 'public', name: 'streamed' },
    ];
    await p.fx.grantRead(others);
    // An entry a stream wrote is not replaced by a snapshot's plan.
    const byStream = JSON.stringify({ keys: ['id'], columns: ['id', 'gone'] });
    await p.memory.set('key ["public","streamed"]', byStream);
    const source = await p.fx.source(p.pipeline, {}, { memory: p.memory });
    const schemas = await source.describe([items, pairs, ...others]);
    for (const schema of schemas)
      expect((await readAll(source, schema)).rows.length).toBe(
        schema.name === 'items' ? 50 : schema.name === 'pairs' ? 5 : 0,
      );
    expect(JSON.parse((await p.memory.get('key ["public","items"]'))!)).toEqual({
      keys: ['id'],
      columns: ['id', 'code', 'note'],
    });
    expect(JSON.parse((await p.memory.get('key ["public","pairs"]'))!)).toEqual({
      keys: ['b', 'a'],
      columns: ['b', 'a', 'note'],
    });
    expect(await p.memory.get('key ["public","keyless"]')).toBeUndefined();
    expect(await p.memory.get('key ["public","streamed"]')).toBe(byStream);

    // A memory that cannot be written: a warning naming the table, and the snapshot goes on.
    const failing = await p.fx.source(
      p.pipeline,
      {},
      {
        memory: {
          get: async () => undefined,
          set: async () => {
            throw new Error('disk full');
          },
        },
      },
    );
    expect((await readAll(failing, schemas[0]!)).rows).toHaveLength(50);
    expect(
      p.fx.logs.some(
        (l) => l.startsWith('WRN') && l.includes('could not be remembered') && l.includes('"table":"public.items"'),
      ),
    ).toBe(true);

    await p.fx.admin.query('BEGIN');
    await p.fx.admin.query('ALTER TABLE public.items DROP CONSTRAINT items_pkey');
    await p.fx.admin.query('ALTER TABLE public.items ADD PRIMARY KEY (code)');
    await p.fx.admin.query('COMMIT');
    await p.fx.admin.query(`UPDATE public.items SET note = 'new key' WHERE id = 2`);
    await p.fx.admin.query(`UPDATE public.pairs SET note = 'same key' WHERE a = 2`);

    const options = { watermarkPrefix: `nanosync.watermark.${p.slot}`, catalogCheckIntervalMs: 3_600_000 };
    const first = p.open(p.startPosition, options);
    await first.waitFor(
      () => first.events.filter((e) => e.op === 'read' && e.table.name === 'items').length >= 50,
      'the rows of items under the new key',
      30_000,
    );
    const truncateAt = first.events.findIndex((e) => e.op === 'truncate');
    expect(first.events[truncateAt]?.table.name).toBe('items');
    const reads = first.events.filter((e) => e.op === 'read');
    expect(reads.every((e) => e.table.name === 'items' && Object.keys(e.key).join() === 'code')).toBe(true);
    expect(first.events.indexOf(reads[0]!)).toBeGreaterThan(truncateAt);
    expect(first.events.filter((e) => e.op === 'truncate')).toHaveLength(1);
    expect(p.logLines.some((l) => l.includes('changed since the last stream'))).toBe(true);
    expectOrderedBatches(first.batches);
    await remembered(p, 'key ["public","items"]', (v) => JSON.parse(v).keys.join() === 'code');
  });
});

describe('streamChanges: a busy server, where a transaction older than the tables ran while the slot was made', () => {
  it('no stream sends a truncate, though the key indexes and partition links are not older than the slot’s catalog_xmin; after the first stream (which may read a partition twice) no stream reads anything again', async () => {
    await using p = await streamPipeline({
      ddl: [...ITEMS_DDL, ...ORDERS_DDL],
      tables: [items, orders],
      oldTransaction: true,
    });
    // What a guess from the catalog's age would take for "changed while no stream ran".
    const { rows } = await p.fx.admin.query(
      `SELECT bool_and(pg_catalog.age(x.xmin) <= pg_catalog.age(s.catalog_xmin))::text AS young
         FROM (SELECT xmin FROM pg_catalog.pg_index WHERE indisprimary AND indrelid IN ('public.items'::regclass, 'public.orders'::regclass)
               UNION ALL SELECT xmin FROM pg_catalog.pg_inherits WHERE inhrelid = 'public.orders_01'::regclass) x
         JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`,
      [p.slot],
    );
    expect(rows[0]?.young).toBe('true');

    const options = { watermarkPrefix: `nanosync.watermark.${p.slot}`, catalogCheckIntervalMs: 3_600_000 };
    const change = async (stream: ConsumedStream, id: number) => {
      await p.fx.admin.query(`INSERT INTO public.items VALUES ($1, 'busy')`, [id]);
      await p.fx.admin.query(`INSERT INTO public.orders VALUES ($1, '2024-01-09', 'busy')`, [id]);
      await stream.waitFor(
        () =>
          ['items', 'orders'].every((name) =>
            stream.events.some((e) => e.op === 'insert' && e.table.name === name && e.after?.id === id),
          ) && stream.lastSafePosition !== undefined,
        `the changes of id ${id}`,
      );
    };
    const first = p.open(p.startPosition, options);
    await change(first, 1000);
    await remembered(p, 'key ["public","items"]', (v) => JSON.parse(v).keys.join() === 'id');
    await remembered(p, 'leaves ["public","orders"]', '["public.orders_01"]');
    // A read the first stream started is finished (and acknowledged) before it stops.
    await first.waitFor(
      () =>
        !p.logLines.some((l) => l.includes('reading its rows')) ||
        p.logLines.some((l) => l.includes('rows of an attached partition delivered') && l.includes('"last":true')),
      'the first stream’s partition read, if any, done',
    );
    await change(first, 999);
    const acknowledged = first.lastSafePosition!;
    await first.stop();
    const second = p.open(acknowledged, options);
    await change(second, 1001);
    // The first stream, with nothing remembered yet, reads a partition whose link looks recent
    // (it may have been attached after the snapshot planned its leaves): reads, never a truncate.
    expect(first.events.filter((e) => e.op === 'truncate' || (e.op === 'read' && e.table.name !== 'orders'))).toEqual(
      [],
    );
    expect(second.events.filter((e) => e.op === 'read' || e.op === 'truncate')).toEqual([]);
    for (const stream of [first, second]) expect(stream.error).toBeUndefined();
    expect(p.logLines.filter((l) => l.includes('after a truncate') || l.includes('since the last stream'))).toEqual([]);
  });
});

/** Wait until the pipeline memory's `entry` is `expected` (or passes it). */
async function remembered(
  p: StreamPipeline,
  entry: string,
  expected: string | ((value: string) => boolean),
): Promise<void> {
  const deadline = Date.now() + 30_000;
  let value: string | undefined;
  for (;;) {
    value = await p.memory.get(entry);
    if (value !== undefined && (typeof expected === 'string' ? value === expected : expected(value))) return;
    if (Date.now() > deadline) throw new Error(`the pipeline memory's ${entry} is ${value}, not as expected`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
