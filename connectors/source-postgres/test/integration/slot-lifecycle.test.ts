import { NanosyncError } from '@nanosync/core';
import { startPostgres } from '@nanosync/testcontainers';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { formatPosition, parseLsn } from '../../src/position.js';
import { oldestPendingCommit, type PendingCommitCache } from '../../src/slot/pending.js';
import { pgFixture, uniqueName } from './fixture.js';

const items = { schema: 'public', name: 'items' };

async function prepared(options: Parameters<typeof pgFixture>[0] = {}) {
  const fx = await pgFixture(options);
  await fx.admin.query('CREATE TABLE public.items (id int PRIMARY KEY, v text)');
  await fx.admin.query(`INSERT INTO public.items SELECT g, 'v' FROM generate_series(1, 100) g`);
  await fx.grantRead([items]);
  const pipeline = uniqueName('slot');
  await fx.preparePublication(pipeline, [items]);
  return { fx, pipeline };
}

describe('slot lifecycle', () => {
  it('a later run reuses the slot and its start position; no new slot appears', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const first = await fx.source(pipeline);
    const opened = await first.open([items], { wantSnapshot: true });
    await opened.snapshot!.release();
    await first.close();

    const second = await fx.source(pipeline);
    const reopened = await second.open([items], { wantSnapshot: true, existingStartPosition: opened.startPosition });
    expect(reopened).toEqual({ startPosition: opened.startPosition, watermarks: true });
    const slots = await fx.admin.query('SELECT slot_name FROM pg_replication_slots WHERE database = $1', [fx.database]);
    expect(slots.rows.map((r) => r.slot_name)).toEqual([second.slotName]);
  });

  it('a slot dropped behind our back is a PgSlotMissing error naming the slot and the checkpoint, never a new slot', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const source = await fx.source(pipeline);
    const opened = await source.open([items], { wantSnapshot: false });
    await fx.admin.query('SELECT pg_drop_replication_slot($1)', [source.slotName]);
    const head = parseLsn((await fx.admin.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn);

    const later = await fx.source(pipeline);
    const error = await later
      .open([items], {
        wantSnapshot: true,
        existingStartPosition: opened.startPosition,
        checkpoint: opened.startPosition,
      })
      .catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4005')).toBe(true);
    expect((error as Error).message).toContain(`replication slot "${source.slotName}" does not exist`);
    expect((error as Error).message).toContain(`checkpoint ${formatPosition(opened.startPosition)}`);
    expect((error as Error).message).toContain('wal_status: missing');
    // The lost range: from the checkpoint up to the server's WAL position when the loss was found.
    const end = / up to the server's WAL position ([0-9A-F]+\/[0-9A-F]+) can no longer be read/.exec(
      (error as Error).message,
    );
    expect(end, (error as Error).message).not.toBeNull();
    expect(parseLsn(end![1]!)).toBeGreaterThanOrEqual(head);
    const slots = await fx.admin.query('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [
      source.slotName,
    ]);
    expect(slots.rows[0].n).toBe(0);
  });

  it('a slot the server invalidated (max_slot_wal_keep_size) is a PgSlotInvalidated error with wal_status', async () => {
    await using service = await startPostgres({
      fresh: true,
      settings: { max_slot_wal_keep_size: '1MB', min_wal_size: '32MB', max_wal_size: '64MB' },
    });
    const { fx, pipeline } = await prepared({ service });
    await using _ = fx;
    const source = await fx.source(pipeline);
    const opened = await source.open([items], { wantSnapshot: false });
    for (let round = 0; round < 20; round++) {
      await fx.admin.query(
        `INSERT INTO public.items SELECT g, repeat('w', 1000) FROM generate_series(1000 + $1 * 5000, 1000 + $1 * 5000 + 4999) g`,
        [round],
      );
      await fx.admin.query('SELECT pg_switch_wal()');
      await fx.admin.query('CHECKPOINT');
      const { rows } = await fx.admin.query('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [
        source.slotName,
      ]);
      if (rows[0]?.wal_status === 'lost') break;
    }
    const status = await fx.admin.query('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [
      source.slotName,
    ]);
    expect(status.rows[0].wal_status).toBe('lost');
    const head = parseLsn((await fx.admin.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn);

    const later = await fx.source(pipeline);
    const error = await later
      .open([items], {
        wantSnapshot: true,
        existingStartPosition: opened.startPosition,
        checkpoint: opened.startPosition,
      })
      .catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4006')).toBe(true);
    expect((error as Error).message).toContain(`replication slot "${source.slotName}" was invalidated`);
    expect((error as Error).message).toContain('wal_status: lost');
    expect((error as Error).message).toContain(`checkpoint ${formatPosition(opened.startPosition)}`);
    const end = / up to the server's WAL position ([0-9A-F]+\/[0-9A-F]+) can no longer be read/.exec(
      (error as Error).message,
    );
    expect(end, (error as Error).message).not.toBeNull();
    expect(parseLsn(end![1]!)).toBeGreaterThanOrEqual(head);
    expect((error as NanosyncError).details).toMatchObject({ lostTo: end![1] });
    const check = await later.check([items]);
    expect(check.find((c) => c.name === 'replication_slot')).toMatchObject({
      ok: false,
      message: expect.stringContaining('invalidated'),
    });
    // The check, which runs before the pipeline starts, names the lost range too.
    const checked = check.find((c) => c.name === 'replication_slot')!.message;
    const range = /from checkpoint ([0-9A-F]+\/[0-9A-F]+) up to the server's WAL position ([0-9A-F]+\/[0-9A-F]+)/.exec(
      checked,
    );
    expect(range, checked).not.toBeNull();
    expect(parseLsn(range![2]!)).toBeGreaterThanOrEqual(head);
  });

  it('a first run replaces a slot left by an attempt that never recorded its start position', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const crashed = await fx.source(pipeline);
    const before = await crashed.open([items], { wantSnapshot: false });
    await fx.admin.query(`INSERT INTO public.items VALUES (5000, 'between')`);
    const retry = await fx.source(pipeline);
    const after = await retry.open([items], { wantSnapshot: true });
    expect(retry.comparePositions(after.startPosition, before.startPosition)).toBeGreaterThan(0);
    await after.snapshot!.release();
  });

  it('metrics report retained WAL, safe size and positions', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const source = await fx.source(pipeline);
    const opened = await source.open([items], { wantSnapshot: false });
    await fx.admin.query(`INSERT INTO public.items SELECT g, repeat('m', 500) FROM generate_series(1000, 3000) g`);
    const metrics = await source.metrics();
    expect(metrics.retainedBytes).toBeGreaterThan(1_000_000);
    expect(metrics.safeBytes).toBeNull();
    expect(source.comparePositions(metrics.headPosition!, opened.startPosition)).toBeGreaterThan(0);
    expect(metrics.confirmedPosition).toBe(opened.startPosition);
  });

  it('the idle slot peek finds the first commit changing a captured table, and answers again from its cache until the slot moves', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const source = await fx.source(pipeline);
    await source.open([items], { wantSnapshot: false });
    expect((await source.metrics({ pending: true })).oldestPendingCommitAt).toBeNull();
    // A published table the pipeline does not capture (left in the publication, as by an
    // earlier definition), changed first.
    await fx.admin.query('CREATE TABLE public.other (id int PRIMARY KEY)');
    await fx.admin.query(`ALTER PUBLICATION ${JSON.stringify(source.publicationName)} ADD TABLE public.other`);
    const serverNow = async () =>
      Number((await fx.admin.query('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms')).rows[0].ms);
    const beforeOther = await serverNow();
    await fx.admin.query('INSERT INTO public.other VALUES (1)');
    const beforeItems = await serverNow();
    await fx.admin.query("INSERT INTO public.items VALUES (5000, 'pending')");
    const afterItems = await serverNow();

    const pending = (await source.metrics({ pending: true })).oldestPendingCommitAt;
    expect(pending).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Date.parse(pending!)).toBeGreaterThanOrEqual(Math.floor(beforeItems));
    expect(Date.parse(pending!)).toBeLessThanOrEqual(Math.ceil(afterItems));

    // A source that knows no captured tables (a monitor's) counts every published relation.
    const monitor = await fx.source(pipeline);
    const anyPublished = (await monitor.metrics({ pending: true })).oldestPendingCommitAt;
    expect(Date.parse(anyPublished!)).toBeGreaterThanOrEqual(Math.floor(beforeOther));
    // Microsecond ISO strings of the same day sort like the times they name.
    expect(anyPublished! < pending!).toBe(true);

    // Same confirmed_flush_lsn: the answer comes from the cache, without a query (the client is closed).
    const cache: PendingCommitCache = {};
    const client = new pg.Client({ connectionString: fx.adminUrl });
    await client.connect();
    const tables = new Set(['public\u0000items']);
    const peek = (c: pg.Client, slot: string) =>
      oldestPendingCommit(c, slot, source.publicationName, { tables, confirmedFlush: '0/1', cache });
    expect(await peek(client, source.slotName)).toBe(pending);
    expect(cache).toEqual({ confirmedFlush: '0/1', commitAt: pending });
    // Any failure but the timeout is an error, not "unknown".
    await expect(oldestPendingCommit(client, `${source.slotName}_gone`, source.publicationName)).rejects.toThrow(
      /does not exist/,
    );
    await client.end();
    expect(await peek(client, source.slotName)).toBe(pending);
  });

  it('a watermark the role may not write names the server and SQLSTATE 42501, with the GRANT that fixes it', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    // Function privileges are per database: this one is the fixture's own.
    await fx.admin.query(
      'REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) FROM PUBLIC',
    );
    const source = await fx.source(pipeline);
    await source.open([items], { wantSnapshot: false });
    const error = await source.writeWatermark('w-1').catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4002')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain(`${fx.service.host}:${fx.service.port}/${fx.database}`);
    expect(message).toContain('(SQLSTATE 42501)');
    expect(message).toContain(
      `GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) TO "${fx.role}";`,
    );
    // The admin connection is still usable afterwards (the transaction was rolled back).
    await fx.admin.query(
      `GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) TO ${JSON.stringify(fx.role)}`,
    );
    await source.writeWatermark('w-2');
  });

  it('drop() removes the slot and the publication (and is idempotent)', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const source = await fx.source(pipeline);
    const opened = await source.open([items], { wantSnapshot: true });
    expect(opened.snapshot).toBeDefined();
    await source.drop();
    const slots = await fx.admin.query('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [
      source.slotName,
    ]);
    const pubs = await fx.admin.query('SELECT count(*)::int AS n FROM pg_publication WHERE pubname = $1', [
      source.publicationName,
    ]);
    expect([slots.rows[0].n, pubs.rows[0].n]).toEqual([0, 0]);
    await source.drop();
  });

  it('describe() names a missing table', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const source = await fx.source(pipeline);
    const error = await source.describe([items, { schema: 'public', name: 'Items' }]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, 'NS_P4003')).toBe(true);
    expect((error as Error).message).toContain('table "public"."Items" not found');
  });
});
