import { StreamReader } from '@nanosync/connector-testkit';
import type { ChangeEvent, Position, Row, TableRef } from '@nanosync/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  liveDescribe,
  liveSkip,
  literal,
  type MssqlFixture,
  mssqlFixture,
  quoteIdent,
  quoteTable,
  reduce,
  snapshotRows,
  uniqueName,
} from './fixture.js';

const skip = await liveSkip();
const WAIT = 60_000;

liveDescribe('sqlserver source against a live SQL Server', skip, () => {
  let fx: MssqlFixture;
  beforeAll(async () => {
    fx = await mssqlFixture();
  });
  afterAll(async () => {
    await fx?.[Symbol.asyncDispose]();
  });

  const table = (prefix: string): TableRef => ({ schema: 'dbo', name: uniqueName(prefix) });
  const byId = (rows: Iterable<Row>) =>
    [...rows].sort((a, b) => String(a.id).localeCompare(String(b.id), 'en', { numeric: true }));

  async function openStream(pipeline: string, tables: TableRef[], extra: Record<string, unknown> = {}) {
    const source = await fx.source(pipeline, extra);
    const { startPosition } = await source.open(tables, { wantSnapshot: true });
    return { source, startPosition, reader: new StreamReader(source, startPosition, tables, WAIT) };
  }

  it('reads every type the same from the snapshot and from the stream, losslessly', async () => {
    const t = table('types');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (
      id int PRIMARY KEY, ti tinyint, si smallint, bi bigint, d38 decimal(38,10), n numeric(10,0), m money, sm smallmoney,
      f float, r real, b bit, c char(5), vc varchar(20), nc nchar(3), nvc nvarchar(max), txt text, ntx ntext,
      bin binary(4), vb varbinary(max), img image, dt date, t0 time(0), t7 time(7), dtm datetime, d2 datetime2(7), d23 datetime2(3),
      sdt smalldatetime, dto datetimeoffset(7), g uniqueidentifier, x xml, rv rowversion, h hierarchyid, geo geography, gm geometry, sv sql_variant)`);
    await fx.enableCdc(t);
    const insert = (
      id: number,
    ) => `INSERT INTO ${quoteTable(t)} (id, ti, si, bi, d38, n, m, sm, f, r, b, c, vc, nc, nvc, txt, ntx, bin, vb, img, dt, t0, t7, dtm, d2, d23, sdt, dto, g, x, h, geo, gm, sv)
      VALUES (${id}, 255, -32768, 9223372036854775807, 1234567890123456789012345678.0123456789, 9999999999, 922337203685477.5807, -214748.3648,
        1.7976931348623157E+308, 3.4E+38, 1, 'ab', 'varchar', N'ü', N'${'x'.repeat(10_000)}🙂', 'text', N'ntext ✓',
        0x0102FF00, 0xDEADBEEF, 0x00, '0001-01-01', '23:59:59', '23:59:59.9999999', '1753-01-01T00:00:00.003', '9999-12-31T23:59:59.9999999', '2024-02-29T12:00:00.123',
        '2079-06-06T23:59:00', '2024-01-01T01:30:00.1234567+05:30', '00112233-4455-6677-8899-AABBCCDDEEFF', N'<a b="1"/>', hierarchyid::Parse('/1/2/'),
        geography::Point(47.65, -122.35, 4326), geometry::STGeomFromText('POINT (1 2 3)', 0), CAST(CAST('2024-01-01T00:00:00.1234567' AS datetime2(7)) AS sql_variant))`;
    await fx.exec(insert(1));
    const { source, reader } = await openStream(uniqueName('p'), [t]);
    const [snap] = await snapshotRows(source, t);
    expect(snap).toMatchObject({
      bi: '9223372036854775807',
      d38: '1234567890123456789012345678.0123456789',
      m: '922337203685477.5807',
      sm: '-214748.3648',
      t7: '23:59:59.9999999',
      dtm: '1753-01-01T00:00:00.003000',
      d2: '9999-12-31T23:59:59.9999999',
      d23: '2024-02-29T12:00:00.123000',
      dto: '2023-12-31T20:00:00.1234567Z',
      g: '00112233-4455-6677-8899-aabbccddeeff',
      h: '/1/2/',
      c: 'ab   ',
    });
    await fx.exec(insert(2));
    await reader.readUntil((events) => events.some((e) => e.key.id === 2), 'the insert of row 2');
    const streamed = reader.events.find((e) => e.key.id === 2)!.after!;
    const { rv: _rv1, id: _id1, ...fromSnapshot } = snap!;
    const { rv: _rv2, id: _id2, ...fromStream } = streamed;
    expect(fromStream).toEqual(fromSnapshot);
    await reader.close();
  });

  it('quotes names with brackets, dots, spaces, quotes and unicode; a name shaped like SQL stays a name', async () => {
    await fx.exec("IF SCHEMA_ID(N'we]ird sch.ema') IS NULL EXEC(N'CREATE SCHEMA [we]]ird sch.ema]')");
    const t: TableRef = { schema: 'we]ird sch.ema', name: `Ta'ble; DROP TABLE x-- ü ${uniqueName('n')}` };
    await fx.exec(`CREATE TABLE ${quoteTable(t)} ([i]]d] int PRIMARY KEY, [va lue"] nvarchar(20))`);
    await fx.enableCdc(t, uniqueName('weird'));
    await fx.exec(`INSERT INTO ${quoteTable(t)} VALUES (1, N'one')`);
    const { source, reader } = await openStream(uniqueName('p'), [t]);
    expect(await snapshotRows(source, t)).toEqual([{ 'i]d': 1, 'va lue"': 'one' }]);
    await fx.exec(`UPDATE ${quoteTable(t)} SET [va lue"] = N'uno' WHERE [i]]d] = 1`);
    await reader.readUntil((events) => events.some((e) => e.op === 'update'), 'the update');
    expect(reader.events.find((e) => e.op === 'update')).toMatchObject({
      key: { 'i]d': 1 },
      before: { 'va lue"': 'one' },
      after: { 'va lue"': 'uno' },
    });
    await reader.close();
  });

  it('pages varchar keys under an SQL_ collation without skipping or repeating rows', async () => {
    const t = table('coll');
    await fx.exec(
      `CREATE TABLE ${quoteTable(t)} (id varchar(20) COLLATE SQL_Latin1_General_CP1_CI_AS PRIMARY KEY, v int)`,
    );
    // Hyphens and apostrophes sort differently under SQL (string) and Unicode (word) rules.
    const keys = Array.from({ length: 3000 }, (_, i) => [`co-op${i}`, `coop${i}`, `c'op${i}`, `c-${i}`][i % 4]!);
    for (let i = 0; i < keys.length; i += 500)
      await fx.exec(
        `INSERT INTO ${quoteTable(t)} VALUES ${keys
          .slice(i, i + 500)
          .map((k, n) => `(${literal(k).slice(1)}, ${i + n})`)
          .join(', ')}`,
      );
    await fx.enableCdc(t);
    const source = await fx.source(uniqueName('p'));
    await source.open([t], { wantSnapshot: true });
    const rows = await snapshotRows(source, t, 100);
    expect(rows.map((r) => r.id).sort()).toEqual([...keys].sort());
  });

  it('keys a table by its unique index when it has no primary key, and refuses a keyless table with the fix', async () => {
    const u = table('uniq');
    const k = table('keyless');
    await fx.exec(
      `CREATE TABLE ${quoteTable(u)} (code varchar(10) NOT NULL, v int); CREATE UNIQUE INDEX ux ON ${quoteTable(u)} (code);`,
    );
    await fx.exec(`CREATE TABLE ${quoteTable(k)} (v int)`);
    const source = await fx.source(uniqueName('p'));
    const [schema] = await source.describe([u]);
    expect(schema!.keyColumns).toEqual(['code']);
    const results = await source.check([k]);
    const failing = results.find((r) => r.name === `table dbo.${k.name}`);
    expect(failing).toMatchObject({ ok: false, severity: 'error' });
    expect(failing!.message).toMatch(/no primary key and no unique index/);
    expect(failing!.fix).toMatch(/PRIMARY KEY/);
    await expect(source.describe([k])).rejects.toThrow(expect.objectContaining({ code: 'NS_M5006' }));
  });

  it('streams deferred updates (a key update logged as delete + insert) so the result equals the table', async () => {
    const t = table('defer');
    await fx.exec(
      `CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v nvarchar(10)); INSERT INTO ${quoteTable(t)} SELECT value, N'x' FROM GENERATE_SERIES(1, 50);`,
    );
    await fx.enableCdc(t);
    await fx.waitForCapture();
    const { source, reader } = await openStream(uniqueName('p'), [t]);
    const snap = await snapshotRows(source, t);
    await fx.exec(`UPDATE ${quoteTable(t)} SET id = id + 1000`);
    await reader.readUntil((events) => events.filter((e) => e.op === 'insert').length >= 50, 'the 50 re-keyed rows');
    const expected = (await fx.admin.request().query(`SELECT id, v FROM ${quoteTable(t)}`)).recordset;
    expect(byId(reduce(reader.events, snap).values())).toEqual(byId(expected));
    await reader.close();
  });

  it('resumes from a checkpoint after a key-changing update twice in one transaction', async () => {
    const t = table('rekey');
    await fx.exec(
      `CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v int); INSERT INTO ${quoteTable(t)} VALUES (1, 0);`,
    );
    await fx.enableCdc(t);
    const pipeline = uniqueName('p');
    const first = await openStream(pipeline, [t]);
    const snap = await snapshotRows(first.source, t);
    await fx.exec(`INSERT INTO ${quoteTable(t)} VALUES (5, 5)`);
    await first.reader.readUntil((events) => events.length >= 1, 'the first insert');
    const checkpoint = first.reader.lastSafePosition!;
    const seen: ChangeEvent[] = [...first.reader.events];
    await first.reader.close();
    await first.source.close(); // a crash: nothing more acknowledged
    await fx.exec(
      `BEGIN TRAN; UPDATE ${quoteTable(t)} SET id = 2 WHERE id = 1; UPDATE ${quoteTable(t)} SET id = 3 WHERE id = 2; COMMIT;`,
    );
    const again = await fx.source(pipeline);
    await again.open([t], { wantSnapshot: false, existingStartPosition: first.startPosition, checkpoint });
    const reader = new StreamReader(again, checkpoint, [t], WAIT);
    await reader.readUntil((events) => events.some((e) => e.key.id === 3), 'the row under its final key');
    const expected = (await fx.admin.request().query(`SELECT id, v FROM ${quoteTable(t)}`)).recordset;
    expect(byId(reduce([...seen, ...reader.events], snap).values())).toEqual(byId(expected));
    await reader.close();
  });

  it('follows a new capture instance at its start LSN, with the new column, without a gap or duplicate', async () => {
    const t = table('switch');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v int)`);
    const old = await fx.enableCdc(t, uniqueName('v1'));
    const { reader } = await openStream(uniqueName('p'), [t]);
    await fx.exec(`INSERT INTO ${quoteTable(t)} VALUES (1, 1)`);
    await fx.exec(`ALTER TABLE ${quoteTable(t)} ADD extra nvarchar(10) NULL`);
    await fx.exec(`INSERT INTO ${quoteTable(t)} (id, v, extra) VALUES (2, 2, N'before')`);
    await fx.enableCdc(t, uniqueName('v2'));
    await fx.exec(`INSERT INTO ${quoteTable(t)} (id, v, extra) VALUES (3, 3, N'after')`);
    await reader.readUntil((events) => events.some((e) => e.key.id === 3), 'the insert after the switch');
    await fx.exec(
      `EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = ${literal(t.name)}, @capture_instance = ${literal(old)}`,
    );
    await fx.exec(`INSERT INTO ${quoteTable(t)} (id, v, extra) VALUES (4, 4, N'only v2')`);
    await reader.readUntil(
      (events) => events.some((e) => e.key.id === 4),
      'the insert after the old instance was dropped',
    );
    const ids = reader.events.map((e) => e.key.id);
    expect(ids).toEqual([1, 2, 3, 4]);
    expect(reader.events.find((e) => e.key.id === 3)!.after).toEqual({ id: 3, v: 3, extra: 'after' });
    expect(reader.events.find((e) => e.key.id === 2)!.after).toEqual({ id: 2, v: 2 });
    await reader.close();
  });

  it('a retention gap while stopped is an error naming the table and the lost range; resnapshot re-reads the table', async () => {
    const t = table('gap');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v int)`);
    const instance = await fx.enableCdc(t);
    const pipeline = uniqueName('p');
    const first = await openStream(pipeline, [t]);
    await first.reader.close();
    await first.source.close();
    await fx.exec(`INSERT INTO ${quoteTable(t)} VALUES (1, 1), (2, 2)`);
    await fx.waitForCapture();
    // The cleanup job, run by hand with a low-water mark past the pipeline's position.
    await fx.exec(`DECLARE @lwm binary(10) = sys.fn_cdc_get_max_lsn();
      EXEC sys.sp_cdc_cleanup_change_table @capture_instance = ${literal(instance)}, @low_water_mark = @lwm, @threshold = 100000;`);
    const again = await fx.source(pipeline);
    await expect(again.open([t], { wantSnapshot: false, existingStartPosition: first.startPosition })).rejects.toThrow(
      new RegExp(`NS_M5003.*${t.name}.*after LSN .* and before LSN .*sp_cdc_change_job`),
    );
    const healing = await fx.source(pipeline, { on_retention_gap: 'resnapshot' });
    await healing.open([t], { wantSnapshot: false, existingStartPosition: first.startPosition });
    const reader = new StreamReader(healing, first.startPosition, [t], WAIT);
    await reader.readUntil((events) => events.filter((e) => e.op === 'read').length >= 2, 'the re-snapshot');
    expect(reader.events[0]!.op).toBe('truncate');
    expect(byId(reduce(reader.events).values())).toEqual([
      { id: 1, v: 1 },
      { id: 2, v: 2 },
    ]);
    await reader.close();
  });

  it('streams a large transaction in bounded batches with a safe position only after its end', async () => {
    const t = table('big');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, pad nvarchar(100))`);
    await fx.enableCdc(t);
    const { reader } = await openStream(uniqueName('p'), [t], { max_poll_rows: 1000 });
    await fx.exec(`INSERT INTO ${quoteTable(t)} SELECT value, REPLICATE(N'x', 100) FROM GENERATE_SERIES(1, 20000)`);
    const batches = await reader.readUntil((events) => events.length >= 20_000, 'the 20 000-row transaction');
    const withEvents = batches.filter((b) => b.events.length > 0);
    expect(withEvents.length).toBeGreaterThan(10);
    expect(Math.max(...withEvents.map((b) => b.events.length))).toBeLessThanOrEqual(1000);
    expect(withEvents.slice(0, -1).every((b) => b.safePosition === undefined)).toBe(true);
    expect(withEvents.at(-1)!.safePosition).toBeDefined();
    await reader.close();
  });

  it('hands off from snapshot to stream under a concurrent writer: the result equals the table', async () => {
    const t = table('handoff');
    await fx.exec(
      `CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v int); INSERT INTO ${quoteTable(t)} SELECT value, 0 FROM GENERATE_SERIES(1, 5000);`,
    );
    await fx.enableCdc(t);
    await fx.waitForCapture();
    const { source, reader } = await openStream(uniqueName('p'), [t]);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await fx.exec(`UPDATE ${quoteTable(t)} SET v = v + 1 WHERE id = ${((i * 37) % 5000) + 1};
          INSERT INTO ${quoteTable(t)} VALUES (${10_000 + i}, ${i}); DELETE FROM ${quoteTable(t)} WHERE id = ${((i * 53) % 5000) + 1};`);
      }
    })();
    const snap = await snapshotRows(source, t, 500);
    writing = false;
    await writer;
    await fx.exec(`INSERT INTO ${quoteTable(t)} VALUES (-1, -1)`);
    await reader.readUntil((events) => events.some((e) => e.key.id === -1), 'the marker after the writer stopped');
    const expected = (await fx.admin.request().query(`SELECT id, v FROM ${quoteTable(t)}`)).recordset;
    expect(byId(reduce(reader.events, snap).values())).toEqual(byId(expected));
    await reader.close();
  });

  it('check() names a table without CDC and gives the T-SQL that enables it', async () => {
    const t = table('nocdc');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY)`);
    const results = await (await fx.source(uniqueName('p'))).check([t]);
    const row = results.find((r) => r.name === `table dbo.${t.name}`)!;
    expect(row.ok).toBe(false);
    expect(row.fix).toContain(`sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = ${literal(t.name)}`);
    expect(results.find((r) => r.name === 'cdc_database')?.ok).toBe(true);
  });

  it('manage_cdc enables CDC at open and disables exactly that at drop', async () => {
    const mine = table('managed');
    const theirs = table('dba');
    await fx.exec(
      `CREATE TABLE ${quoteTable(mine)} (id int PRIMARY KEY); CREATE TABLE ${quoteTable(theirs)} (id int PRIMARY KEY);`,
    );
    const dbaInstance = await fx.enableCdc(theirs);
    const pipeline = uniqueName('p');
    const source = await fx.source(pipeline, { manage_cdc: true });
    await source.open([mine, theirs], { wantSnapshot: true });
    const instances = async () =>
      (
        await fx.admin.request().query<{ capture_instance: string }>('SELECT capture_instance FROM cdc.change_tables')
      ).recordset.map((r) => r.capture_instance);
    expect(await instances()).toContain(`nanosync_${pipeline}_dbo_${mine.name}`);
    await source.drop();
    const after = await instances();
    expect(after).not.toContain(`nanosync_${pipeline}_dbo_${mine.name}`);
    expect(after).toContain(dbaInstance);
    await source.drop();
  });

  it('positions from the stream are strictly increasing and resume exactly', async () => {
    const t = table('pos');
    await fx.exec(`CREATE TABLE ${quoteTable(t)} (id int PRIMARY KEY, v int)`);
    await fx.enableCdc(t);
    const { source, reader } = await openStream(uniqueName('p'), [t]);
    await fx.exec(
      `BEGIN TRAN; INSERT INTO ${quoteTable(t)} VALUES (1, 1), (2, 2); UPDATE ${quoteTable(t)} SET v = 3 WHERE id = 1; COMMIT;`,
    );
    await reader.readUntil((events) => events.length >= 3, 'three changes');
    const positions: Position[] = reader.events.map((e) => e.position);
    for (let i = 1; i < positions.length; i++)
      expect(source.comparePositions(positions[i - 1]!, positions[i]!)).toBeLessThan(0);
    await reader.close();
    void quoteIdent;
  });
});
