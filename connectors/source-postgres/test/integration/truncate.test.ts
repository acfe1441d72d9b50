import { describe, expect, it } from 'vitest';
import { waitFor } from './e2e/scenario.js';
import { reduceByKey, TablesScenario, tableState } from './e2e/tables.js';

const t = (name: string) => ({ schema: 'public', name });
const DDL = [
  'CREATE TABLE public.items (id int PRIMARY KEY, label text)',
  `INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 20000) g`,
  'ANALYZE public.items',
  'CREATE TABLE public.tags (id int PRIMARY KEY, label text)',
  `INSERT INTO public.tags SELECT g, 'seed' FROM generate_series(1, 100) g`,
  'CREATE TABLE public.parents (id int PRIMARY KEY)',
  'CREATE TABLE public.children (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parents (id))',
  'INSERT INTO public.parents SELECT generate_series(1, 10)',
  'INSERT INTO public.children (parent_id) SELECT 1 + g % 10 FROM generate_series(1, 50) g',
  `CREATE TABLE public.events (id int NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
  `CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
  `CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
  `INSERT INTO public.events SELECT g, date '2024-06-01' + g FROM generate_series(1, 300) g`,
];
const TABLES = [t('items'), t('tags'), t('parents'), t('children'), t('events')];
/**
 * The row inserted last; once the sink holds its insert, it holds everything before it. Its
 * id is outside every seeded range: a seeded id (this test once waited for 999) is already in
 * the sink as a snapshot row, so the wait ended before the stream had delivered anything.
 */
const MARKER = 1_000_000;
const KEYS: Record<string, string[]> = {
  items: ['id'],
  tags: ['id'],
  parents: ['id'],
  children: ['id'],
  events: ['id', 'at'],
};

describe('TRUNCATE', () => {
  it('single, multi-table, CASCADE and partitioned TRUNCATEs while streaming, and one between a SIGKILL during the snapshot and the restart: the sink reduced by key with truncates applied equals every table', async () => {
    await using s = await TablesScenario.create({
      ddl: DDL,
      tables: TABLES,
      snapshot: { concurrency: 1, rows: 1000 },
    });
    const first = s.spawn();
    await waitFor(() => s.partitionsDone() >= 2, 'two snapshot partitions done', first);
    first.kill('SIGKILL');
    await first.exited;
    await s.fx.admin.query('TRUNCATE public.items');
    await s.fx.admin.query(
      `INSERT INTO public.items SELECT g, 'after the first truncate' FROM generate_series(1, 30) g`,
    );

    // A slow sink behind the restarted pipeline: the stream lags the statements below, so
    // the checks only pass if they wait for what the stream delivered (the marker's insert).
    const second = s.spawn({ writeDelayMs: 100 });
    await s.waitState(second, 'LIVE_CDC');
    const admin = s.fx.admin;
    await admin.query('TRUNCATE public.items');
    await admin.query(`INSERT INTO public.items VALUES (1, 'one'), (2, 'two')`);
    await admin.query('TRUNCATE public.items, public.tags');
    await admin.query(`INSERT INTO public.tags VALUES (7, 'seven')`);
    await admin.query('BEGIN');
    await admin.query(`INSERT INTO public.items VALUES (3, 'three')`);
    await admin.query('TRUNCATE public.parents RESTART IDENTITY CASCADE');
    await admin.query('INSERT INTO public.parents VALUES (100)');
    await admin.query('INSERT INTO public.children (parent_id) VALUES (100), (100)');
    await admin.query('COMMIT');
    await admin.query('TRUNCATE public.events');
    await admin.query(`INSERT INTO public.events VALUES (1, '2025-02-02'), (2, '2024-02-02')`);
    await admin.query(`INSERT INTO public.items VALUES (${MARKER}, 'marker')`);
    await waitFor(
      async () => (await s.lines()).some((l) => l.op === 'insert' && l.key.id === MARKER),
      'the marker',
      second,
    );

    const lines = await s.lines();
    const truncates = lines.filter((l) => l.op === 'truncate').map((l) => l.table);
    expect(truncates).toEqual([
      'public.items',
      'public.items',
      'public.items',
      'public.tags',
      'public.parents',
      'public.children',
      'public.events',
    ]);
    const held = reduceByKey(lines);
    for (const table of TABLES) {
      const expected = await tableState(s.fx.admin, table, KEYS[table.name]!);
      expect(Object.fromEntries(held.get(`public.${table.name}`) ?? []), table.name).toEqual(
        Object.fromEntries(expected),
      );
    }
    // Nothing of the snapshot comes after a truncate of its table.
    for (const [i, line] of lines.entries()) {
      if (line.op !== 'truncate') continue;
      expect(lines.slice(i + 1).some((l) => l.op === 'read' && l.table === line.table)).toBe(false);
    }
  });
});
