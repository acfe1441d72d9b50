import { checkNothingLost, checkPositionOrder } from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { decodePosition } from '../../src/position.js';
import { sleep } from './e2e/harness.js';
import { waitFor } from './e2e/scenario.js';
import { reduceByKey, TablesScenario, tableState } from './e2e/tables.js';

const orders = { schema: 'public', name: 'orders' };
const leaf = (name: string) => ({ schema: 'public', name });
const KEY = ['id', 'created'];
const MARKER = 9_999_999;
/** Rows the attached table holds before it is attached. */
const ATTACHED_FIRST_ID = 500_000;
const ATTACHED_ROWS = 6000;
/** `snapshot.chunk_rows`: the attached table is read in six chunks or more. */
const CHUNK_ROWS = 1000;

const ORDERS_DDL = [
  `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, amount int NOT NULL, note text,
     PRIMARY KEY (id, created)) PARTITION BY RANGE (created)`,
  `CREATE TABLE public.orders_2024_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
  `CREATE TABLE public.orders_2024_02 PARTITION OF public.orders FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`,
  // A second level: March is itself partitioned (by list of amount parity would be odd; by hash of id).
  `CREATE TABLE public.orders_2024_03 PARTITION OF public.orders FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')
     PARTITION BY HASH (id)`,
  `CREATE TABLE public.orders_2024_03_h0 PARTITION OF public.orders_2024_03 FOR VALUES WITH (MODULUS 2, REMAINDER 0)`,
  `CREATE TABLE public.orders_2024_03_h1 PARTITION OF public.orders_2024_03 FOR VALUES WITH (MODULUS 2, REMAINDER 1)`,
  'CREATE TABLE public.orders_default PARTITION OF public.orders DEFAULT',
  `INSERT INTO public.orders
     SELECT g, date '2024-01-01' + (g % 90), g % 1000, 'seed' FROM generate_series(1, 30000) g`,
  `INSERT INTO public.orders SELECT g, date '2030-01-01', 1, 'far' FROM generate_series(30001, 31000) g`,
  'ANALYZE public.orders',
];

/** Inserts (in the months given by `months()`), updates, moves between months and deletes, in small transactions. */
function startOrdersWriter(url: string, months: () => string[]) {
  let stopped = false;
  /** Keys of the rows inserted by transactions committed while `recording` (for the oracle's nothing-lost check). */
  const inserted: { id: number; created: string }[] = [];
  let recording = false;
  let failure: unknown;
  let nextId = 100_000;
  const done = (async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      while (!stopped) {
        const id = nextId++;
        const month = months()[id % months().length]!;
        const record = recording;
        await client.query('BEGIN');
        const insert = await client.query(
          `INSERT INTO public.orders VALUES ($1, $2::date + ($1 % 28), $1 % 1000, 'new') RETURNING created::text AS created`,
          [id, month],
        );
        await client.query(
          `UPDATE public.orders SET note = 'u' || $1, amount = amount + 1
            WHERE (id, created) = (SELECT id, created FROM public.orders WHERE id = ($1::bigint * 7919) % 31000 + 1)`,
          [id],
        );
        if (id % 5 === 0)
          await client.query(
            `UPDATE public.orders SET created = created + 31
              WHERE (id, created) = (SELECT id, created FROM public.orders WHERE id = ($1::bigint * 104729) % 30000 + 1
                                      AND created < '2024-03-01')`,
            [id],
          );
        if (id % 3 === 0)
          await client.query('DELETE FROM public.orders WHERE id = ($1::bigint * 15485863) % 31000 + 1', [id]);
        await client.query('COMMIT');
        if (record) inserted.push({ id, created: String(insert.rows[0].created) });
        await sleep(3);
      }
    } finally {
      await client.end().catch(() => {});
    }
  })().catch((error: unknown) => {
    failure = error;
  });
  return {
    inserted,
    record() {
      recording = true;
    },
    async stop() {
      stopped = true;
      await done;
      if (failure) throw failure;
    },
  };
}

describe('partitioned tables', () => {
  it("a range-partitioned orders table (three months, one of them hash-partitioned again, and a default) under a writer, with partitions created, attached and detached while streaming and SIGKILLs during the snapshot and the stream: every change arrives under the parent's name and the sink equals the table", async () => {
    await using s = await TablesScenario.create({
      ddl: ORDERS_DDL,
      tables: [orders],
      snapshot: { concurrency: 3, rows: 1500, chunkRows: CHUNK_ROWS },
      preparePublication: true,
    });
    let months = ['2024-01-01', '2024-02-01', '2024-03-01', '2031-01-01'];
    const writer = startOrdersWriter(s.fx.adminUrl, () => months);
    const partitionsDone = () => s.partitionsDone();

    const first = s.spawn();
    await waitFor(() => partitionsDone() >= 3, 'three snapshot partitions done', first);
    first.kill('SIGKILL');
    await first.exited;

    const second = s.spawn();
    await s.waitState(second, 'LIVE_CDC');
    // From here on every committed insert must reach the sink (the stream started at or before now).
    writer.record();
    const planned = s.partitionIds();
    for (const name of ['orders_2024_01', 'orders_2024_02', 'orders_2024_03_h0', 'orders_2024_03_h1', 'orders_default'])
      expect(
        planned.some((id) => id.startsWith(`public.${name}#`)),
        name,
      ).toBe(true);

    // While streaming: a new partition created, an (empty) table attached, January detached.
    await s.fx.admin.query(
      `CREATE TABLE public.orders_2024_04 PARTITION OF public.orders FOR VALUES FROM ('2024-04-01') TO ('2024-05-01')`,
    );
    months = [...months, '2024-04-01'];
    // A table with rows of its own, attached: those rows were never in the WAL under orders.
    await s.fx.admin.query('CREATE TABLE public.orders_2024_05 (LIKE public.orders INCLUDING ALL)');
    await s.fx.admin.query(
      `INSERT INTO public.orders_2024_05 SELECT g, date '2024-05-01' + (g % 31), g % 100, 'brought' FROM generate_series(${ATTACHED_FIRST_ID}, ${ATTACHED_FIRST_ID + ATTACHED_ROWS - 1}) g`,
    );
    await s.fx.admin.query(
      `ALTER TABLE public.orders ATTACH PARTITION public.orders_2024_05 FOR VALUES FROM ('2024-05-01') TO ('2024-06-01')`,
    );
    months = [...months, '2024-05-01'];
    // Changes to rows it brought, while its rows are being read.
    for (let i = 0; i < 20; i++) {
      await s.fx.admin.query(`UPDATE public.orders SET note = 'changed ' || $1 WHERE id = $2`, [
        i,
        ATTACHED_FIRST_ID + i * 7,
      ]);
      await s.fx.admin.query('DELETE FROM public.orders WHERE id = $1', [ATTACHED_FIRST_ID + i * 7 + 1]);
    }
    await waitFor(
      () => second.logLines('rows of an attached partition delivered').some((l) => l.includes('orders_2024_05')),
      'the attached partition read',
      second,
    );
    await sleep(500);
    months = months.filter((m) => m !== '2024-01-01');
    await sleep(200);
    await s.fx.admin.query('ALTER TABLE public.orders DETACH PARTITION public.orders_2024_01');
    await sleep(1500);
    second.kill('SIGKILL');
    await second.exited;

    const third = s.spawn();
    await s.waitState(third, 'LIVE_CDC');
    await sleep(1500);
    await writer.stop();
    await s.fx.admin.query(`INSERT INTO public.orders VALUES (${MARKER}, '2024-02-02', 0, 'marker')`);
    await waitFor(async () => (await s.lines()).some((l) => l.key.id === MARKER), 'the marker row', third);

    const lines = await s.lines();
    expect(new Set(lines.map((l) => l.table))).toEqual(new Set(['public.orders']));
    for (const month of ['2024-04', '2024-05'])
      expect(
        lines.some((l) => l.op === 'insert' && String(l.after?.created).startsWith(month)),
        `inserts into ${month}`,
      ).toBe(true);
    expect(lines.some((l) => l.op === 'delete')).toBe(true);
    // The attached table's own rows reached the sink as reads (those not changed meanwhile).
    const brought = lines.filter(
      (l) =>
        l.op === 'read' &&
        Number(l.key.id) >= ATTACHED_FIRST_ID &&
        Number(l.key.id) < ATTACHED_FIRST_ID + ATTACHED_ROWS,
    );
    expect(new Set(brought.map((l) => l.key.id)).size).toBeGreaterThan(ATTACHED_ROWS - 100);
    // In bounded chunks (snapshot.chunk_rows), each delivered at its own high message.
    const chunks = new Map<bigint, Set<unknown>>();
    for (const l of brought) {
      const lsn = decodePosition(l.position).lsn;
      chunks.set(lsn, (chunks.get(lsn) ?? new Set()).add(l.key.id));
    }
    expect(chunks.size).toBeGreaterThanOrEqual(ATTACHED_ROWS / CHUNK_ROWS);
    expect(Math.max(...[...chunks.values()].map((ids) => ids.size))).toBeLessThanOrEqual(CHUNK_ROWS);

    // The rest of RELIABILITY.md's oracle: no insert lost through the attach, the detach and
    // the SIGKILL while streaming, and per key no version first seen after a newer one.
    expect(writer.inserted.length).toBeGreaterThan(50);
    const records = lines.map((l) => ({ ...l, key: l.key as Row, after: (l.after as Row | undefined) ?? null }));
    expect(
      checkNothingLost(
        records,
        writer.inserted.map((key) => ({ table: 'public.orders', op: 'insert' as const, key })),
      ),
    ).toEqual([]);
    expect(checkPositionOrder(records)).toEqual([]);

    // The detached partition's rows stay in the sink as they were when it was detached.
    const expected = await tableState(s.fx.admin, orders, KEY);
    for (const [key, row] of await tableState(s.fx.admin, leaf('orders_2024_01'), KEY)) expected.set(key, row);
    const held = reduceByKey(lines).get('public.orders') ?? new Map();
    expect(held.size).toBe(expected.size);
    expect(Object.fromEntries(held)).toEqual(Object.fromEntries(expected));
  });

  it('a leaf partition listed alone is captured under its own name', async () => {
    await using s = await TablesScenario.create({
      ddl: ORDERS_DDL,
      tables: [leaf('orders_2024_02')],
      snapshot: { concurrency: 2, rows: 5000 },
    });
    const proc = s.spawn();
    await s.waitState(proc, 'LIVE_CDC');
    await s.fx.admin.query(`INSERT INTO public.orders VALUES (${MARKER}, '2024-02-03', 0, 'marker')`);
    await s.fx.admin.query(`INSERT INTO public.orders VALUES (${MARKER + 1}, '2024-01-03', 0, 'other month')`);
    await s.fx.admin.query(`UPDATE public.orders SET note = 'changed' WHERE created = '2024-02-10'`);
    await s.fx.admin.query(`INSERT INTO public.orders VALUES (${MARKER + 2}, '2024-02-04', 0, 'last')`);
    await waitFor(async () => (await s.lines()).some((l) => l.key.id === MARKER + 2), 'the last row', proc);
    const lines = await s.lines();
    expect(new Set(lines.map((l) => l.table))).toEqual(new Set(['public.orders_2024_02']));
    const held = reduceByKey(lines).get('public.orders_2024_02') ?? new Map();
    expect(Object.fromEntries(held)).toEqual(
      Object.fromEntries(await tableState(s.fx.admin, leaf('orders_2024_02'), KEY)),
    );
  });
});
