import { createHash } from 'node:crypto';
import { NanosyncError } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/position.js';
import { pgFixture, readAll, uniqueName } from './fixture.js';

const orders = { schema: 'public', name: 'orders' };

async function createOrders(admin: pg.Client, rows: number): Promise<void> {
  await admin.query(
    'CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), at timestamptz)',
  );
  await admin.query(
    `INSERT INTO public.orders SELECT g, repeat('x', 40 + g % 50), g * 1.25, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
       FROM generate_series(1, $1) g`,
    [rows],
  );
}

describe('open(): publication and slot', () => {
  it('creates the slot through the replication protocol and returns its consistent point and an exported snapshot', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 10);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('Open-Test');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);

    const opened = await source.open([orders], { wantSnapshot: true });
    const slot = await fx.admin.query(
      'SELECT plugin, slot_type, database, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [source.slotName],
    );
    expect(source.slotName).toBe(`nanosync_slot_${pipeline.toLowerCase().replace(/-/g, '_')}`);
    expect(slot.rows[0]).toMatchObject({ plugin: 'pgoutput', slot_type: 'logical', database: fx.database });
    expect(opened.startPosition).toMatch(/^[0-9A-F]{16}:00000000$/);
    expect(BigInt(`0x${opened.startPosition.slice(0, 16)}`)).toBe(parseLsn(slot.rows[0].lsn));
    expect(opened.snapshot?.token).toMatch(/^[0-9A-F]+-[0-9A-F]+-\d+$/);

    // The exported snapshot is importable while held, and gone after release().
    const probe = new pg.Client({ connectionString: fx.adminUrl });
    await probe.connect();
    try {
      await probe.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await probe.query(`SET TRANSACTION SNAPSHOT '${opened.snapshot!.token}'`);
      await probe.query('ROLLBACK');
      await opened.snapshot!.release();
      await probe.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await expect(probe.query(`SET TRANSACTION SNAPSHOT '${opened.snapshot!.token}'`)).rejects.toThrow(
        /invalid snapshot identifier/,
      );
      await probe.query('ROLLBACK');
    } finally {
      await probe.end();
    }
  });

  it('creates the publication FOR TABLE when the role owns the tables, and alters it to match the list', async () => {
    await using fx = await pgFixture();
    await fx.admin.query(`GRANT CREATE ON DATABASE ${fx.database} TO ${fx.role}`);
    await fx.admin.query('CREATE TABLE public.a (id int PRIMARY KEY)');
    await fx.admin.query('CREATE TABLE public.b (id int PRIMARY KEY)');
    await fx.admin.query(`ALTER TABLE public.a OWNER TO ${fx.role}`);
    await fx.admin.query(`ALTER TABLE public.b OWNER TO ${fx.role}`);
    const a = { schema: 'public', name: 'a' };
    const b = { schema: 'public', name: 'b' };
    const pipeline = uniqueName('pub');
    const source = await fx.source(pipeline);
    const members = async () =>
      (
        await fx.admin.query('SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1', [
          source.publicationName,
        ])
      ).rows.map((r) => r.tablename);

    const first = await source.open([a], { wantSnapshot: false });
    expect(first.snapshot).toBeUndefined();
    expect(await members()).toEqual(['a']);
    const all = await fx.admin.query('SELECT puballtables FROM pg_publication WHERE pubname = $1', [
      source.publicationName,
    ]);
    expect(all.rows[0].puballtables).toBe(false);

    await source.open([a, b], { wantSnapshot: false, existingStartPosition: first.startPosition });
    expect(await members()).toEqual(['a', 'b']);
    await source.open([b], { wantSnapshot: false, existingStartPosition: first.startPosition });
    expect(await members()).toEqual(['b']);
  });

  it('tells the least-privilege role which SQL an owner must run when it may not create the publication', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 1);
    await fx.grantRead([orders]);
    const source = await fx.source(uniqueName('nopub'));
    const error = await source.open([orders], { wantSnapshot: true }).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4002')).toBe(true);
    expect((error as Error).message).toContain(
      `CREATE PUBLICATION "${source.publicationName}" FOR TABLE "public"."orders"`,
    );
    expect(
      (
        await fx.admin.query('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [
          source.slotName,
        ])
      ).rows[0].n,
    ).toBe(0);
  });

  it('fails naming a missing table before creating anything', async () => {
    await using fx = await pgFixture();
    const source = await fx.source(uniqueName('missing'));
    const error = await source
      .open([{ schema: 'public', name: 'ordrs' }], { wantSnapshot: true })
      .catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4003')).toBe(true);
    expect((error as Error).message).toContain(`table "public"."ordrs" not found in database "${fx.database}"`);
    expect(
      (
        await fx.admin.query('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [
          source.slotName,
        ])
      ).rows[0].n,
    ).toBe(0);
  });
});

describe('snapshot partitions', () => {
  it('cover every row exactly once, in bounded chunks, across many CTID ranges', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 20_000);
    await fx.admin.query('DELETE FROM public.orders WHERE id % 7 = 0');
    await fx.admin.query('ANALYZE public.orders');
    await fx.grantRead([orders]);
    const pipeline = uniqueName('parts');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    const opened = await source.open([orders], { wantSnapshot: true });
    const [schema] = await source.describe([orders]);

    const { rows, partitions, perPartition, chunkSizes } = await readAll(source, schema!, {
      targetRowsPerPartition: 1500,
      snapshotToken: opened.snapshot!.token,
      maxRowsPerChunk: 400,
    });
    const expected = (await fx.admin.query('SELECT count(*)::int AS n FROM public.orders')).rows[0].n as number;
    const ids = rows.map((r) => r.id as string);
    expect(partitions).toBeGreaterThanOrEqual(8);
    expect(perPartition.every((n) => n > 0)).toBe(true);
    expect(rows).toHaveLength(expected);
    expect(new Set(ids).size).toBe(expected);
    expect(Math.max(...chunkSizes)).toBeLessThanOrEqual(400);
    expect(rows.find((r) => r.id === '3')).toEqual({
      id: '3',
      note: 'x'.repeat(43),
      amount: '3.75',
      at: '2024-01-01T00:00:03.000000Z',
    });
    await opened.snapshot!.release();
  });

  it('a slow reader gets every row intact although the driver reuses its read buffer (COPY rows are copied)', async () => {
    await using fx = await pgFixture();
    await fx.admin.query(
      `CREATE TABLE public.wide (id bigint PRIMARY KEY, a text, b text, c double precision, d date)`,
    );
    await fx.admin.query(
      `INSERT INTO public.wide SELECT g, md5(g::text), repeat('z', g % 50), g / 3.0, date '2020-01-01' + (g % 1000)
         FROM generate_series(1, 120000) g`,
    );
    const wide = { schema: 'public', name: 'wide' };
    await fx.grantRead([wide]);
    const pipeline = uniqueName('slowread');
    await fx.preparePublication(pipeline, [wide]);
    const source = await fx.source(pipeline);
    await source.open([wide], { wantSnapshot: false });
    const [schema] = await source.describe([wide]);
    const [partition] = await source.planPartitions(schema!, { targetRowsPerPartition: 1_000_000 });
    let count = 0;
    for await (const chunk of source.readPartition(schema!, partition!, {
      maxRowsPerChunk: 500,
      signal: new AbortController().signal,
    })) {
      // Fall behind the socket so the driver's buffer is refilled while rows wait in the queue.
      await new Promise((resolve) => setTimeout(resolve, 2));
      for (const row of chunk) {
        const id = Number(row.id);
        expect(row.a).toBe(createHash('md5').update(String(id)).digest('hex'));
        expect(row.b).toBe('z'.repeat(id % 50));
        count++;
      }
    }
    expect(count).toBe(120000);
  });

  it('estimates tables that were never analysed, and the open-ended last partition reads pages added after planning', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 5000);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('grow');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    await source.open([orders], { wantSnapshot: false });
    const [schema] = await source.describe([orders]);
    const plan = await source.planPartitions(schema!, { targetRowsPerPartition: 1000 });
    expect(plan.length).toBeGreaterThanOrEqual(4);
    expect(plan.reduce((sum, p) => sum + (p.estimatedRows ?? 0), 0)).toBeGreaterThan(4000);
    await fx.admin.query(`INSERT INTO public.orders SELECT g, 'late', 0, now() FROM generate_series(5001, 9000) g`);
    const ids = new Set<string>();
    let total = 0;
    for (const partition of plan) {
      for await (const chunk of source.readPartition(schema!, partition, {
        maxRowsPerChunk: 1000,
        signal: new AbortController().signal,
      })) {
        for (const row of chunk) ids.add(row.id as string);
        total += chunk.length;
      }
    }
    expect(total).toBe(9000);
    expect(ids.size).toBe(9000);
  });

  it('reads through the exported snapshot: changes committed after open() are invisible to it, visible without it', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 3000);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('iso');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    const opened = await source.open([orders], { wantSnapshot: true });
    await fx.admin.query(`INSERT INTO public.orders VALUES (100001, 'after', 1, now())`);
    await fx.admin.query('DELETE FROM public.orders WHERE id <= 10');
    await fx.admin.query(`UPDATE public.orders SET note = 'changed' WHERE id = 500`);
    const [schema] = await source.describe([orders]);

    const snap = await readAll(source, schema!, { targetRowsPerPartition: 700, snapshotToken: opened.snapshot!.token });
    expect(snap.rows).toHaveLength(3000);
    expect(snap.rows.some((r) => r.id === '100001')).toBe(false);
    expect(snap.rows.find((r) => r.id === '500')?.note).toBe('x'.repeat(40));
    expect(snap.rows.some((r) => r.id === '1')).toBe(true);

    const fresh = await readAll(source, schema!, { targetRowsPerPartition: 700 });
    expect(fresh.rows).toHaveLength(2991);
    expect(fresh.rows.find((r) => r.id === '500')?.note).toBe('changed');
    await opened.snapshot!.release();
  });

  it('a partition read after the exported snapshot died reads the current state instead of failing', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 500);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('gone');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    const opened = await source.open([orders], { wantSnapshot: true });
    const [schema] = await source.describe([orders]);
    await fx.admin.query(`INSERT INTO public.orders VALUES (600, 'after', 1, now())`);
    const killed = await fx.admin.query(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE backend_type = 'walsender' AND usename = $1`,
      [fx.role],
    );
    expect(killed.rows).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { rows, partitions } = await readAll(source, schema!, {
      snapshotToken: opened.snapshot!.token,
      targetRowsPerPartition: 100,
    });
    expect(rows).toHaveLength(501);
    expect(partitions).toBeGreaterThan(1);
    // Said once, not once per partition.
    expect(fx.logs.filter((line) => line.includes('exported snapshot no longer available'))).toHaveLength(1);
    await opened.snapshot!.release();
  });

  it('a transaction that held a transaction id when open() began delays slot creation and lands on one side of the start position', async () => {
    await using fx = await pgFixture();
    await createOrders(fx.admin, 100);
    await fx.grantRead([orders]);
    const pipeline = uniqueName('xid');
    await fx.preparePublication(pipeline, [orders]);
    const source = await fx.source(pipeline);
    const writer = new pg.Client({ connectionString: fx.adminUrl });
    await writer.connect();
    try {
      await writer.query('BEGIN');
      await writer.query(`INSERT INTO public.orders VALUES (777777, 'in-flight', 7, now())`);
      let opened = false;
      const opening = source.open([orders], { wantSnapshot: true }).then((r) => {
        opened = true;
        return r;
      });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(opened).toBe(false);
      await writer.query('COMMIT');
      const result = await opening;
      const [schema] = await source.describe([orders]);
      const snap = await readAll(source, schema!, { snapshotToken: result.snapshot!.token });
      // Slot creation waits for transactions that had an xid: this one committed before the
      // consistent point, so the exported snapshot has it (and the stream will not replay it).
      expect(snap.rows.some((r) => r.id === '777777')).toBe(true);
      await result.snapshot!.release();
    } finally {
      await writer.end();
    }
  });
});
