import type { ChangeEvent, Row, Source, TableRef } from '@nanosync/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgFixture, readAll, uniqueName } from './fixture.js';

const accounts: TableRef = { schema: 'public', name: 'accounts' };

async function collectStream(
  source: Source,
  from: string,
  until: (events: ChangeEvent[]) => boolean,
  tables: TableRef[],
): Promise<ChangeEvent[]> {
  const controller = new AbortController();
  const events: ChangeEvent[] = [];
  const timer = setTimeout(() => controller.abort(new Error('stream did not deliver in time')), 90_000);
  try {
    for await (const batch of source.stream(from, { signal: controller.signal, tables })) {
      events.push(...batch.events);
      if (batch.safePosition) await source.acknowledge(batch.safePosition);
      if (batch.safePosition && until(events)) break;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return events;
}

async function prepared() {
  const fx = await pgFixture();
  await fx.admin.query('CREATE TABLE public.accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text)');
  await fx.admin.query(`INSERT INTO public.accounts SELECT g, g * 10, 'seed' FROM generate_series(1, 5000) g`);
  await fx.grantRead([accounts]);
  const pipeline = uniqueName('handoff');
  await fx.preparePublication(pipeline, [accounts]);
  return { fx, pipeline };
}

describe('snapshot → stream handoff at the slot consistent point', () => {
  it('a transaction begun before slot creation and committed during the snapshot is not in the snapshot but is in the stream', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const writer = new pg.Client({ connectionString: fx.adminUrl });
    await writer.connect();
    try {
      await writer.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await writer.query('SELECT count(*) FROM public.accounts');
      const source = await fx.source(pipeline);
      const opened = await source.open([accounts], { wantSnapshot: true });
      const [schema] = await source.describe([accounts]);

      const plan = await source.planPartitions(schema!, { targetRowsPerPartition: 1000 });
      const snapshotIds = new Set<unknown>();
      for (const [i, partition] of plan.entries()) {
        if (i === 1) {
          await writer.query(`INSERT INTO public.accounts VALUES (900001, 1, 'late writer')`);
          await writer.query('UPDATE public.accounts SET note = $1 WHERE id = 1', ['touched by late writer']);
          await writer.query('COMMIT');
        }
        for await (const chunk of source.readPartition(schema!, partition, {
          snapshotToken: opened.snapshot!.token,
          maxRowsPerChunk: 500,
          signal: new AbortController().signal,
        })) {
          for (const row of chunk) {
            snapshotIds.add(row.id);
            if (row.id === 1) expect(row.note).toBe('seed');
          }
        }
      }
      await opened.snapshot!.release();
      expect(snapshotIds.size).toBe(5000);
      expect(snapshotIds.has(900001)).toBe(false);

      const events = await collectStream(source, opened.startPosition, (ev) => ev.length >= 2, [accounts]);
      expect(events.map((e) => [e.op, e.key])).toEqual([
        ['insert', { id: 900001 }],
        ['update', { id: 1 }],
      ]);
      expect(events[1]!.after?.note).toBe('touched by late writer');
      expect(source.comparePositions(events[0]!.position, opened.startPosition)).toBeGreaterThan(0);
    } finally {
      await writer.end().catch(() => {});
    }
  });

  it('with a concurrent writer, snapshot plus stream equals the table, and no insert is seen twice', async () => {
    const { fx, pipeline } = await prepared();
    await using _ = fx;
    const writer = new pg.Client({ connectionString: fx.adminUrl });
    await writer.connect();
    let stop = false;
    let nextId = 100_000;
    let writes = 0;
    let writerError: unknown;
    const waitForWrites = async (n: number) => {
      while (writes < n) {
        if (writerError) throw writerError;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const writing = (async () => {
      while (!stop) {
        const id = nextId++;
        await writer.query('BEGIN');
        await writer.query(`INSERT INTO public.accounts VALUES ($1, $2, 'w')`, [id, id]);
        await writer.query('UPDATE public.accounts SET balance = balance + 1 WHERE id = $1', [(id % 5000) + 1]);
        if (id % 3 === 0) await writer.query('DELETE FROM public.accounts WHERE id = $1', [(id % 4999) + 1]);
        await writer.query('COMMIT');
        writes++;
      }
    })().catch((error: unknown) => {
      writerError = error;
    });
    try {
      await waitForWrites(20);
      const source = await fx.source(pipeline);
      const opened = await source.open([accounts], { wantSnapshot: true });
      const [schema] = await source.describe([accounts]);
      const snap = await readAll(source, schema!, {
        snapshotToken: opened.snapshot!.token,
        targetRowsPerPartition: 700,
      });
      await opened.snapshot!.release();
      await waitForWrites(200);
      stop = true;
      await writing;
      if (writerError) throw writerError;
      await writer.query(`INSERT INTO public.accounts VALUES (999999, 0, 'marker')`);

      const events = await collectStream(source, opened.startPosition, (ev) => ev.some((e) => e.key.id === 999999), [
        accounts,
      ]);
      const state = new Map<unknown, Row>(snap.rows.map((r) => [r.id, r]));
      const snapshotIds = new Set(state.keys());
      for (const e of events) {
        if (e.op === 'insert')
          expect(snapshotIds.has(e.key.id), `insert ${String(e.key.id)} also in the snapshot`).toBe(false);
        if (e.op === 'delete') state.delete(e.key.id);
        else state.set(e.key.id, e.after!);
      }
      const table = await fx.admin.query('SELECT id, balance::text AS balance, note FROM public.accounts ORDER BY id');
      expect([...state.values()].sort((a, b) => (a.id as number) - (b.id as number))).toEqual(table.rows);
      for (let i = 1; i < events.length; i++)
        expect(source.comparePositions(events[i - 1]!.position, events[i]!.position)).toBeLessThan(0);
    } finally {
      stop = true;
      await writing.catch(() => {});
      await writer.end().catch(() => {});
    }
  });
});
