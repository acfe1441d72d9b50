import { describe, expect, it } from 'vitest';
import { readAll } from './fixture.js';
import { streamPipeline } from './stream-helpers.js';

describe('stream and snapshot agree on a table’s shape and keys', () => {
  it('generated (STORED) columns are left out of snapshot rows and stream events alike', async () => {
    const table = { schema: 'public', name: 'priced' };
    await using p = await streamPipeline({
      ddl: [
        `CREATE TABLE public.priced (id int PRIMARY KEY, net int NOT NULL,
           gross int GENERATED ALWAYS AS (net * 2) STORED, label text)`,
        `INSERT INTO public.priced (id, net, label) VALUES (1, 10, 'a'), (2, 20, 'b')`,
      ],
      tables: [table],
    });
    const source = await p.fx.source(p.pipeline);
    const [schema] = await source.describe([table]);
    expect(schema!.columns.map((c) => c.name)).toEqual(['id', 'net', 'label']);
    const snapshot = await readAll(source, schema!);
    expect(snapshot.rows.map((r) => Object.keys(r))).toEqual([
      ['id', 'net', 'label'],
      ['id', 'net', 'label'],
    ]);

    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public.priced (id, net, label) VALUES (3, 30, 'c')`);
    await p.fx.admin.query(`UPDATE public.priced SET net = 11 WHERE id = 1`);
    await stream.waitFor(() => stream.events.length >= 2, 'insert and update');
    for (const event of stream.events) {
      expect(Object.keys(event.after ?? {})).toEqual(['id', 'net', 'label']);
      expect(event.table.columns.map((c) => c.name)).toEqual(['id', 'net', 'label']);
    }
  });

  it('a delete made before the key was redefined, streamed after it, is keyed by the key of its time', async () => {
    const table = { schema: 'public', name: 'keyed' };
    await using p = await streamPipeline({
      ddl: [
        'CREATE TABLE public.keyed (id int PRIMARY KEY, alt int NOT NULL, note text)',
        `INSERT INTO public.keyed SELECT g, 100 + g, 'seed' FROM generate_series(1, 10) g`,
      ],
      tables: [table],
    });
    await p.fx.admin.query('DELETE FROM public.keyed WHERE id = 5');
    await p.fx.admin.query('UPDATE public.keyed SET id = 50 WHERE id = 6');
    await p.fx.admin.query('ALTER TABLE public.keyed DROP CONSTRAINT keyed_pkey');
    await p.fx.admin.query('ALTER TABLE public.keyed ADD PRIMARY KEY (alt)');
    await p.fx.admin.query('DELETE FROM public.keyed WHERE id = 7');
    await p.fx.admin.query(`UPDATE public.keyed SET note = 'after' WHERE id = 8`);
    // Only now is the stream read: every change is decoded after the key changed.
    const stream = p.open(p.startPosition);
    await stream.waitFor(() => stream.events.length >= 4, 'four changes');
    expect(stream.events.map((e) => [e.op, e.key])).toEqual([
      ['delete', { id: 5 }],
      ['update', { id: 50 }],
      ['delete', { alt: 107 }],
      ['update', { alt: 108 }],
    ]);
    expect(stream.events[1]!.before).toMatchObject({ id: 6 });
  });
});
