import { NanosyncError } from '@nanosync/core';
import { startPostgres } from '@nanosync/testcontainers';
import { describe, expect, it } from 'vitest';
import { decodePosition, formatPosition, parseLsn } from '../../src/position.js';
import pg from 'pg';
import { expectOrderedBatches, ids, streamPipeline, terminateWalsender } from './stream-helpers.js';
import { PgErrorCode } from '../../src/errors.js';

const items = { schema: 'public', name: 'items' };
const ITEMS_DDL = ['CREATE TABLE public.items (id int PRIMARY KEY, label text)'];

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('streamChanges: faults', () => {
  it('a crash in the middle of a multi-row group (nothing acknowledged) loses nothing after restarting from the last acknowledgement', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const first = p.open(p.startPosition, { batchLimits: { maxEvents: 10 } });
    await p.fx.admin.query(`INSERT INTO public.items SELECT g, 'a' FROM generate_series(1, 5) g`);
    await first.waitFor(() => first.lastSafePosition !== undefined, 'the first transaction');

    // One INSERT of 200 rows: one commit LSN for all; the "process" dies after 3 batches.
    let seen = 0;
    first.onBatch = (batch) => {
      if (batch.events.length > 0 && ++seen > 3) throw new Error('simulated crash');
    };
    await p.fx.admin.query(`INSERT INTO public.items SELECT g, 'b' FROM generate_series(6, 205) g`);
    await first.finished();
    expect((first.error as Error).message).toBe('simulated crash');
    expect(ids(first.events)).toEqual(range(1, 35));
    const groupCommit = decodePosition(first.events[5]?.position ?? '').lsn;
    // No batch of the interrupted group was marked safe, so nothing of it was acknowledged.
    for (const batch of first.batches) {
      if (batch.events.some((e) => Number(e.after?.id) >= 6)) expect(batch.safePosition).toBeUndefined();
    }
    const acknowledged = first.acknowledger.confirmedPosition as string;
    expect(decodePosition(acknowledged).lsn).toBeLessThanOrEqual(groupCommit);

    // A new process: new acknowledger, stream from the last acknowledged position.
    const second = p.open(acknowledged, { batchLimits: { maxEvents: 10 } });
    await second.waitFor(
      () => second.events.length >= 200 && second.lastSafePosition !== undefined,
      'the whole group again',
    );
    expect(ids(second.events)).toEqual(range(6, 205));
    const indexes = second.events.map((e) => decodePosition(e.position).index);
    expect(indexes).toEqual(range(1, 200));
    // Replayed events have exactly the positions they had before the crash.
    expect(second.events.slice(0, 30).map((e) => e.position)).toEqual(first.events.slice(5).map((e) => e.position));
    expect(second.batches.some((b) => b.safePosition === second.events.at(-1)?.position)).toBe(true);
    expectOrderedBatches(second.batches);
  });

  it('the walsender terminated in the middle of a large transaction: the stream reconnects and continues without gaps or repeats', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition, { batchLimits: { maxEvents: 100 } });
    // A slow consumer (5 ms a batch of 100) holds the rest back in the server however fast the
    // machine reads: with ~10 MB of changes, more than the socket buffers hold, the cut lands
    // inside the transaction (with setImmediate, a fast machine had every row by the cut).
    stream.onBatch = () => new Promise((resolve) => setTimeout(resolve, 5));
    await p.fx.admin.query(`INSERT INTO public.items SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g`);
    await stream.waitFor(() => stream.events.length >= 3000, 'part of the transaction');
    const firstPid = await terminateWalsender(p.fx.admin, p.slot);
    await stream.waitFor(async () => {
      const pid = await p.walsenderPid();
      return pid !== undefined && pid !== firstPid;
    }, 'a new walsender');
    await stream.waitFor(
      () =>
        stream.events.length >= 20000 &&
        stream.batches.some((b) => b.safePosition !== undefined && b.safePosition === stream.events.at(-1)?.position),
      'the commit',
    );
    expect(ids(stream.events)).toEqual(range(1, 20000));
    expectOrderedBatches(stream.batches);
    expect(stream.events.map((e) => decodePosition(e.position).index)).toEqual(range(1, 20000));
    const reconnect = p.logLines.find((line) => line.startsWith('WRN replication connection lost; reconnecting')) ?? '';
    const resumedAt = Number(/"resumeAfter":"[0-9A-F]+\/[0-9A-F]+#(\d+)"/.exec(reconnect)?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThan(20000);
  });

  it('the walsender terminated between small transactions, repeatedly: every row arrives once, in order', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition);
    for (let id = 1; id <= 150; id++) {
      await p.fx.admin.query('INSERT INTO public.items VALUES ($1, $2)', [id, 'r']);
      if (id % 50 === 0) await terminateWalsender(p.fx.admin, p.slot);
    }
    await stream.waitFor(() => stream.events.length >= 150, 'all rows');
    expect(ids(stream.events)).toEqual(range(1, 150));
    expectOrderedBatches(stream.batches);
    await stream.waitFor(
      async () => (await p.confirmedFlushLsn()) > decodePosition(stream.events.at(-1)?.position ?? '').lsn,
      'the slot to follow',
    );
  });

  it('PostgreSQL restarted (pg_ctl -m fast restart) while streaming: reconnects and resumes', async () => {
    await using service = await startPostgres({ fresh: true });
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items], service });
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public.items SELECT g, 'before' FROM generate_series(1, 50) g`);
    await stream.waitFor(() => stream.events.length >= 50, 'rows before the restart');
    p.fx.admin.on('error', () => {});
    await service.restart();
    const admin = new pg.Client({ connectionString: p.fx.adminUrl });
    await admin.connect();
    try {
      for (let id = 51; id <= 100; id++) await admin.query('INSERT INTO public.items VALUES ($1, $2)', [id, 'after']);
    } finally {
      await admin.end();
    }
    await stream.waitFor(() => stream.events.length >= 100, 'rows after the restart');
    expect(ids(stream.events)).toEqual(range(1, 100));
    expect(stream.events.slice(50).every((e) => e.after?.label === 'after')).toBe(true);
    expectOrderedBatches(stream.batches);
    expect(p.logLines.some((line) => line.startsWith('WRN replication connection lost; reconnecting'))).toBe(true);
  });

  it('the slot dropped while streaming ends the stream with a non-retriable error naming the slot, the checkpoint and wal_status', async () => {
    await using p = await streamPipeline({ ddl: ITEMS_DDL, tables: [items] });
    const stream = p.open(p.startPosition, { reconnect: { initialDelayMs: 300, maxDelayMs: 1000 } });
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one')`);
    await stream.waitFor(() => stream.lastSafePosition !== undefined, 'the first transaction');
    await stream.waitFor(
      () => stream.acknowledger.confirmedPosition === stream.lastSafePosition,
      'the acknowledgement',
    );
    for (let attempt = 0; ; attempt++) {
      await terminateWalsender(p.fx.admin, p.slot).catch(() => 0);
      const dropped = await p.fx.admin.query('SELECT pg_drop_replication_slot($1)', [p.slot]).then(
        () => true,
        () => false,
      );
      if (dropped) break;
      if (attempt > 50) throw new Error('could not drop the slot');
    }
    const headAfterDrop = await walPosition(p.fx.admin);
    await stream.finished();
    expect(stream.error).toBeInstanceOf(NanosyncError);
    const error = stream.error as NanosyncError;
    expect(error.code).toBe(PgErrorCode.PgSlotMissing);
    expect(error.retriable).toBe(false);
    expect(error.message).toContain(`replication slot "${p.slot}"`);
    expect(error.message).toContain(`checkpoint ${formatPosition(stream.lastSafePosition as string)}`);
    expect(error.message).toContain('wal_status: missing');
    expect(error.details).toMatchObject({ slot: p.slot, walStatus: 'missing' });
    // The lost range: from the checkpoint up to the server's WAL position when the loss was found.
    expectLostRangeEnd(error, headAfterDrop);
  });

  it('the slot invalidated while streaming (max_slot_wal_keep_size) ends the stream with a non-retriable error naming the slot, the checkpoint and wal_status', async () => {
    await using service = await startPostgres({
      fresh: true,
      settings: { max_slot_wal_keep_size: '1MB', wal_keep_size: '0' },
    });
    await using p = await streamPipeline({
      ddl: [...ITEMS_DDL, 'CREATE TABLE public.filler (id serial PRIMARY KEY, pad text)'],
      tables: [items],
      service,
    });
    const stream = p.open(p.startPosition);
    stream.autoAcknowledge = false;
    await p.fx.admin.query(`INSERT INTO public.items VALUES (1, 'one')`);
    await stream.waitFor(() => stream.events.length === 1, 'the first insert');
    // Nothing is acknowledged, so the slot holds its WAL; write far more than it may keep.
    for (let round = 0; round < 6; round++) {
      await p.fx.admin.query(
        `INSERT INTO public.filler (pad) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g`,
      );
      await p.fx.admin.query('SELECT pg_switch_wal()');
    }
    await p.fx.admin.query('CHECKPOINT');
    const headAfterLoss = await walPosition(p.fx.admin);
    await stream.finished();
    expect(stream.error).toBeInstanceOf(NanosyncError);
    const error = stream.error as NanosyncError;
    expect(error.code).toBe(PgErrorCode.PgSlotInvalidated);
    expect(error.retriable).toBe(false);
    expect(error.message).toContain(`replication slot "${p.slot}"`);
    expect(error.message).toContain('wal_status: lost');
    expect(error.message).toContain(`checkpoint ${formatPosition(p.startPosition)}`);
    expectLostRangeEnd(error, headAfterLoss);
  });
});

async function walPosition(admin: { query: (sql: string) => Promise<{ rows: { lsn: string }[] }> }): Promise<bigint> {
  return parseLsn((await admin.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn);
}

/** The message ends the lost range at a WAL position at or after `atLeast` (read once the slot was lost). */
function expectLostRangeEnd(error: NanosyncError, atLeast: bigint): void {
  const end = / up to the server's WAL position ([0-9A-F]+\/[0-9A-F]+) can no longer be read/.exec(error.message);
  expect(end, error.message).not.toBeNull();
  expect(parseLsn(end![1]!)).toBeGreaterThanOrEqual(atLeast);
  expect(error.details?.lostTo).toBe(end![1]);
}
