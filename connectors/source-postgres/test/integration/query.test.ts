import { NanosyncError, type Row } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { pgFixture, uniqueName } from './fixture.js';

describe('query(): scheduled SQL for query pipelines', () => {
  it('returns decoded rows in bounded chunks, read-only', async () => {
    await using fx = await pgFixture();
    await fx.admin.query("CREATE TYPE level AS ENUM ('low', 'high')");
    await fx.admin.query(
      'CREATE TABLE public.readings (id bigint PRIMARY KEY, at timestamptz, v numeric(6,2), lvl level)',
    );
    await fx.admin.query(
      `INSERT INTO public.readings SELECT g, timestamptz '2024-05-01 00:00:00+00' + g * interval '1 minute', g / 4.0, CASE WHEN g % 2 = 0 THEN 'high'::level ELSE 'low' END FROM generate_series(1, 2500) g`,
    );
    await fx.grantRead([{ schema: 'public', name: 'readings' }]);
    const source = await fx.source(uniqueName('query'));
    const chunks: Row[][] = [];
    for await (const chunk of source.query!(
      'SELECT id, at, v, lvl, id * 2 AS doubled FROM public.readings WHERE id > 500 ORDER BY id;',
      {
        signal: new AbortController().signal,
        maxRowsPerChunk: 1000,
      },
    )) {
      chunks.push(chunk);
    }
    expect(chunks.map((c) => c.length)).toEqual([1000, 1000]);
    expect(chunks[0]![0]).toEqual({
      id: '501',
      at: '2024-05-01T08:21:00.000000Z',
      v: '125.25',
      lvl: 'low',
      doubled: '1002',
    });

    const writing = await (async () => {
      for await (const _ of source.query!('INSERT INTO public.readings VALUES (9999, now(), 1, NULL) RETURNING id', {
        signal: new AbortController().signal,
        maxRowsPerChunk: 10,
      })) {
        // nothing: the statement must fail
      }
    })().catch((e: unknown) => e);
    expect(NanosyncError.is(writing)).toBe(true);
    const count = await fx.admin.query('SELECT count(*)::int AS n FROM public.readings WHERE id = 9999');
    expect(count.rows[0].n).toBe(0);
  });
});
