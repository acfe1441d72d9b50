import { NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { comparePositions, decodePosition, encodePosition, parseLsn } from '../../src/position.js';
import { ids, streamPipeline } from './stream-helpers.js';
import { PgErrorCode } from '../../src/errors.js';

const items = { schema: 'public', name: 'items' };
const ITEMS_DDL = ['CREATE TABLE public.items (id int PRIMARY KEY, label text, big text)'];

describe('streamChanges: events, positions and batches', () => {
  it('a multi-row INSERT (one commit LSN) gets distinct ordered positions; safePosition only on the last batch of the transaction', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition, { batchLimits: { maxEvents: 4 } });
    await p.fx.admin.query(`INSERT INTO public.items SELECT g, 'row ' || g FROM generate_series(1, 10) g`);
    await stream.waitFor(() => stream.lastSafePosition !== undefined, 'the commit');

    expect(ids(stream.events)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const decoded = stream.events.map((e) => decodePosition(e.position));
    expect(new Set(decoded.map((d) => d.lsn)).size).toBe(1);
    expect(decoded.map((d) => d.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const sorted = [...stream.events].sort((a, b) => comparePositions(a.position, b.position));
    expect(sorted).toEqual(stream.events);
    const dataBatches = stream.batches.filter((b) => b.events.length > 0);
    expect(dataBatches.map((b) => b.events.length)).toEqual([4, 4, 2]);
    expect(dataBatches.map((b) => b.safePosition)).toEqual([undefined, undefined, stream.events[9]?.position]);
    expect(stream.events[0]).toMatchObject({
      op: 'insert',
      key: { id: 1 },
      after: { id: 1, label: 'row 1', big: null },
      table: { schema: 'public', name: 'items', keyColumns: ['id'] },
    });
    expect(stream.events[0]?.commitTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // The stream was read off the socket by the session, not parsed by the pg driver.
    expect(p.logLines.filter((line) => line.includes('CopyData read off the socket'))).toHaveLength(1);
    expect(p.logLines.filter((line) => line.includes('the pg driver parses the stream'))).toEqual([]);

    // Acknowledging the transaction moves the slot to the commit's end LSN, past its commit LSN.
    const commitLsn = decoded[0]?.lsn ?? 0n;
    await stream.waitFor(
      async () => (await p.confirmedFlushLsn()) > commitLsn,
      'confirmed_flush_lsn to pass the commit',
    );
  });

  it('updates and deletes under REPLICA IDENTITY DEFAULT; unchanged TOAST values are reported, never NULL', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    // Incompressible and large: stored out of line in the TOAST table.
    await p.fx.admin.query(
      `INSERT INTO public.items SELECT 1, 'a', string_agg(md5(g::text), '') FROM generate_series(1, 400) g`,
    );
    const big = (await p.fx.admin.query('SELECT big FROM public.items WHERE id = 1')).rows[0].big as string;
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`UPDATE public.items SET label = 'b' WHERE id = 1`);
    await p.fx.admin.query(`UPDATE public.items SET id = 2 WHERE id = 1`);
    await p.fx.admin.query(`DELETE FROM public.items WHERE id = 2`);
    await stream.waitFor(() => stream.events.length >= 4, 'four events');

    const [insert, update, rekey, remove] = stream.events;
    expect(insert).toMatchObject({ op: 'insert', after: { id: 1, label: 'a', big } });
    expect(update?.op).toBe('update');
    expect(update?.after).toEqual({ id: 1, label: 'b' });
    expect(update?.unchanged).toEqual(['big']);
    expect(update?.before).toBeUndefined();
    expect(rekey).toMatchObject({
      op: 'update',
      key: { id: 2 },
      before: { id: 1 },
      after: { id: 2, label: 'b' },
      unchanged: ['big'],
    });
    expect(remove).toMatchObject({ op: 'delete', key: { id: 2 }, before: { id: 2 } });
    expect(Object.keys(remove?.before ?? {})).toEqual(['id']);
  });

  it('REPLICA IDENTITY FULL: before images of updates and deletes are whole rows', async () => {
    await using p = await streamPipeline({
      ddl: [
        ...ITEMS_DDL,
        'ALTER TABLE public.items REPLICA IDENTITY FULL',
        `INSERT INTO public.items VALUES (1, 'one', 'x')`,
      ],
      tables: [items],
    });
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`UPDATE public.items SET label = 'uno' WHERE id = 1`);
    await p.fx.admin.query(`DELETE FROM public.items WHERE id = 1`);
    await stream.waitFor(() => stream.events.length >= 2, 'two events');
    expect(stream.events[0]).toMatchObject({
      op: 'update',
      key: { id: 1 },
      before: { id: 1, label: 'one', big: 'x' },
      after: { id: 1, label: 'uno', big: 'x' },
    });
    expect(stream.events[1]).toMatchObject({ op: 'delete', key: { id: 1 }, before: { id: 1, label: 'uno', big: 'x' } });
    expect(stream.events[0]?.table.keyColumns).toEqual(['id']);
  });

  it('REPLICA IDENTITY INDEX: deletes carry the identity index columns, which are the key', async () => {
    await using p = await streamPipeline({
      ddl: [
        'CREATE TABLE public.items (id int NOT NULL, code text NOT NULL, label text)',
        'CREATE UNIQUE INDEX items_code ON public.items (code)',
        'ALTER TABLE public.items REPLICA IDENTITY USING INDEX items_code',
        `INSERT INTO public.items VALUES (1, 'c1', 'one')`,
      ],
      tables: [items],
    });
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`DELETE FROM public.items WHERE id = 1`);
    await stream.waitFor(() => stream.events.length >= 1, 'the delete');
    expect(stream.events[0]).toMatchObject({ op: 'delete', key: { code: 'c1' }, before: { code: 'c1' } });
    expect(stream.events[0]?.table.keyColumns).toEqual(['code']);
  });

  it('added and dropped columns flow through: each event carries the schema of its time', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one', NULL)`);
    await p.fx.admin.query('ALTER TABLE public.items ADD COLUMN qty numeric(10,2) NOT NULL DEFAULT 1.5');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (2, 'two', NULL, 7.25)`);
    await p.fx.admin.query('ALTER TABLE public.items DROP COLUMN big');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (3, 'three', 9)`);
    await stream.waitFor(() => stream.events.length >= 3, 'three inserts');

    const columns = stream.events.map((e) => e.table.columns.map((c) => c.name));
    expect(columns).toEqual([
      ['id', 'label', 'big'],
      ['id', 'label', 'big', 'qty'],
      ['id', 'label', 'qty'],
    ]);
    expect(stream.events[1]?.table.columns[3]).toEqual({
      name: 'qty',
      type: { kind: 'decimal', precision: 10, scale: 2 },
      nullable: false,
      sourceType: 'numeric(10,2)',
    });
    expect(stream.events.map((e) => e.after)).toEqual([
      { id: 1, label: 'one', big: null },
      { id: 2, label: 'two', big: null, qty: '7.25' },
      { id: 3, label: 'three', qty: '9.00' },
    ]);
  });

  it('an idle captured table while another table is busy: keepalives advance confirmed_flush_lsn', async () => {
    await using p = await streamPipeline({
      ddl: [...ITEMS_DDL, 'CREATE TABLE public.busy (id serial PRIMARY KEY, pad text)'],
      tables: [items],
    });
    const stream = p.open(p.startPosition, { statusIntervalMs: 500 });
    const before = await p.confirmedFlushLsn();
    let walAfterWrites = 0n;
    for (let round = 0; round < 10; round++) {
      await p.fx.admin.query(`INSERT INTO public.busy (pad) SELECT repeat('p', 200) FROM generate_series(1, 2000)`);
    }
    walAfterWrites = parseLsn(String((await p.fx.admin.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn));
    await stream.waitFor(
      async () => (await p.confirmedFlushLsn()) >= walAfterWrites,
      'confirmed_flush_lsn to pass the busy writes',
    );

    expect(await p.confirmedFlushLsn()).toBeGreaterThan(before);
    expect(stream.events).toEqual([]);
    const keepalives = stream.batches.filter((b) => b.events.length === 0);
    expect(keepalives.length).toBeGreaterThan(0);
    for (const batch of keepalives) expect(decodePosition(batch.safePosition ?? '').index).toBe(0);
    const positions = stream.batches.map((b) => b.safePosition ?? '');
    expect([...positions].sort(comparePositions)).toEqual(positions);
    expect(new Set(positions).size).toBe(positions.length);

    // A change after the keepalives sorts after every keepalive position.
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'late', NULL)`);
    await stream.waitFor(() => stream.events.length === 1, 'the late insert');
    expect(comparePositions(stream.events[0]?.position ?? '', positions.at(-1) ?? '')).toBeGreaterThan(0);
  });

  it('the slot never moves past what was acknowledged', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition, { statusIntervalMs: 200 });
    stream.autoAcknowledge = false;
    const initial = await p.confirmedFlushLsn();
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one', NULL)`);
    // One batch each: commits that arrive together may share a batch (and its safePosition).
    await stream.waitFor(() => stream.events.length === 1, 'the first insert');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (2, 'two', NULL)`);
    await stream.waitFor(() => stream.events.length === 2, 'two inserts');
    // Several status updates go out meanwhile; none may move the slot.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await p.confirmedFlushLsn()).toBe(initial);
    const first = stream.batches.find((b) => b.events.some((e) => e.after?.id === 1))?.safePosition;
    expect(first).toBeDefined();
    await stream.acknowledger.acknowledge(first as string);
    await stream.waitFor(async () => (await p.confirmedFlushLsn()) > initial, 'the first acknowledgement');
    const flushed = await p.confirmedFlushLsn();
    const secondCommit = decodePosition(stream.events[1]?.position ?? '').lsn;
    expect(flushed).toBeGreaterThan(decodePosition(first as string).lsn);
    expect(flushed).toBeLessThanOrEqual(secondCommit);
  });

  it('resuming from an acknowledged position delivers nothing at or before it', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const first = p.open(p.startPosition);
    first.autoAcknowledge = false;
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one', NULL)`);
    // One batch each: commits that arrive together may share a batch (and its safePosition).
    await first.waitFor(() => first.events.length === 1, 'the first insert');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (2, 'two', NULL)`);
    await first.waitFor(() => first.events.length === 2, 'two inserts');
    const checkpoint = first.batches.find((b) => b.events.some((e) => e.after?.id === 1))?.safePosition as string;
    await first.stop();
    await first.waitFor(async () => (await p.walsenderPid()) === undefined, 'the replication connection to close');
    // Nothing was acknowledged to the slot: the server replays both transactions, and the
    // stream drops the one at the checkpoint.
    const second = p.open(checkpoint);
    await second.waitFor(() => second.events.length >= 1, 'the replay');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (3, 'three', NULL)`);
    await second.waitFor(() => second.events.length >= 2, 'the new insert');
    expect(ids(second.events)).toEqual([2, 3]);
  });

  it('TRUNCATE is an event per captured table, in commit order, with its CASCADE and RESTART IDENTITY flags', async () => {
    const parent = { schema: 'public', name: 'parent' };
    const child = { schema: 'public', name: 'child' };
    await using p = await streamPipeline({
      ddl: [
        ...ITEMS_DDL,
        'CREATE TABLE public.parent (id int PRIMARY KEY)',
        'CREATE TABLE public.child (id serial PRIMARY KEY, parent_id int REFERENCES public.parent (id))',
        'CREATE TABLE public.other (id int PRIMARY KEY)',
      ],
      tables: [items, parent, child],
    });
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one', NULL)`);
    await p.fx.admin.query('TRUNCATE public.items');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (2, 'two', NULL)`);
    await p.fx.admin.query('INSERT INTO public.parent VALUES (1); INSERT INTO public.child (parent_id) VALUES (1)');
    await p.fx.admin.query('TRUNCATE public.items, public.other');
    await p.fx.admin.query('TRUNCATE public.parent RESTART IDENTITY CASCADE');
    await p.fx.admin.query(`INSERT INTO public.items VALUES (3, 'three', NULL)`);
    await stream.waitFor(() => stream.events.some((e) => e.after?.id === 3), 'the last insert');
    const summary = stream.events.map((e) =>
      e.op === 'truncate'
        ? `truncate ${e.table.name}${e.truncate?.cascade ? ' cascade' : ''}${e.truncate?.restartIdentity ? ' restart' : ''}`
        : `${e.op} ${e.table.name} ${e.after?.id}`,
    );
    expect(summary).toEqual([
      'insert items 1',
      'truncate items',
      'insert items 2',
      'insert parent 1',
      'insert child 1',
      'truncate items',
      'truncate parent cascade restart',
      'truncate child cascade restart',
      'insert items 3',
    ]);
    for (const e of stream.events.filter((e) => e.op === 'truncate')) {
      expect(e.key).toEqual({});
      expect(e.before).toBeUndefined();
      expect(e.after).toBeUndefined();
      expect(e.commitTime).toBeDefined();
    }
    const positions = stream.events.map((e) => e.position);
    expect([...positions].sort(comparePositions)).toEqual(positions);
    expect(new Set(positions).size).toBe(positions.length);
  });

  it('a missing slot is a non-retriable error naming the slot, the checkpoint and wal_status', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    await p.fx.admin.query('SELECT pg_drop_replication_slot($1)', [p.slot]);
    const stream = p.open(p.startPosition);
    await stream.finished();
    expect(stream.error).toBeInstanceOf(NanosyncError);
    const error = stream.error as NanosyncError;
    expect(error.code).toBe(PgErrorCode.PgSlotMissing);
    expect(error.retriable).toBe(false);
    expect(error.message).toContain(`"${p.slot}"`);
    expect(error.message).toContain('wal_status: missing');
    expect(error.message).toContain(`checkpoint ${formatLsnOf(p.startPosition)}`);
  });
});

function formatLsnOf(position: string): string {
  const lsn = decodePosition(position).lsn;
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export { encodePosition };
