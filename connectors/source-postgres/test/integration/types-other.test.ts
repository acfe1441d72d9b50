import type { Row } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { readAll } from './fixture.js';
import { streamPipeline } from './stream-helpers.js';

const table = { schema: 'public', name: 'more_types' };
const SCALARS = [
  ['r4', 'int4range', `'[1,10)'`],
  ['rts', 'tstzrange', `'[2024-01-01 00:00:00+00,infinity)'`],
  ['mr', 'int4multirange', `'{[1,3),[5,8)}'`],
  ['hs', 'hstore', `'a=>1, "b c"=>"x,y", n=>NULL'`],
  ['ci', 'citext', `'MiXeD Case'`],
  ['lt', 'ltree', `'top.science.astronomy'`],
  ['bt', 'bit(4)', `B'1010'`],
  ['vb', 'varbit', `B'110'`],
  ['x', 'xml', `'<a href="q">t &amp; u</a>'`],
  ['tv', 'tsvector', `'a fat cat sat on a mat'`],
  ['tq', 'tsquery', `'fat & (rat | cat)'`],
  ['pt', 'point', `'(1.5,-2)'`],
  ['bx', 'box', `'((0,0),(1,1))'`],
  ['pg', 'polygon', `'((0,0),(1,0),(0,1))'`],
  ['cr', 'circle', `'<(0,0),2>'`],
  ['o', 'oid', '4294967295'],
  ['rc', 'regclass', `'pg_class'`],
  ['cp', 'pair', `ROW(1, 'x "y", z')`],
  ['ch', 'char(5)', `'ab'`],
] as const;
const ARRAYS = [
  ['ra', 'int4range[]', `ARRAY['[1,2)'::int4range, NULL]`],
  ['pa', 'pair[]', `ARRAY[ROW(2, 'a,b')::pair]`],
  ['da', 'int_list', `'{1,2,NULL}'`],
  ['ca', 'char(3)[]', `'{a,bb}'`],
  ['cia', 'citext[]', `'{X,y}'`],
] as const;

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
