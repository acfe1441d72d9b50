import type { Row } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { readAll } from './fixture.js';
import { streamPipeline } from './stream-helpers.js';
import { ARRAYS, SCALARS } from './types-data.js';

const table = { schema: 'public', name: 'more_types' };
describe('types beyond the common ones', () => {
  it('ranges, multiranges, hstore, citext, ltree, bit strings, xml, text search, geometry, oid/regclass, composites, domains over arrays and char(n): the snapshot and the stream give the same value, and scalars equal the server’s text form', async () => {
    const columns = [...SCALARS, ...ARRAYS];
    await using p = await streamPipeline({
      ddl: [
        'CREATE EXTENSION IF NOT EXISTS hstore',
        'CREATE EXTENSION IF NOT EXISTS citext',
        'CREATE EXTENSION IF NOT EXISTS ltree',
        `CREATE TYPE pair AS (n int, s text)`,
        `CREATE DOMAIN int_list AS int[]`,
        `CREATE TABLE public.more_types (id int PRIMARY KEY, ${columns.map(([c, t]) => `${c} ${t}`).join(', ')})`,
        `INSERT INTO public.more_types VALUES (1, ${columns.map(([, , v]) => v).join(', ')})`,
      ],
      tables: [table],
    });
    const source = await p.fx.source(p.pipeline);
    const [schema] = await source.describe([table]);
    const snapshot = (await readAll(source, schema!)).rows[0]!;

    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public.more_types VALUES (2, ${columns.map(([, , v]) => v).join(', ')})`);
    await stream.waitFor(() => stream.events.length >= 1, 'the insert');
    const streamed = stream.events[0]!.after as Row;

    const text = (
      await p.fx.admin.query(
        `SELECT ${SCALARS.map(([c]) => `${c}::text AS ${c}`).join(', ')} FROM public.more_types WHERE id = 1`,
      )
    ).rows[0] as Record<string, string>;
    for (const [column] of columns) {
      expect(streamed[column], column).toEqual(snapshot[column]);
    }
    // `::text` trims char(n); its output (what psql prints) keeps the padding.
    expect(snapshot.ch).toBe('ab   ');
    for (const [column] of SCALARS) {
      if (column === 'ch') continue;
      const value = snapshot[column];
      expect(typeof value === 'string' ? value : String(value), column).toBe(text[column]);
    }
    expect(snapshot.ca).toEqual(['a  ', 'bb ']);
    expect(snapshot.da).toEqual([1, 2, null]);
    expect(snapshot.cia).toEqual(['X', 'y']);
    const types = Object.fromEntries(schema!.columns.map((c) => [c.name, c.type.kind]));
    expect(types).toMatchObject({ ci: 'string', o: 'int64', ch: 'string', da: 'array', ca: 'array' });
  });
});
