import type { ChangeEvent, TableRef } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { pgFixture, quoteIdent, quoteTable, readAll, uniqueName } from './fixture.js';

const SCHEMA = 'Odd "Schema".ü';
const TABLES: TableRef[] = [
  { schema: 'public', name: 'select' },
  { schema: 'public', name: 'Mixed.Case' },
  { schema: 'public', name: 'we"ird\'s' },
  { schema: 'public', name: 'with space' },
  { schema: SCHEMA, name: 'ünïcødé 表' },
  { schema: 'public', name: 'x"; DROP TABLE public.victims; --' },
  { schema: 'public', name: "x'); DROP TABLE public.victims; --" },
];
const COLUMN_ID = 'Id "key"';
const COLUMN_VALUE = 'from';

describe('identifiers are always quoted', () => {
  it('tables and columns named like keywords, with dots, quotes, spaces, unicode or SQL replicate, and nothing else runs', async () => {
    await using fx = await pgFixture();
    await fx.admin.query(`CREATE SCHEMA ${quoteIdent(SCHEMA)}`);
    await fx.admin.query('CREATE TABLE public.victims (id int)');
    for (const [i, t] of TABLES.entries()) {
      await fx.admin.query(
        `CREATE TABLE ${quoteTable(t)} (${quoteIdent(COLUMN_ID)} int PRIMARY KEY, ${quoteIdent(COLUMN_VALUE)} text)`,
      );
      await fx.admin.query(`INSERT INTO ${quoteTable(t)} SELECT g, $1 || g FROM generate_series(1, 50) g`, [`t${i}-`]);
    }
    await fx.grantRead(TABLES);
    const pipeline = uniqueName('Idents');
    await fx.preparePublication(pipeline, TABLES);
    const source = await fx.source(pipeline);

    const checks = await source.check(TABLES);
    expect(checks.filter((c) => !c.ok && c.severity !== 'warning')).toEqual([]);

    const opened = await source.open(TABLES, { wantSnapshot: true });
    const schemas = await source.describe(TABLES);
    expect(schemas.map((s) => [s.schema, s.name])).toEqual(TABLES.map((t) => [t.schema, t.name]));
    for (const [i, schema] of schemas.entries()) {
      expect(schema.keyColumns).toEqual([COLUMN_ID]);
      const { rows } = await readAll(source, schema, {
        snapshotToken: opened.snapshot!.token,
        targetRowsPerPartition: 10,
      });
      expect(rows).toHaveLength(50);
      expect(rows.find((r) => r[COLUMN_ID] === 7)).toEqual({ [COLUMN_ID]: 7, [COLUMN_VALUE]: `t${i}-7` });
    }
    await opened.snapshot!.release();

    for (const [i, t] of TABLES.entries())
      await fx.admin.query(
        `UPDATE ${quoteTable(t)} SET ${quoteIdent(COLUMN_VALUE)} = $1 WHERE ${quoteIdent(COLUMN_ID)} = 1`,
        [`u${i}`],
      );
    const controller = new AbortController();
    const events: ChangeEvent[] = [];
    const timer = setTimeout(() => controller.abort(new Error('stream timed out')), 60_000);
    try {
      for await (const batch of source.stream(opened.startPosition, { signal: controller.signal, tables: TABLES })) {
        events.push(...batch.events);
        if (events.length >= TABLES.length) break;
      }
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    expect(events.map((e) => [e.table.schema, e.table.name, e.after?.[COLUMN_VALUE]])).toEqual(
      TABLES.map((t, i) => [t.schema, t.name, `u${i}`]),
    );

    const victims = await fx.admin.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename = 'victims'`,
    );
    expect(victims.rows[0].n).toBe(1);
    const members = await fx.admin.query('SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1', [
      source.publicationName,
    ]);
    expect(members.rows[0].n).toBe(TABLES.length);
  });
});
