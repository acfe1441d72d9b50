import type { ChangeEvent, ConnectorContext, Logger, TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { type BigQuerySinkConfig, parseBigQuerySinkConfig } from '../../src/config.js';
import { BigQuerySink } from '../../src/sink.js';
import { FakeBigQuery } from '../support/fake-bigquery.js';

/**
 * The write path's control flow against FakeBigQuery (no Google): what is called, in which
 * order, what is retried, what stops with which message. Whether the data is right in
 * BigQuery is for the live suite.
 */
const logs: string[] = [];
const logger: Logger = {
  debug: () => {},
  info: (m) => void logs.push(m),
  warn: (m) => void logs.push(m),
  error: (m) => void logs.push(m),
  child: () => logger,
};
const context = (): ConnectorContext => ({ pipeline: 'p', logger, signal: new AbortController().signal });

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
    { name: 'body', type: { kind: 'string' }, nullable: true },
  ],
};
const pos = (lsn: number, index: number) =>
  `${lsn.toString(16).toUpperCase().padStart(16, '0')}:${index.toString(16).toUpperCase().padStart(8, '0')}`;
const ev = (op: ChangeEvent['op'], id: string, index: number, extra: Partial<ChangeEvent> = {}): ChangeEvent => ({
  op,
  table: orders,
  key: op === 'truncate' ? {} : { id },
  position: pos(0x100, index),
  ...(op === 'insert' || op === 'update' || op === 'read'
    ? { after: { id, note: `n${index}`, body: `b${index}` } }
    : {}),
  ...extra,
});

function setup(properties: Record<string, unknown> = {}) {
  const fake = new FakeBigQuery();
  const slept: number[] = [];
  let now = 1_000_000;
  const config: BigQuerySinkConfig = parseBigQuerySinkConfig({
    project_id: 'my-project',
    dataset_id: 'ds',
    retry_backoff_ms: 10,
    ...properties,
  });
  const sink = new BigQuerySink(config, context(), {
    port: fake,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
    now: () => now,
  });
  return {
    fake,
    sink,
    slept,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('BigQuery sink write path (FakeBigQuery)', () => {
  test('open creates the table with its primary key; write appends UPSERT/DELETE with sequence numbers', async () => {
    const { fake, sink } = setup();
    await sink.open([orders]);
    expect(fake.queries[0]?.sql).toMatch(
      /^CREATE TABLE IF NOT EXISTS `my-project\.ds\.public_orders`[\s\S]*PRIMARY KEY \(`id`\) NOT ENFORCED/,
    );
    await sink.write([ev('insert', '1', 1), ev('update', '1', 2), ev('delete', '1', 3)]);
    const rows = fake.appends.flatMap((a) => a.rows);
    expect(rows.map((r) => [r.id, r._CHANGE_TYPE, r._CHANGE_SEQUENCE_NUMBER])).toEqual([
      ['1', 'UPSERT', '0000000000000100/000000011'],
      ['1', 'UPSERT', '0000000000000100/000000021'],
      ['1', 'DELETE', '0000000000000100/000000031'],
    ]);
  });

  test('a transient append failure is retried with backoff; write resolves only after the append succeeded', async () => {
    const { fake, sink, slept } = setup();
    await sink.open([orders]);
    fake.failNext('append', Object.assign(new Error('socket hang up'), { code: 14 }), 2);
    await sink.write([ev('insert', '1', 1)]);
    expect(slept).toHaveLength(2);
    expect(fake.appends).toHaveLength(1);
  });

  test('a permission error is not retried and names the IAM role', async () => {
    const { fake, sink, slept } = setup();
    await sink.open([orders]);
    fake.failNext('append', Object.assign(new Error('Permission bigquery.tables.updateData denied'), { code: 7 }));
    await expect(sink.write([ev('insert', '1', 1)])).rejects.toThrow(
      expect.objectContaining({
        code: 'NS_B7002',
        message: expect.stringMatching(/tables\.updateData denied.*roles\/bigquery\.dataEditor/),
      }),
    );
    expect(slept).toHaveLength(0);
  });

  test('retries run out after max_retries and the error says how many attempts', async () => {
    const { fake, sink } = setup({ max_retries: 2 });
    await sink.open([orders]);
    fake.failNext('append', Object.assign(new Error('quota'), { code: 8 }), 5);
    await expect(sink.write([ev('insert', '1', 1)])).rejects.toThrow(/after 3 attempts/);
  });

  test('rows BigQuery refuses are reported with table, key and position', async () => {
    const { fake, sink } = setup();
    await sink.open([orders]);
    fake.rowErrorsOnce = [{ index: 1, message: 'Field note: too long' }];
    await expect(sink.write([ev('insert', '1', 1), ev('insert', '2', 2)])).rejects.toThrow(
      expect.objectContaining({
        code: 'NS_B7004',
        message: expect.stringMatching(
          /table public\.orders.*key \{"id":"2"\} at position 0000000000000100:00000002: Field note: too long/,
        ),
      }),
    );
  });

  test('invalid_rows: skip leaves out (and logs) a row BigQuery cannot hold or refuses; the rest is written', async () => {
    const dated: TableSchema = {
      ...orders,
      columns: [...orders.columns, { name: 'due', type: { kind: 'date' }, nullable: true }],
    };
    const { fake, sink } = setup({ invalid_rows: 'skip' });
    await sink.open([dated]);
    logs.length = 0;
    const bad: ChangeEvent = {
      op: 'insert',
      table: dated,
      key: { id: '9' },
      position: pos(0x100, 9),
      after: { id: '9', due: 'infinity' },
    };
    await sink.write([ev('insert', '1', 1, { table: dated }), bad, ev('insert', '2', 2, { table: dated })]);
    expect(fake.appends.flatMap((a) => a.rows.map((r) => r.id))).toEqual(['1', '2']);
    expect(logs).toContain('row skipped: BigQuery cannot hold a value (invalid_rows: skip)');

    fake.rowErrorsOnce = [{ index: 0, message: 'Field note: too long' }];
    await sink.write([ev('insert', '3', 3, { table: dated }), ev('insert', '4', 4, { table: dated })]);
    expect(fake.appends.slice(-1)[0]?.rows.map((r) => r.id)).toEqual(['4']);
    expect(logs).toContain('row skipped: BigQuery refused it (invalid_rows: skip)');
  });

  test('an update without its TOAST column stops on a CDC table, naming table, column, key and both fixes', async () => {
    const { sink } = setup();
    await sink.open([orders]);
    const update = ev('update', '7', 4, { after: { id: '7', note: 'x' }, unchanged: ['body'] });
    await expect(sink.write([update])).rejects.toThrow(
      expect.objectContaining({
        code: 'NS_B7005',
        message: expect.stringMatching(/public\.orders, key \{"id":"7"\}.*"body".*REPLICA IDENTITY FULL.*merge_tables/),
      }),
    );
  });

  test('...but with the full old image (REPLICA IDENTITY FULL) the column keeps its value', async () => {
    const { fake, sink } = setup();
    await sink.open([orders]);
    await sink.write([
      ev('update', '7', 4, {
        after: { id: '7', note: 'x' },
        before: { id: '7', note: 'old', body: 'LARGE' },
        unchanged: ['body'],
      }),
    ]);
    expect(fake.appends[0]?.rows[0]).toMatchObject({ id: '7', note: 'x', body: 'LARGE', _CHANGE_TYPE: 'UPSERT' });
  });

  test('a key-changing update deletes the old key and upserts the new one', async () => {
    const { fake, sink } = setup();
    await sink.open([orders]);
    await sink.write([ev('update', '2', 5, { before: { id: '1' } })]);
    expect(fake.appends[0]?.rows.map((r) => [r.id, r._CHANGE_TYPE])).toEqual([
      ['1', 'DELETE'],
      ['2', 'UPSERT'],
    ]);
  });

  test('a value BigQuery cannot hold stops the write before anything is appended', async () => {
    const dated: TableSchema = {
      ...orders,
      columns: [...orders.columns, { name: 'due', type: { kind: 'date' }, nullable: true }],
    };
    const { fake, sink } = setup();
    await sink.open([dated]);
    const bad: ChangeEvent = {
      op: 'insert',
      table: dated,
      key: { id: '9' },
      position: pos(0x100, 9),
      after: { id: '9', due: 'infinity' },
    };
    await expect(sink.write([ev('insert', '1', 1, { table: dated }), bad])).rejects.toThrow(
      expect.objectContaining({
        code: 'NS_B7004',
        message: expect.stringMatching(
          /table public\.orders, column "due", key \{"id":"9"\}, position 0000000000000100:00000009: infinity is outside BigQuery's DATE range/,
        ),
      }),
    );
    expect(fake.appends).toHaveLength(0);
  });

  test('TRUNCATE on a CDC table: earlier rows appended first, then every stored key deleted at the truncate position', async () => {
    const { fake, sink } = setup();
    await sink.open([orders]);
    fake.selectRows = [{ k0: '1' }, { k0: '5' }];
    await sink.write([ev('insert', '1', 1), ev('truncate', '', 2), ev('insert', '3', 3)]);
    expect(fake.calls.filter((c) => !c.startsWith('query:CREATE'))).toEqual([
      'append:public_orders',
      'query:SELECT CAST(`id` AS STRING) AS k0 FROM `my-project.ds.public_orders`',
      'append:public_orders',
      'append:public_orders',
    ]);
    expect(fake.appends[1]?.rows.map((r) => [r.id, r._CHANGE_TYPE, r._CHANGE_SEQUENCE_NUMBER])).toEqual([
      ['1', 'DELETE', '0000000000000100/000000021'],
      ['5', 'DELETE', '0000000000000100/000000021'],
    ]);
  });

  test('TRUNCATE with on_truncate: fail stops with the table named (never ignored)', async () => {
    const { sink } = setup({ on_truncate: 'fail' });
    await sink.open([orders]);
    await expect(sink.write([ev('truncate', '', 2)])).rejects.toThrow(
      expect.objectContaining({ code: 'NS_B7005', message: expect.stringMatching(/TRUNCATE of public\.orders/) }),
    );
  });

  test('merge tables: staged first, then one MERGE for the batch; unchanged columns kept by their own clause', async () => {
    const { fake, sink } = setup({ merge_tables: 'public.orders' });
    await sink.open([orders]);
    expect(fake.queries.map((q) => q.sql.split('\n')[0])).toEqual([
      'CREATE TABLE IF NOT EXISTS `my-project.ds.public_orders` (',
      'CREATE TABLE IF NOT EXISTS `my-project.ds._ns_staging_public_orders` (',
    ]);
    await sink.write([
      ev('insert', '1', 1),
      ev('update', '2', 2, { after: { id: '2', note: 'x' }, unchanged: ['body'] }),
      ev('delete', '3', 3),
    ]);
    expect(fake.calls.slice(-2)).toEqual([
      'append:_ns_staging_public_orders',
      'query:MERGE `my-project.ds.public_orders` AS T',
    ]);
    const staged = fake.appends[0]?.rows ?? [];
    expect(staged.map((r) => [r.id, r._ns_op, r._ns_unchanged, r.body ?? null])).toEqual([
      ['1', 'U', '', 'b1'],
      ['2', 'U', '["body"]', null],
      ['3', 'D', '', null],
    ]);
    const merge = fake.queries[fake.queries.length - 1];
    expect(merge?.params?.batch).toBe(staged[0]?._ns_batch);
    expect(merge?.sql).toContain('`_ns_unchanged` = \'["body"]\' THEN UPDATE SET `note` = S.`note`\n');
  });

  test('merge budget: a second MERGE within merge_interval_ms waits for the rest of the interval', async () => {
    const { sink, slept, advance } = setup({ merge_tables: 'public.orders', merge_interval_ms: 60000 });
    await sink.open([orders]);
    await sink.write([ev('insert', '1', 1)]);
    advance(15_000);
    await sink.write([ev('insert', '2', 2)]);
    expect(slept).toEqual([45_000]);
  });

  test('merge budget: writes of snapshot rows only are not held back by the interval, but count against the daily budget', async () => {
    const { sink, slept } = setup({ merge_tables: 'public.orders', merge_interval_ms: 60000, merge_daily_budget: 3 });
    await sink.open([orders]);
    for (let i = 1; i <= 3; i++) await sink.write([ev('read', String(i), i)]);
    expect(slept).toEqual([]);
    await sink.write([ev('read', '4', 4)]);
    expect(slept).toHaveLength(1);
    expect(slept[0]).toBeGreaterThan(86_000_000);
  });

  test('merge tables: TRUNCATE runs TRUNCATE TABLE after the earlier changes are merged', async () => {
    const { fake, sink } = setup({ merge_tables: 'public.orders', merge_interval_ms: 0 });
    await sink.open([orders]);
    await sink.write([ev('insert', '1', 1), ev('truncate', '', 2)]);
    expect(fake.calls.slice(-3)).toEqual([
      'append:_ns_staging_public_orders',
      'query:MERGE `my-project.ds.public_orders` AS T',
      'query:TRUNCATE TABLE `my-project.ds.public_orders`',
    ]);
  });

  test('append mode: one changelog row per event with op, position, commit time, keyed by a replay-stable event id', async () => {
    const { fake, sink } = setup({ write_mode: 'append' });
    await sink.open([orders]);
    const batch = [
      ev('insert', '1', 1, { commitTime: '2026-03-14T10:22:01.456789Z' }),
      ev('delete', '1', 2),
      ev('truncate', '', 3),
    ];
    await sink.write(batch);
    const first = { rows: fake.appends.splice(0).flatMap((a) => a.rows) };
    await sink.write(batch);
    const replay = { rows: fake.appends.flatMap((a) => a.rows) };
    expect(first?.rows.map((r) => [r._ns_op, r._ns_position, r._ns_committed_at ?? null, r.id ?? null])).toEqual([
      ['insert', pos(0x100, 1), '1773483721456789', '1'],
      ['delete', pos(0x100, 2), null, '1'],
      ['truncate', pos(0x100, 3), null, null],
    ]);
    expect(replay?.rows.map((r) => r._ns_event_id)).toEqual(first?.rows.map((r) => r._ns_event_id));
    expect(new Set(first?.rows.map((r) => r._ns_event_id)).size).toBe(3);
  });

  test('a column added at the source is added to the table before the rows that carry it', async () => {
    const { fake, sink } = setup();
    fake.tables.set('public_orders', {
      fields: [
        { name: 'id', type: 'INTEGER', mode: 'REQUIRED' },
        { name: 'note', type: 'STRING', mode: 'NULLABLE' },
        { name: 'body', type: 'STRING', mode: 'NULLABLE' },
      ],
      primaryKey: ['id'],
    });
    await sink.open([orders]);
    expect(fake.queries).toEqual([]);
    const wider: TableSchema = {
      ...orders,
      columns: [...orders.columns, { name: 'qty', type: { kind: 'int32' }, nullable: true }],
    };
    await sink.write([
      { op: 'insert', table: wider, key: { id: '4' }, position: pos(0x200, 1), after: { id: '4', qty: 3 } },
    ]);
    expect(fake.calls).toEqual([
      'query:ALTER TABLE `my-project.ds.public_orders` ADD COLUMN IF NOT EXISTS `qty` INT64',
      'append:public_orders',
    ]);
    expect(fake.appends[0]?.rows[0]).toMatchObject({ id: '4', qty: '3' });
  });

  test('a changed max_staleness is applied to an existing table; an unchanged one is left alone', async () => {
    const fields = [
      { name: 'id', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'note', type: 'STRING' },
      { name: 'body', type: 'STRING' },
    ];
    const changed = setup({ max_staleness: '15m' });
    changed.fake.tables.set('public_orders', { fields, primaryKey: ['id'], maxStaleness: '0-0 0 0:5:0' });
    await changed.sink.open([orders]);
    expect(changed.fake.queries.map((q) => q.sql)).toEqual([
      "ALTER TABLE `my-project.ds.public_orders` SET OPTIONS (max_staleness = INTERVAL '0-0 0 0:15:0' YEAR TO SECOND)",
    ]);
    const same = setup({ max_staleness: '15m' });
    same.fake.tables.set('public_orders', { fields, primaryKey: ['id'], maxStaleness: '0-0 0 0:15:0' });
    await same.sink.open([orders]);
    expect(same.fake.queries).toEqual([]);
  });

  test('an existing table without a declared key gets one; a different key stops', async () => {
    const { fake, sink } = setup();
    fake.tables.set('public_orders', {
      fields: [
        { name: 'id', type: 'INTEGER', mode: 'REQUIRED' },
        { name: 'note', type: 'STRING' },
        { name: 'body', type: 'STRING' },
      ],
      primaryKey: [],
    });
    await sink.open([orders]);
    expect(fake.queries.map((q) => q.sql)).toEqual([
      'ALTER TABLE `my-project.ds.public_orders` ADD PRIMARY KEY (`id`) NOT ENFORCED',
    ]);
    const other = setup();
    other.fake.tables.set('public_orders', {
      fields: [
        { name: 'id', type: 'INTEGER' },
        { name: 'note', type: 'STRING' },
        { name: 'body', type: 'STRING' },
      ],
      primaryKey: ['note'],
    });
    await expect(other.sink.open([orders])).rejects.toThrow(
      /has primary key \(note\) but the source key maps to \(id\)/,
    );
  });

  test('table_id with two tables is refused at open', async () => {
    const { sink } = setup({ table_id: 'orders' });
    await expect(sink.open([orders, { ...orders, name: 'items' }])).rejects.toThrow(
      /table_id "orders" names one table, but the pipeline has 2/,
    );
  });

  test('check(): a missing dataset names the bq command; a working setup creates, writes and drops a probe table', async () => {
    const missing = setup();
    missing.fake.dataset = undefined;
    const [result] = await missing.sink.check();
    expect(result).toMatchObject({ ok: false, fix: 'bq --location=US mk --dataset my-project:ds' });

    const { fake, sink } = setup({ location: 'EU' });
    const results = await sink.check();
    expect(results.find((r) => r.name === 'bigquery location')).toMatchObject({
      ok: false,
      message: expect.stringContaining('is in US, but location is EU'),
    });
    expect(results.filter((r) => r.ok).map((r) => r.name)).toEqual([
      'bigquery dataset',
      'bigquery create table',
      'bigquery storage write',
    ]);
    expect(fake.queries[fake.queries.length - 1]?.sql).toMatch(
      /^DROP TABLE IF EXISTS `my-project\.ds\._ns_check_[0-9a-f]{12}`$/,
    );
  });

  test('check(): an unreachable BigQuery is retriable and says what to look at', async () => {
    const { sink } = setup();
    (sink as unknown as { port: FakeBigQuery }).port.getDataset = async () => {
      throw Object.assign(new Error('request failed, reason: getaddrinfo ENOTFOUND bigquery.googleapis.com'), {
        code: 'ENOTFOUND',
      });
    };
    const [result] = await sink.check();
    expect(result).toMatchObject({
      ok: false,
      retriable: true,
      fix: expect.stringContaining('not reachable from here'),
    });
  });

  test('check(): a denied table creation names the IAM roles to grant', async () => {
    const { fake, sink } = setup();
    fake.failNext(
      'query',
      Object.assign(new Error('Access Denied: Dataset my-project:ds: Permission bigquery.tables.create denied'), {
        code: 403,
      }),
    );
    const results = await sink.check();
    expect(results.find((r) => r.name === 'bigquery create table')).toMatchObject({
      ok: false,
      fix: expect.stringContaining('roles/bigquery.dataEditor'),
    });
  });
});
