import { describe, expect, it } from 'vitest';
import { readAll } from './fixture.js';
import { quoteIdent, streamPipeline } from './stream-helpers.js';

const everything = { schema: 'public', name: 'Every Type' };

describe('stream and snapshot agree', () => {
  it('the same row has the same values and schema in the stream and in the snapshot, whatever the role session defaults', async () => {
    await using p = await streamPipeline({
      ddl: [
        "CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy')",
        'CREATE DOMAIN public.price AS numeric(10,2) CHECK (VALUE >= 0)',
        `CREATE TABLE public."Every Type" (
           id bigint PRIMARY KEY, i2 smallint, i4 int, n numeric, n_nan numeric, f4 real, f8 double precision, f_inf double precision,
           b boolean, t text, vc varchar(20), ch char(3), by bytea, d date, d_bc date, tm time, ttz timetz, ts timestamp(6),
           tstz timestamptz, tstz_inf timestamptz, iv interval, u uuid, j json, jb jsonb, ints int[], texts text[],
           m public.mood, moods public.mood[], pr public.price, money money, ip inet, net cidr, mac macaddr)`,
      ],
      tables: [everything],
    });
    // Session defaults that would change the text form if the connections did not pin their own.
    await p.fx.admin.query(
      `ALTER ROLE ${quoteIdent(p.fx.role)} SET TimeZone = 'America/St_Johns'; ALTER ROLE ${quoteIdent(p.fx.role)} SET DateStyle = 'SQL, DMY';
       ALTER ROLE ${quoteIdent(p.fx.role)} SET IntervalStyle = 'postgres_verbose'; ALTER ROLE ${quoteIdent(p.fx.role)} SET extra_float_digits = 0;
       ALTER ROLE ${quoteIdent(p.fx.role)} SET bytea_output = 'escape'`,
    );
    const stream = p.open(p.startPosition);
    await p.fx.admin.query(`INSERT INTO public."Every Type" VALUES (
      9007199254740993, -32768, 2147483647, 123456789012345678901234567890.123456789, 'NaN', 3.4028235e38, 0.1, '-Infinity',
      true, E'tab\\there ünïcødé', 'varchar', 'ab', '\\x00ff10', '2024-02-29', '0044-03-15 BC', '23:59:59.999999', '12:00:00.5+05:30',
      '2024-05-01 12:00:00.123456', '2024-05-01 12:00:00.123456+02', 'infinity', '1 year 2 months 3 days 04:05:06.000007',
      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"n": 12345678901234567890.5}', '{"b": [1, 2], "a": null}',
      '{1,NULL,3}', '{"a b","c,d",NULL}', 'happy', '{sad,ok}', 12.5, 1234.56, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03')`);
    await stream.waitFor(() => stream.events.length === 1, 'the insert');

    const source = await p.fx.source(p.pipeline);
    const [schema] = await source.describe([everything]);
    const { rows } = await readAll(source, schema!);
    const event = stream.events[0]!;
    expect(rows).toHaveLength(1);
    expect(event.after).toEqual(rows[0]);
    expect(event.table).toEqual(schema);
    // Spot checks that the pinned settings really applied to the replication connection.
    expect(event.after).toMatchObject({
      tstz: '2024-05-01T10:00:00.123456Z',
      d_bc: '-0043-03-15',
      iv: 'P1Y2M3DT4H5M6.000007S',
      f8: 0.1,
      by: new Uint8Array([0x00, 0xff, 0x10]),
      m: 'happy',
      moods: ['sad', 'ok'],
      pr: '12.50',
    });
  });
});
