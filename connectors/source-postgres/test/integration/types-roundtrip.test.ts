import type { ChangeEvent, Row } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config.js';
import { buildConnectionConfig, connectClient, SESSION_SETTINGS } from '../../src/connection.js';
import { PostgresSource } from '../../src/source.js';
import { BUILTIN_TYPES } from '../../src/types/index.js';
import { memoryLogger, pgFixture, readAll, uniqueName } from './fixture.js';

const table = { schema: 'public', name: 'all_types' };

const DDL = [
  `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
  `CREATE DOMAIN price AS numeric(10,2) CHECK (VALUE >= 0)`,
  `CREATE DOMAIN event_time AS timestamptz`,
  `CREATE DOMAIN deep_price AS price`,
  `CREATE TABLE public.all_types (
     id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, num_p numeric(12,2), f4 float4, f8 float8, b bool,
     t text, vc varchar(10), ch char(5), by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
     iv interval, u uuid, j json, jb jsonb, ia int4[], ta text[], na numeric[], tsa timestamptz[], ba bytea[],
     e mood, ea mood[], dom price, dom_ts event_time, dom2 deep_price, m money, ip inet, net cidr, mac macaddr)`,
];

const COLUMNS =
  'id, i2, i4, i8, num, num_p, f4, f8, b, t, vc, ch, by, d, tm, ttz, ts, tstz, iv, u, j, jb, ia, ta, na, tsa, ba, e, ea, dom, dom_ts, dom2, m, ip, net, mac';

/** Literal SQL values, each with the canonical value the connector must produce. */
const ROWS: { sql: string; expected: Row }[] = [
  {
    sql: `1, -32768, 2147483647, 9223372036854775807, 1234567890123456789012345678901234567890.0123456789, 12.34,
      'NaN', 'Infinity', true, E'tab\\there\\nnew\\\\line "q" ü✓𝄞', 'ab', 'x', '\\x00ff10'::bytea, '0044-03-15 BC',
      '24:00:00', '13:45:06.123456+05:30', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.000001+00',
      '1 year 2 months 3 days 04:05:06.000007', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
      '{"big": 123456789012345678901234567890}', '{"a": [1, 2.50]}', '{{1,2},{NULL,4}}', ARRAY['a,b', 'NULL', NULL, 'q"uote', 'back\\slash'],
      '{1.5,NaN,-Infinity}', '{"2024-01-01 00:00:00+00",infinity}', ARRAY['\\x0102'::bytea, NULL],
      'happy', '{sad,NULL}', 99.95, '2000-01-01 00:00:00+00', 5, 1234.56, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03'`,
    expected: {
      id: 1,
      i2: -32768,
      i4: 2147483647,
      i8: '9223372036854775807',
      num: '1234567890123456789012345678901234567890.0123456789',
      num_p: '12.34',
      f4: Number.NaN,
      f8: Number.POSITIVE_INFINITY,
      b: true,
      t: 'tab\there\nnew\\line "q" ü✓𝄞',
      vc: 'ab',
      ch: 'x    ',
      by: new Uint8Array([0x00, 0xff, 0x10]),
      d: '-0043-03-15',
      tm: '24:00:00.000000',
      ttz: '13:45:06.123456+05:30',
      ts: '2024-01-02T03:04:05.123456',
      tstz: '2024-01-02T03:04:05.000001Z',
      iv: 'P1Y2M3DT4H5M6.000007S',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      j: '{"big": 123456789012345678901234567890}',
      jb: '{"a": [1, 2.50]}',
      ia: [
        [1, 2],
        [null, 4],
      ],
      ta: ['a,b', 'NULL', null, 'q"uote', 'back\\slash'],
      na: ['1.5', 'NaN', '-Infinity'],
      tsa: ['2024-01-01T00:00:00.000000Z', 'infinity'],
      ba: [new Uint8Array([1, 2]), null],
      e: 'happy',
      ea: ['sad', null],
      dom: '99.95',
      dom_ts: '2000-01-01T00:00:00.000000Z',
      dom2: '5.00',
      m: '$1,234.56',
      ip: '192.168.0.1/24',
      net: '10.0.0.0/8',
      mac: '08:00:2b:01:02:03',
    },
  },
  {
    sql: `2, 32767, -2147483648, -9223372036854775808, 'NaN', -0.01, '-Infinity', 'NaN', false, '', '', '', '\\x'::bytea,
      'infinity', '00:00:00.000001', '00:00:00-08', '0001-01-01 00:00:00 BC', '1900-06-01 12:00:00+00', '-1 days -00:00:01',
      '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', '{}', '{}', '{}', 'sad', '{}', 0, '-infinity', 0,
      -1.5, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff'`,
    expected: {
      id: 2,
      i2: 32767,
      i4: -2147483648,
      i8: '-9223372036854775808',
      num: 'NaN',
      num_p: '-0.01',
      f4: Number.NEGATIVE_INFINITY,
      f8: Number.NaN,
      b: false,
      t: '',
      vc: '',
      ch: '     ',
      by: new Uint8Array([]),
      d: 'infinity',
      tm: '00:00:00.000001',
      ttz: '00:00:00.000000-08:00',
      ts: '+0000-01-01T00:00:00.000000',
      tstz: '1900-06-01T12:00:00.000000Z',
      iv: 'P-1DT-1S',
      u: '00000000-0000-0000-0000-000000000000',
      j: '[]',
      jb: '{}',
      ia: [],
      ta: [],
      na: [],
      tsa: [],
      ba: [],
      e: 'sad',
      ea: [],
      dom: '0.00',
      dom_ts: '-infinity',
      dom2: '0.00',
      m: '-$1.50',
      ip: '::1',
      net: '2001:db8::/32',
      mac: 'ff:ff:ff:ff:ff:ff',
    },
  },
  {
    sql: `3, 0, 0, 9007199254740993, 1e-30, 0, 0.1, 1.7976931348623157e308, NULL, 'ü', NULL, NULL, NULL, '5874897-12-31',
      NULL, NULL, '294276-12-31 23:59:59.999999', '4713-01-01 00:00:00+00 BC', 'PT0S', NULL, 'null', '"s"', NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL`,
    expected: {
      id: 3,
      i2: 0,
      i4: 0,
      i8: '9007199254740993',
      num: '0.000000000000000000000000000001',
      num_p: '0.00',
      f4: 0.1,
      f8: Number.MAX_VALUE,
      b: null,
      t: 'ü',
      vc: null,
      ch: null,
      by: null,
      d: '+5874897-12-31',
      tm: null,
      ttz: null,
      ts: '+294276-12-31T23:59:59.999999',
      tstz: '-4712-01-01T00:00:00.000000Z',
      iv: 'PT0S',
      u: null,
      j: 'null',
      jb: '"s"',
      ia: null,
      ta: null,
      na: null,
      tsa: null,
      ba: null,
      e: null,
      ea: null,
      dom: null,
      dom_ts: null,
      dom2: null,
      m: null,
      ip: null,
      net: null,
      mac: null,
    },
  },
];

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
