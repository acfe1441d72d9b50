import { type ChangeEvent, NanosyncError, type Row } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { FRAME_AVRO, unframe } from '../../src/formats/framing.js';
import { MESSAGE_FORMATS, avroSchemaOf, codecFor } from '../../src/formats/index.js';
import { extremeRows, extremesTable } from '../fixtures/extremes.js';

/** PostgreSQL's year 294276 maps beyond int64 microseconds since 1970; the other rows fit. */
const insert = (after: Row): ChangeEvent => ({
  table: extremesTable,
  op: 'insert',
  key: { id: after.id ?? null },
  after,
  position: `p${String(after.id)}`,
});

describe.each(MESSAGE_FORMATS.filter((f) => f !== 'protobuf'))(
  '%s carries every extreme value losslessly',
  (format) => {
    test.each(extremeRows.map((r) => [r.id, r] as const))('row %s', (_, row) => {
      const codec = codecFor(format);
      expect(codec.decode(codec.encode(insert(row)).value, { table: extremesTable }).after).toEqual(row);
    });
  },
);

describe('avro puts values beyond its logical types in a string branch', () => {
  test('the union of each temporal column has a string branch, and only the out-of-range values use it', () => {
    const value = codecFor('avro').encode(insert(extremeRows[0]!)).value;
    const schema = avroSchemaOf(value) as { fields: { name: string; type: unknown[] }[] };
    const row = (
      schema.fields.find((f) => f.name === 'after')!.type[1] === 'Row'
        ? schema.fields.find((f) => f.name === 'before')!.type[1]
        : schema.fields.find((f) => f.name === 'after')!.type[1]
    ) as {
      fields: { name: string; type: unknown[] }[];
    };
    const ts = row.fields.find((f) => f.name === 'ts')!.type;
    expect(ts).toEqual(['null', { type: 'long', logicalType: 'local-timestamp-micros' }, 'string']);
    expect(row.fields.find((f) => f.name === 'n')!.type).toEqual(['null', 'string']);
    expect(unframe(value, FRAME_AVRO).payload.length).toBeGreaterThan(0);
  });
});

describe('protobuf refuses, never wraps, a timestamp beyond 64-bit microseconds', () => {
  test('year 294276 is an error naming table, column and key', () => {
    let error: unknown;
    try {
      codecFor('protobuf').encode(insert(extremeRows[0]!));
    } catch (err) {
      error = err;
    }
    expect(NanosyncError.is(error, 'NS_K6006')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('"public.extremes"');
    expect(message).toContain('column "ts"');
    expect(message).toContain('{"id":1}');
    expect(message).toContain('294276');
  });

  test.each(extremeRows.slice(1).map((r) => [r.id, r] as const))('row %s (in range) round-trips', (_, row) => {
    const codec = codecFor('protobuf');
    expect(codec.decode(codec.encode(insert(row)).value).after).toEqual(row);
  });
});
