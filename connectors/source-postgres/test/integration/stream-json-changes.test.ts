import type { ChangeBatch } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { createChangeDecoder, createJsonChangeWriter } from '../../src/worker.js';
import { type ChangeTexts, changeTexts, eventTexts } from '../fixtures/json-texts.js';
import { streamPipeline } from './stream-helpers.js';
import { COLUMNS, DDL, RANDOM_ROWS, ROWS } from './types-data.js';

/**
 * The change stream's raw batches from a real server, written as JSON text by the worker
 * module's `createJsonChangeWriter`: change by change the same operation, position and commit
 * time as the events `createChangeDecoder` gives for the batch, and each row image's values
 * as `jsonValueText` of the decoded values — every type of the type test and random rows, on
 * inserts, updates with and without a key change, deletes under REPLICA IDENTITY DEFAULT and
 * FULL, and updates that leave a TOASTed value unchanged (absent from `after`, as in the event).
 */

const tables = [
  { schema: 'public', name: 'all_types' },
  { schema: 'public', name: 'wide' },
  { schema: 'public', name: 'full_rows' },
];

describe('raw stream batches as JSON text', () => {
  it('gives the decoded events’ images value by value, for every type and operation', async () => {
    await using sp = await streamPipeline({
      ddl: [
        ...DDL,
        'CREATE TABLE public.wide (id int PRIMARY KEY, big text, n int)',
        'CREATE TABLE public.full_rows (id int PRIMARY KEY, v text, f float8)',
        'ALTER TABLE public.full_rows REPLICA IDENTITY FULL',
      ],
      tables,
    });
    const writer = createJsonChangeWriter();
    const decode = createChangeDecoder();
    const written: ChangeTexts[] = [];
    const expected: ChangeTexts[] = [];
    let rawBatches = 0;
    let changes = 0;
    const stream = sp.open(sp.startPosition, { raw: true });
    stream.onBatch = (batch: ChangeBatch) => {
      changes += batch.events.length;
      const raw = batch.raw;
      if (raw === undefined) return;
      rawBatches++;
      changes += raw.count;
      // The writer first: the decoder must not be what makes the texts right.
      const json = writer(new Uint8Array(raw.bytes), raw.setup);
      expect(json, `batch ${raw.first}..${raw.last}`).toBeDefined();
      const events = decode(new Uint8Array(raw.bytes), raw.setup);
      expect(json!.count).toBe(events.length);
      written.push(...changeTexts(json!));
      for (const [i, event] of events.entries()) {
        expected.push(eventTexts(event));
        expect(json!.tables[i]).toBe(event.table);
        // A column left out of an update's `after` is one the event lists as unchanged.
        const after = eventTexts(event).after;
        const absent = after === null ? [] : event.table.columns.filter((_, c) => after[c] === '').map((c) => c.name);
        expect(absent).toEqual(event.unchanged ?? []);
      }
    };

    let total = 0;
    const run = async (sql: string, params: unknown[] = []) => {
      const result = await sp.fx.admin.query(sql, params);
      total += result.rowCount ?? 0;
    };
    for (const row of ROWS) await run(`INSERT INTO public.all_types (${COLUMNS}) VALUES (${row.sql})`);
    await run(RANDOM_ROWS, [600]);
    // A backslash is itself in pgoutput (no COPY escapes): '\n' here is a backslash and an n.
    await run(`UPDATE public.all_types SET t = coalesce(t, '') || '\\n\\t"q"', f8 = -0.0 WHERE id % 3 = 0`);
    // Key changes: the old key goes in a key-only ('K') tuple.
    await run('UPDATE public.all_types SET id = id + 100000 WHERE id % 7 = 0');
    await run('DELETE FROM public.all_types WHERE id % 5 = 0');
    // Values stored out of line (random hex does not compress below the TOAST threshold).
    await run(
      `INSERT INTO public.wide
       SELECT g, (SELECT string_agg(md5(random()::text || g || s), '') FROM generate_series(1, 300) s), 0
       FROM generate_series(1, 20) g`,
    );
    await run('UPDATE public.wide SET n = n + 1'); // `big` unchanged: sent as 'u'
    await run('UPDATE public.wide SET n = n + 1, big = NULL WHERE id <= 5');
    await run('DELETE FROM public.wide WHERE id > 15');
    await run(`INSERT INTO public.full_rows SELECT g, 'v' || g, g / 4.0 FROM generate_series(1, 50) g`);
    await run(`UPDATE public.full_rows SET v = v || E'\\n' WHERE id % 2 = 0`);
    await run('UPDATE public.full_rows SET id = id + 1000 WHERE id % 9 = 0');
    await run('DELETE FROM public.full_rows WHERE id % 4 = 0');
    await stream.waitFor(() => changes >= total, `${total} changes`);
    await stream.stop();

    expect(stream.error).toBeUndefined();
    expect(changes).toBe(total);
    expect(rawBatches).toBeGreaterThan(0);
    expect(written.length).toBe(total);
    expect(written).toEqual(expected);
    // Every shape of image was met: key-only befores, full befores and unchanged TOAST.
    expect(written.some((c) => c.op === 'delete' && c.before!.includes(''))).toBe(true);
    expect(written.some((c) => c.op === 'delete' && !c.before!.includes(''))).toBe(true);
    expect(written.some((c) => c.op === 'update' && c.before !== null && c.before.includes(''))).toBe(true);
    expect(written.some((c) => c.op === 'update' && c.after!.includes(''))).toBe(true);
  });
});
