import { type OracleRecord, runOracle } from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { sleep } from './e2e/harness.js';
import { waitFor } from './e2e/scenario.js';
import { reduceByKey, TablesScenario, tableState } from './e2e/tables.js';

const history = { schema: 'public', name: 'history' };
const accounts = { schema: 'public', name: 'accounts' };
const DDL = [
  'CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL)',
  'INSERT INTO public.accounts SELECT g, g FROM generate_series(1, 50) g',
  // Like pgbench_history: no primary key, no unique index.
  'CREATE TABLE public.history (tid int, aid int, delta int, note text)',
  `INSERT INTO public.history SELECT g % 10, g, g * 3, 'seed ' || g FROM generate_series(1, 200) g`,
];

describe('replica identity', () => {
  it('`nanosync run` refuses a table without a key, naming it and both fixes, creates nothing, and exits 1; the application can still update the table; with REPLICA IDENTITY FULL it replicates', async () => {
    await using s = await TablesScenario.create({ ddl: DDL, tables: [accounts, history], preparePublication: false });
    const run = await s.runCli();
    expect(run.code, run.stderr).toBe(1);
    const output = run.stdout + run.stderr;
    expect(output).toContain('NS_R2006');
    expect(output).toContain('table "public"."history" has no usable replica identity');
    expect(output).toContain('ALTER TABLE "public"."history" ADD PRIMARY KEY (<key columns>)');
    expect(output).toContain('ALTER TABLE "public"."history" REPLICA IDENTITY FULL');
    expect(output).not.toContain('"public"."accounts" has no usable');
    expect(await s.leftovers()).toEqual([]);
    const updated = await s.fx.admin.query(`UPDATE public.history SET note = 'app update' WHERE aid <= 5`);
    expect(updated.rowCount).toBe(5);
    const deleted = await s.fx.admin.query('DELETE FROM public.history WHERE aid = 6');
    expect(deleted.rowCount).toBe(1);

    await s.fx.admin.query('ALTER TABLE public.history REPLICA IDENTITY FULL');
    const proc = s.spawn();
    await s.waitState(proc, 'LIVE_CDC');
    await s.fx.admin.query(`UPDATE public.history SET note = 'streamed update' WHERE aid BETWEEN 10 AND 14`);
    await s.fx.admin.query('DELETE FROM public.history WHERE aid BETWEEN 20 AND 22');
    await s.fx.admin.query(`INSERT INTO public.history VALUES (1, 1000, 1, 'new')`);
    await s.fx.admin.query('UPDATE public.accounts SET balance = -1 WHERE id = 7');
    await waitFor(
      async () => (await s.lines()).some((l) => l.key.id === 7 && l.op === 'update'),
      'the last change',
      proc,
    );
    const lines = await s.lines();
    const held = reduceByKey(lines);
    const columns = ['tid', 'aid', 'delta', 'note'];
    expect(Object.fromEntries(held.get('public.history') ?? [])).toEqual(
      Object.fromEntries(await tableState(s.fx.admin, history, columns)),
    );
    expect(Object.fromEntries(held.get('public.accounts') ?? [])).toEqual(
      Object.fromEntries(await tableState(s.fx.admin, accounts, ['id'])),
    );
    const streamedUpdate = lines.find((l) => l.table === 'public.history' && l.op === 'update');
    expect(Object.keys(streamedUpdate?.key ?? {})).toEqual(columns);
  });

  it('a keyless table with REPLICA IDENTITY FULL passes the oracle under a writer inserting, updating and deleting, with SIGKILLs during the snapshot and while streaming', async () => {
    const columns = ['tid', 'aid', 'delta', 'note'];
    await using s = await TablesScenario.create({
      ddl: [
        'CREATE TABLE public.history (tid int, aid int, delta int, note text)',
        `INSERT INTO public.history SELECT g % 10, g, g * 3, 'seed ' || g FROM generate_series(1, 20000) g`,
        'ALTER TABLE public.history REPLICA IDENTITY FULL',
        'ANALYZE public.history',
      ],
      tables: [history],
      snapshot: { concurrency: 2, rows: 2000 },
    });
    // Every row stays unique (aid is never repeated), so every column together is a key.
    let stopped = false;
    let recording = false;
    let failure: unknown;
    const inserted: Row[] = [];
    const writing = (async () => {
      const client = new pg.Client({ connectionString: s.fx.adminUrl });
      await client.connect();
      try {
        for (let aid = 100_000; !stopped; aid++) {
          const record = recording;
          await client.query('BEGIN');
          await client.query(`INSERT INTO public.history VALUES ($1 % 10, $1, 1, 'new')`, [aid]);
          await client.query(
            `UPDATE public.history SET delta = delta + 1, note = 'u' || $1 WHERE aid = ($1::bigint * 7919) % 20000 + 1`,
            [aid],
          );
          if (aid % 3 === 0)
            await client.query('DELETE FROM public.history WHERE aid = ($1::bigint * 104729) % 20000 + 1', [aid]);
          await client.query('COMMIT');
          if (record) inserted.push({ tid: aid % 10, aid, delta: 1, note: 'new' });
          await sleep(3);
        }
      } finally {
        await client.end().catch(() => {});
      }
    })().catch((error: unknown) => {
      failure = error;
    });

    const first = s.spawn();
    await waitFor(() => s.partitionsDone() >= 2, 'two snapshot partitions done', first);
    first.kill('SIGKILL');
    await first.exited;
    const second = s.spawn();
    await s.waitState(second, 'LIVE_CDC');
    recording = true;
    await sleep(1500);
    second.kill('SIGKILL');
    await second.exited;
    const third = s.spawn();
    await s.waitState(third, 'LIVE_CDC');
    await sleep(1000);
    stopped = true;
    await writing;
    expect(failure).toBeUndefined();
    await s.fx.admin.query(`INSERT INTO public.history VALUES (0, 9999999, 0, 'marker')`);
    await waitFor(async () => (await s.lines()).some((l) => l.key.aid === 9999999), 'the marker row', third);

    const lines = await s.lines();
    const records: OracleRecord[] = lines.map((l) => ({
      ...l,
      key: l.key as Row,
      after: (l.after as Row | undefined) ?? null,
      before: ((l as { before?: Row }).before as Row | undefined) ?? null,
    }));
    const updates = lines.filter((l) => l.op === 'update');
    expect(updates.length).toBeGreaterThan(50);
    expect(Object.keys(updates[0]!.key)).toEqual(columns);
    expect(inserted.length).toBeGreaterThan(50);
    const expected = [...(await tableState(s.fx.admin, history, columns)).values()] as Row[];
    expect(
      runOracle({
        records,
        expected: { 'public.history': expected },
        keyColumns: columns,
        changes: inserted.map((key) => ({ table: 'public.history', op: 'insert' as const, key })),
      }),
    ).toEqual([]);
  });

  it('a replica identity dropped while streaming stops the pipeline with the table and both fixes', async () => {
    await using s = await TablesScenario.create({ ddl: DDL, tables: [accounts, history] });
    await s.fx.admin.query('ALTER TABLE public.history REPLICA IDENTITY FULL');
    const proc = s.spawn();
    await s.waitState(proc, 'LIVE_CDC');
    await s.fx.admin.query('ALTER TABLE public.history REPLICA IDENTITY DEFAULT');
    await s.fx.admin.query(`INSERT INTO public.history VALUES (1, 2000, 1, 'after the identity was dropped')`);
    const errored = await s.waitState(proc, 'ERRORED');
    expect(errored).toContain('NS_P4004');
    expect(errored).toContain('replica identity lost while streaming');
    expect(errored).toContain('ALTER TABLE "public"."history" REPLICA IDENTITY FULL');
    expect(errored).toContain('ALTER TABLE "public"."history" ADD PRIMARY KEY');
  });

  it('a role without REPLICATION: the pipeline errors naming the fix, and no slot or publication of it is left', async () => {
    await using s = await TablesScenario.create({
      ddl: DDL.slice(0, 2),
      tables: [accounts],
      preparePublication: false,
      roleAttributes: 'NOREPLICATION',
    });
    const run = await s.runCli();
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout + run.stderr).toMatch(/lacks the REPLICATION attribute.*ALTER ROLE "[^"]+" REPLICATION;/s);
    expect(await s.leftovers()).toEqual([]);
  });

  it('a closed Kafka broker at start: the pipeline errors after its retries, and no slot or publication of it is left', async () => {
    await using s = await TablesScenario.create({
      ddl: DDL.slice(0, 2),
      tables: [accounts],
      preparePublication: false,
      kafkaBrokers: '127.0.0.1:1',
    });
    const proc = s.spawn();
    const errored = await s.waitState(proc, 'ERRORED', 240_000);
    expect(errored).toContain('NS_R2006');
    expect(errored).toContain('127.0.0.1:1');
    await sleep(200);
    expect(await s.leftovers()).toEqual([]);
  });
});
