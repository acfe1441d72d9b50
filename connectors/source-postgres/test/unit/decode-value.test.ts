import { NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { builtinType, decodeValue, logicalTypeOf, type PgTypeInfo, sourceTypeName } from '../../src/types/index.js';

const t = (oid: number): PgTypeInfo => {
  const info = builtinType(oid);
  if (!info) throw new Error(`no builtin ${oid}`);
  return info;
};
const OID = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  cidr: 650,
  float4: 700,
  float8: 701,
  money: 790,
  macaddr: 829,
  inet: 869,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
  _int4: 1007,
  _text: 1009,
  _bytea: 1001,
  _numeric: 1231,
  _timestamptz: 1185,
  _box: 1020,
  _float8: 1022,
  _bool: 1000,
} as const;

const mood: PgTypeInfo = {
  oid: 90001,
  schema: 'public',
  name: 'mood',
  codec: 'enum',
  enumLabels: ['sad', 'ok', 'happy'],
};
const moodArray: PgTypeInfo = {
  oid: 90002,
  schema: 'public',
  name: '_mood',
  codec: 'array',
  element: mood,
  delimiter: ',',
};
const priceDomain: PgTypeInfo = {
  oid: 90003,
  schema: 'shop',
  name: 'price',
  codec: 'domain',
  base: t(OID.numeric),
  baseTypmod: ((12 << 16) | 2) + 4,
};
const tsDomain: PgTypeInfo = {
  oid: 90004,
  schema: 'public',
  name: 'event_time',
  codec: 'domain',
  base: t(OID.timestamptz),
  baseTypmod: -1,
};

describe('decodeValue: integers', () => {
  it('int2 and int4 are numbers', () => {
    expect(decodeValue(t(OID.int2), '-32768')).toBe(-32768);
    expect(decodeValue(t(OID.int4), '2147483647')).toBe(2147483647);
  });
  it('int8 beyond 2^53 stays an exact decimal string', () => {
    expect(decodeValue(t(OID.int8), '9223372036854775807')).toBe('9223372036854775807');
    expect(decodeValue(t(OID.int8), '-9223372036854775808')).toBe('-9223372036854775808');
    expect(decodeValue(t(OID.int8), '9007199254740993')).toBe('9007199254740993');
  });
  it('oid is an int64 string', () => {
    expect(decodeValue(t(OID.oid), '4294967295')).toBe('4294967295');
  });
  it('rejects text that is not an integer', () => {
    expect(() => decodeValue(t(OID.int4), 'abc')).toThrow(NanosyncError);
    expect(() => decodeValue(t(OID.int8), '1.5')).toThrow(/not an integer/);
  });
});

describe('decodeValue: numeric and floats', () => {
  it('numeric keeps every digit of a 40-digit value in plain notation', () => {
    const v = '1234567890123456789012345678901234567890.0123456789';
    expect(decodeValue(t(OID.numeric), v)).toBe(v);
    expect(decodeValue(t(OID.numeric), '-0.000000000000000000000000000000000000001')).toBe(
      '-0.000000000000000000000000000000000000001',
    );
  });
  it('numeric NaN and ±Infinity are the canonical words', () => {
    expect(decodeValue(t(OID.numeric), 'NaN')).toBe('NaN');
    expect(decodeValue(t(OID.numeric), 'Infinity')).toBe('Infinity');
    expect(decodeValue(t(OID.numeric), '-Infinity')).toBe('-Infinity');
  });
  it('floats are numbers including NaN and ±Infinity', () => {
    expect(decodeValue(t(OID.float8), 'NaN')).toBeNaN();
    expect(decodeValue(t(OID.float8), 'Infinity')).toBe(Number.POSITIVE_INFINITY);
    expect(decodeValue(t(OID.float4), '-Infinity')).toBe(Number.NEGATIVE_INFINITY);
    expect(decodeValue(t(OID.float8), '0.1')).toBe(0.1);
    expect(decodeValue(t(OID.float8), '1.7976931348623157e+308')).toBe(Number.MAX_VALUE);
    expect(decodeValue(t(OID.float8), '-0')).toBe(-0);
    expect(decodeValue(t(OID.float4), '3.4028235e+38')).toBe(3.4028235e38);
  });
  it('rejects garbage floats', () => {
    expect(() => decodeValue(t(OID.float8), 'abc')).toThrow(/not a number/);
  });
});

describe('decodeValue: scalars', () => {
  it('bool', () => {
    expect(decodeValue(t(OID.bool), 't')).toBe(true);
    expect(decodeValue(t(OID.bool), 'f')).toBe(false);
    expect(() => decodeValue(t(OID.bool), 'yes')).toThrow(NanosyncError);
  });
  it('strings keep padding, unicode and special characters', () => {
    expect(decodeValue(t(OID.bpchar), 'ab  ')).toBe('ab  ');
    expect(decodeValue(t(OID.text), 'tab\there\nnewline \\ "q" ✓ 𝄞')).toBe('tab\there\nnewline \\ "q" ✓ 𝄞');
    expect(decodeValue(t(OID.varchar), '')).toBe('');
    expect(decodeValue(t(OID.char), 'x')).toBe('x');
    expect(decodeValue(t(OID.name), 'pg_class')).toBe('pg_class');
  });
  it('bytea hex becomes the exact bytes', () => {
    const v = decodeValue(t(OID.bytea), '\\x00ff10deadbeef');
    expect(v).toBeInstanceOf(Uint8Array);
    expect([...(v as Uint8Array)]).toEqual([0x00, 0xff, 0x10, 0xde, 0xad, 0xbe, 0xef]);
    expect((v as Uint8Array).buffer.byteLength).toBe(7);
    expect([...(decodeValue(t(OID.bytea), '\\x') as Uint8Array)]).toEqual([]);
  });
  it('bytea escape form (bytea_output=escape) decodes too', () => {
    expect([...(decodeValue(t(OID.bytea), 'a\\\\b\\000\\377') as Uint8Array)]).toEqual([0x61, 0x5c, 0x62, 0x00, 0xff]);
  });
  it('json and jsonb keep the document text with every digit', () => {
    const doc = '{"big": 123456789012345678901234567890, "s": "ü"}';
    expect(decodeValue(t(OID.json), doc)).toBe(doc);
    expect(decodeValue(t(OID.jsonb), doc)).toBe(doc);
  });
  it('uuid is lowercase', () => {
    expect(decodeValue(t(OID.uuid), 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')).toBe(
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    );
  });
  it('money, inet, cidr, macaddr stay in their text form', () => {
    expect(decodeValue(t(OID.money), '-$1,234.56')).toBe('-$1,234.56');
    expect(decodeValue(t(OID.inet), '192.168.0.1/24')).toBe('192.168.0.1/24');
    expect(decodeValue(t(OID.inet), '::1')).toBe('::1');
    expect(decodeValue(t(OID.cidr), '10.0.0.0/8')).toBe('10.0.0.0/8');
    expect(decodeValue(t(OID.macaddr), '08:00:2b:01:02:03')).toBe('08:00:2b:01:02:03');
  });
  it('interval in iso_8601 style passes through', () => {
    expect(decodeValue(t(OID.interval), 'P1Y2M3DT4H5M6.000007S')).toBe('P1Y2M3DT4H5M6.000007S');
    expect(decodeValue(t(OID.interval), 'P-1Y-2M3DT-4H')).toBe('P-1Y-2M3DT-4H');
    expect(decodeValue(t(OID.interval), 'PT0S')).toBe('PT0S');
  });
  it('enums are their label; domains decode as the base type', () => {
    expect(decodeValue(mood, 'happy')).toBe('happy');
    expect(decodeValue(priceDomain, '12.50')).toBe('12.50');
    expect(decodeValue(tsDomain, '2024-02-29 23:59:59.999999+00')).toBe('2024-02-29T23:59:59.999999Z');
  });
  it('accepts the text as bytes (pgoutput tuples)', () => {
    expect(decodeValue(t(OID.int4), Buffer.from('42'))).toBe(42);
    expect(decodeValue(t(OID.text), new TextEncoder().encode('ü✓'))).toBe('ü✓');
  });
});

describe('decodeValue: dates and times', () => {
  it('date, including BC dates in astronomical numbering and infinities', () => {
    expect(decodeValue(t(OID.date), '2024-02-29')).toBe('2024-02-29');
    expect(decodeValue(t(OID.date), '0044-03-15 BC')).toBe('-0043-03-15');
    expect(decodeValue(t(OID.date), '0001-01-01 BC')).toBe('+0000-01-01');
    expect(decodeValue(t(OID.date), '4714-11-24 BC')).toBe('-4713-11-24');
    expect(decodeValue(t(OID.date), '0001-01-01')).toBe('0001-01-01');
    expect(decodeValue(t(OID.date), '5874897-12-31')).toBe('+5874897-12-31');
    expect(decodeValue(t(OID.date), 'infinity')).toBe('infinity');
    expect(decodeValue(t(OID.date), '-infinity')).toBe('-infinity');
  });
  it('time always has six fraction digits; 24:00:00 is kept', () => {
    expect(decodeValue(t(OID.time), '13:45:06')).toBe('13:45:06.000000');
    expect(decodeValue(t(OID.time), '13:45:06.5')).toBe('13:45:06.500000');
    expect(decodeValue(t(OID.time), '00:00:00.000001')).toBe('00:00:00.000001');
    expect(decodeValue(t(OID.time), '24:00:00')).toBe('24:00:00.000000');
  });
  it('timetz keeps its offset as ±HH:MM (seconds only when present)', () => {
    expect(decodeValue(t(OID.timetz), '13:45:06.123456+05:30')).toBe('13:45:06.123456+05:30');
    expect(decodeValue(t(OID.timetz), '13:45:06-08')).toBe('13:45:06.000000-08:00');
    expect(decodeValue(t(OID.timetz), '13:45:06+00')).toBe('13:45:06.000000+00:00');
    expect(decodeValue(t(OID.timetz), '13:45:06+01:02:03')).toBe('13:45:06.000000+01:02:03');
  });
  it('timestamp keeps microseconds, BC years, big years and infinities', () => {
    expect(decodeValue(t(OID.timestamp), '2024-01-02 03:04:05.123456')).toBe('2024-01-02T03:04:05.123456');
    expect(decodeValue(t(OID.timestamp), '2024-01-02 03:04:05')).toBe('2024-01-02T03:04:05.000000');
    expect(decodeValue(t(OID.timestamp), '0044-03-15 12:00:00 BC')).toBe('-0043-03-15T12:00:00.000000');
    expect(decodeValue(t(OID.timestamp), '294276-12-31 23:59:59.999999')).toBe('+294276-12-31T23:59:59.999999');
    expect(decodeValue(t(OID.timestamp), 'infinity')).toBe('infinity');
    expect(decodeValue(t(OID.timestamp), '-infinity')).toBe('-infinity');
  });
  it('timestamptz in UTC gets a Z; other offsets are converted to UTC', () => {
    expect(decodeValue(t(OID.timestamptz), '2024-01-02 03:04:05.000001+00')).toBe('2024-01-02T03:04:05.000001Z');
    expect(decodeValue(t(OID.timestamptz), '2024-01-01 01:30:00+05:45')).toBe('2023-12-31T19:45:00.000000Z');
    expect(decodeValue(t(OID.timestamptz), '2024-02-28 22:00:00-03')).toBe('2024-02-29T01:00:00.000000Z');
    expect(decodeValue(t(OID.timestamptz), '0001-01-01 00:30:00+01 BC')).toBe('-0001-12-31T23:30:00.000000Z');
    expect(decodeValue(t(OID.timestamptz), '0044-03-15 10:00:00.5+00 BC')).toBe('-0043-03-15T10:00:00.500000Z');
    expect(decodeValue(t(OID.timestamptz), '1900-01-01 00:00:00+00:09:21')).toBe('1899-12-31T23:50:39.000000Z');
    expect(decodeValue(t(OID.timestamptz), 'infinity')).toBe('infinity');
    expect(decodeValue(t(OID.timestamptz), '-infinity')).toBe('-infinity');
  });
  it('rejects a non-ISO DateStyle instead of guessing', () => {
    expect(() => decodeValue(t(OID.date), '03/15/2024')).toThrow(/ISO DateStyle/);
    expect(() => decodeValue(t(OID.timestamptz), 'Fri Mar 15 10:00:00 2024 UTC')).toThrow(NanosyncError);
  });
});

describe('decodeValue: arrays', () => {
  it('int arrays with NULLs and nesting', () => {
    expect(decodeValue(t(OID._int4), '{1,2,3}')).toEqual([1, 2, 3]);
    expect(decodeValue(t(OID._int4), '{1,NULL,3}')).toEqual([1, null, 3]);
    expect(decodeValue(t(OID._int4), '{{1,2},{3,NULL}}')).toEqual([
      [1, 2],
      [3, null],
    ]);
    expect(decodeValue(t(OID._int4), '{}')).toEqual([]);
    expect(decodeValue(t(OID._int4), '[0:2]={7,8,9}')).toEqual([7, 8, 9]);
  });
  it('text arrays: quotes, escapes, the string "NULL", blanks and unicode', () => {
    expect(
      decodeValue(t(OID._text), '{"a,b","say \\"hi\\"","back\\\\slash","NULL",NULL,"",plain,"  spaced  ",ü✓}'),
    ).toEqual(['a,b', 'say "hi"', 'back\\slash', 'NULL', null, '', 'plain', '  spaced  ', 'ü✓']);
    expect(decodeValue(t(OID._text), '{{a,b},{"{c}",d}}')).toEqual([
      ['a', 'b'],
      ['{c}', 'd'],
    ]);
  });
  it('arrays of bytea, numeric, timestamptz, float8 and bool decode their elements', () => {
    const bytes = decodeValue(t(OID._bytea), '{"\\\\x0102",NULL}') as (Uint8Array | null)[];
    expect([...(bytes[0] as Uint8Array)]).toEqual([1, 2]);
    expect(bytes[1]).toBeNull();
    expect(decodeValue(t(OID._numeric), '{1.50,NaN,-Infinity}')).toEqual(['1.50', 'NaN', '-Infinity']);
    expect(decodeValue(t(OID._timestamptz), '{"2024-01-01 00:00:00+00",infinity}')).toEqual([
      '2024-01-01T00:00:00.000000Z',
      'infinity',
    ]);
    expect(decodeValue(t(OID._float8), '{NaN,Infinity,1.5}')).toEqual([Number.NaN, Number.POSITIVE_INFINITY, 1.5]);
    expect(decodeValue(t(OID._bool), '{t,f,NULL}')).toEqual([true, false, null]);
  });
  it('box arrays use ";" between elements', () => {
    expect(decodeValue(t(OID._box), '{(1,1),(0,0);(2,2),(1,1)}')).toEqual(['(1,1),(0,0)', '(2,2),(1,1)']);
  });
  it('enum arrays decode through the element type', () => {
    expect(decodeValue(moodArray, '{sad,NULL,happy}')).toEqual(['sad', null, 'happy']);
  });
  it('malformed array text is an error', () => {
    expect(() => decodeValue(t(OID._int4), '{1,2')).toThrow(NanosyncError);
    expect(() => decodeValue(t(OID._int4), '1,2}')).toThrow(NanosyncError);
  });
});

describe('logical types and source type names', () => {
  it('maps typmods onto decimal precision and scale, domains through their base', () => {
    expect(logicalTypeOf(t(OID.numeric), ((12 << 16) | 2) + 4)).toEqual({ kind: 'decimal', precision: 12, scale: 2 });
    expect(logicalTypeOf(t(OID.numeric), -1)).toEqual({ kind: 'decimal' });
    expect(logicalTypeOf(priceDomain, -1)).toEqual({ kind: 'decimal', precision: 12, scale: 2 });
    expect(logicalTypeOf(tsDomain)).toEqual({ kind: 'timestamptz' });
  });
  it('maps every built-in kind the event model names', () => {
    const kinds = Object.fromEntries(Object.entries(OID).map(([name, oid]) => [name, logicalTypeOf(t(oid)).kind]));
    expect(kinds).toMatchObject({
      bool: 'bool',
      bytea: 'bytes',
      int8: 'int64',
      int2: 'int16',
      int4: 'int32',
      text: 'string',
      json: 'json',
      jsonb: 'json',
      cidr: 'cidr',
      inet: 'inet',
      macaddr: 'macaddr',
      money: 'money',
      float4: 'float32',
      float8: 'float64',
      bpchar: 'string',
      varchar: 'string',
      date: 'date',
      time: 'time',
      timetz: 'timetz',
      timestamp: 'timestamp',
      timestamptz: 'timestamptz',
      interval: 'interval',
      numeric: 'decimal',
      uuid: 'uuid',
      _int4: 'array',
    });
    expect(logicalTypeOf(t(OID._text))).toEqual({ kind: 'array', items: { kind: 'string' } });
    expect(logicalTypeOf(moodArray)).toEqual({
      kind: 'array',
      items: { kind: 'enum', values: ['sad', 'ok', 'happy'] },
    });
    expect(logicalTypeOf(t(142))).toEqual({ kind: 'other', sourceType: 'xml' });
  });
  it('names types with their modifiers', () => {
    expect(sourceTypeName(t(OID.numeric), ((12 << 16) | 2) + 4)).toBe('numeric(12,2)');
    expect(sourceTypeName(t(OID.varchar), 54)).toBe('varchar(50)');
    expect(sourceTypeName(t(OID._int4))).toBe('int4[]');
    expect(sourceTypeName(t(OID.timestamptz), 3)).toBe('timestamptz(3)');
    expect(sourceTypeName(mood)).toBe('public.mood');
  });
});
