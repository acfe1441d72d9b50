import type { ChangeEvent } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config.js';
import { buildConnectionConfig, connectClient, SESSION_SETTINGS } from '../../src/connection.js';
import { PostgresSource } from '../../src/source.js';
import { BUILTIN_TYPES } from '../../src/types/index.js';
import { memoryLogger, pgFixture, readAll, uniqueName } from './fixture.js';
import { COLUMNS, DDL, ROWS } from './types-data.js';

const table = { schema: 'public', name: 'all_types' };

/** Session defaults that would change every value's text if the connector did not pin its own. */
const EXOTIC_DATABASE_SETTINGS = {
  TimeZone: 'Pacific/Chatham',
  DateStyle: 'SQL, DMY',
  IntervalStyle: 'postgres_verbose',
  extra_float_digits: '-3',
  bytea_output: 'escape',
};

async function exoticDatabase() {
  const fx = await pgFixture();
  for (const statement of DDL) await fx.admin.query(statement);
  for (const [name, value] of Object.entries(EXOTIC_DATABASE_SETTINGS)) {
    await fx.admin.query(`ALTER DATABASE ${fx.database} SET ${name} = '${value}'`);
  }
  await fx.admin.query(`ALTER ROLE ${fx.role} SET TimeZone = 'America/St_Johns'`);
  await fx.grantRead([table]);
  return fx;
}

async function insertRows(url: string, idOffset: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query('SHOW TimeZone');
    expect(rows[0].TimeZone).toBe('Pacific/Chatham');
    for (const row of ROWS)
      await client.query(
        `INSERT INTO public.all_types (${COLUMNS}) VALUES (${row.sql.replace(/^(\s*)(\d+)/, (_m, ws, id) => `${ws}${Number(id) + idOffset}`)})`,
      );
  } finally {
    await client.end();
  }
}

describe('every type round-trips, whatever the server session defaults', () => {
  it('snapshot (COPY and cursor paths) and stream give the canonical values', async () => {
    await using fx = await exoticDatabase();
    await insertRows(fx.adminUrl, 0);
    const pipeline = uniqueName('types');
    await fx.preparePublication(pipeline, [table]);
    const source = await fx.source(pipeline);
    const opened = await source.open([table], { wantSnapshot: true });
    const [schema] = await source.describe([table]);

    expect(schema!.keyColumns).toEqual(['id']);
    const kinds = Object.fromEntries(schema!.columns.map((c) => [c.name, c.type]));
    expect(kinds).toMatchObject({
      i8: { kind: 'int64' },
      num_p: { kind: 'decimal', precision: 12, scale: 2 },
      num: { kind: 'decimal' },
      e: { kind: 'enum', values: ['sad', 'ok', 'happy'] },
      ea: { kind: 'array', items: { kind: 'enum', values: ['sad', 'ok', 'happy'] } },
      dom: { kind: 'decimal', precision: 10, scale: 2 },
      dom2: { kind: 'decimal', precision: 10, scale: 2 },
      dom_ts: { kind: 'timestamptz' },
      ia: { kind: 'array', items: { kind: 'int32' } },
      m: { kind: 'money' },
    });
    expect(schema!.columns.find((c) => c.name === 'vc')?.sourceType).toBe('varchar(10)');

    const snap = await readAll(source, schema!, { snapshotToken: opened.snapshot!.token });
    const byId = new Map(snap.rows.map((r) => [r.id, r]));
    for (const row of ROWS) expect(byId.get(row.expected.id as number)).toEqual(row.expected);
    await opened.snapshot!.release();

    // The cursor read path decodes identically.
    const cursorSource = new PostgresSource(
      configSchema.parse(fx.roleProperties()),
      { pipeline, logger: memoryLogger(), signal: new AbortController().signal },
      { readPath: 'cursor' },
    );
    try {
      const cursorRows = await readAll(cursorSource, schema!, {});
      expect(new Map(cursorRows.rows.map((r) => [r.id, r]))).toEqual(byId);
    } finally {
      await cursorSource.close();
    }

    // Stream: the same values inserted after the start position arrive identical.
    await insertRows(fx.adminUrl, 100);
    const controller = new AbortController();
    const events: ChangeEvent[] = [];
    const timeout = setTimeout(() => controller.abort(new Error('stream timed out')), 60_000);
    try {
      for await (const batch of source.stream(opened.startPosition, { signal: controller.signal, tables: [table] })) {
        events.push(...batch.events);
        if (batch.safePosition) await source.acknowledge(batch.safePosition);
        if (events.length >= ROWS.length) break;
      }
    } finally {
      clearTimeout(timeout);
      controller.abort();
    }
    expect(events.map((e) => e.op)).toEqual(ROWS.map(() => 'insert'));
    for (const event of events) {
      const after = event.after!;
      const snapshotRow = byId.get((after.id as number) - 100);
      expect({ ...after, id: (after.id as number) - 100 }).toEqual(snapshotRow);
    }
    expect(events[0]!.table.columns).toEqual(schema!.columns.map((c) => ({ ...c, nullable: c.name !== 'id' })));
    expect(events[0]!.table.keyColumns).toEqual(schema!.keyColumns);
  });

  it('pins the session settings on plain and replication connections', async () => {
    await using fx = await exoticDatabase();
    const conn = buildConnectionConfig(configSchema.parse(fx.roleProperties()));
    for (const replication of [false, true]) {
      const client = await connectClient(conn, { replication });
      try {
        for (const [name, value] of Object.entries(SESSION_SETTINGS)) {
          const { rows } = await client.query(`SHOW ${name}`);
          const shown = String(Object.values(rows[0] as object)[0]);
          expect({ replication, name, value: name === 'DateStyle' ? shown.split(',')[0] : shown }).toEqual({
            replication,
            name,
            value,
          });
        }
      } finally {
        await client.end();
      }
    }
  });

  it('the built-in OID table agrees with the server catalog', async () => {
    await using fx = await pgFixture();
    const oids = [...BUILTIN_TYPES.keys()];
    const { rows } = await fx.admin.query(
      'SELECT oid::int AS oid, typname, typelem::int AS elem FROM pg_type WHERE oid = ANY($1::oid[])',
      [oids],
    );
    const server = new Map(rows.map((r) => [r.oid as number, r]));
    for (const [oid, info] of BUILTIN_TYPES) {
      expect({ oid, name: server.get(oid)?.typname }).toEqual({ oid, name: info.name });
      if (info.codec === 'array')
        expect({ oid, elem: server.get(oid)?.elem }).toEqual({ oid, elem: info.element!.oid });
    }
  });
});
