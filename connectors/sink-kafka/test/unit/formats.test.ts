import { readFileSync, writeFileSync } from 'node:fs';
import { type ChangeEvent, NanosyncError, qualifiedName } from '@nanosync/core';
import avro from 'avsc';
import { type CloudEvent, Kafka } from 'cloudevents';
import protobuf from 'protobufjs';
import { describe, expect, test } from 'vitest';
import { beforeImage } from '../../src/formats/codec.js';
import { FRAME_AVRO, FRAME_PROTOBUF, unframe } from '../../src/formats/framing.js';
import { commitTimeMicros } from '../../src/formats/json.js';
import { commitTimeToMicros } from '../../src/formats/temporal.js';
import {
  MESSAGE_FORMATS,
  type MessageFormat,
  avroSchemaOf,
  codecFor,
  decodeAvroMessage,
  decodeCloudEventMessage,
  decodeJsonMessage,
  decodeProtobufMessage,
  protobufDescriptorOf,
} from '../../src/formats/index.js';
import { allTypesEvents, allTypesTable, richRow } from '../fixtures/all-types.js';

/** What a consumer must get back from any format: the event minus its schema object. */
function expected(event: ChangeEvent) {
  const out: Record<string, unknown> = { op: event.op, table: qualifiedName(event.table), position: event.position };
  if (event.commitTime) out.commitTime = event.commitTime;
  if (event.unchanged?.length) out.unchanged = event.unchanged;
  const before = beforeImage(event);
  if (before) out.before = before;
  if (event.after) out.after = event.after;
  if (event.op === 'truncate')
    out.truncate = {
      cascade: event.truncate?.cascade ?? false,
      restartIdentity: event.truncate?.restartIdentity ?? false,
    };
  return out;
}

const decoders: Record<MessageFormat, (value: Uint8Array) => unknown> = {
  json: (v) => decodeJsonMessage(v, { table: allTypesTable }),
  cloudevents: (v) => decodeCloudEventMessage(v, { table: allTypesTable }),
  avro: (v) => decodeAvroMessage(v),
  protobuf: (v) => decodeProtobufMessage(v),
};

describe.each(MESSAGE_FORMATS)('%s format', (format) => {
  const codec = codecFor(format);

  test.each(allTypesEvents.map((e, i) => [`${i}:${e.op}`, e] as const))(
    'round-trips every logical type (%s)',
    (_, event) => {
      const decoded = decoders[format](codec.encode(event).value);
      expect(decoded).toEqual(expected(event));
    },
  );

  test('keeps the sign of zero and every float special', () => {
    const row = { ...richRow, f32: -0, f64: Number.NaN };
    const event: ChangeEvent = { ...allTypesEvents[0]!, after: row };
    const decoded = decoders[format](codec.encode(event).value) as { after: Record<string, number> };
    expect(Object.is(decoded.after.f32, -0)).toBe(true);
    expect(Number.isNaN(decoded.after.f64)).toBe(true);
  });

  test('matches the golden fixture (wire format is stable)', () => {
    const file = new URL(`./golden/${format}.json`, import.meta.url);
    const actual = allTypesEvents.map((e) => goldenForm(format, codec.encode(e).value, e));
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, `${JSON.stringify(actual, null, 2)}\n`);
    expect(actual).toEqual(JSON.parse(readFileSync(file, 'utf8')));
  });

  test('refuses a value that does not fit its column, naming table, column and key', () => {
    const event: ChangeEvent = { ...allTypesEvents[0]!, after: { ...richRow, i64: 12.5 } };
    let error: unknown;
    try {
      codec.encode(event);
    } catch (err) {
      error = err;
    }
    expect(NanosyncError.is(error, 'NS_K6006')).toBe(true);
    expect((error as Error).message).toContain('"public.all.types"');
    expect((error as Error).message).toContain('column "i64"');
    expect((error as Error).message).toContain('{"id":9223372036854775807}');
  });
});

/** JSON stays readable in the fixture; binary formats pin the schema and the payload bytes. */
function goldenForm(format: MessageFormat, value: Buffer, event: ChangeEvent): unknown {
  if (format === 'json') return JSON.parse(value.toString('utf8'));
  if (format === 'cloudevents') {
    const ce = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
    if (!event.commitTime) ce.time = '<now>';
    return ce;
  }
  const framed = unframe(value, format === 'avro' ? FRAME_AVRO : FRAME_PROTOBUF);
  return {
    fingerprint: framed.fingerprint,
    schema: JSON.parse(framed.schemaText),
    payload: Buffer.from(framed.payload).toString('hex'),
  };
}

describe('truncate', () => {
  const truncate: ChangeEvent = {
    table: allTypesTable,
    op: 'truncate',
    key: {},
    truncate: { cascade: false, restartIdentity: true },
    position: '0000000003000000:00000001',
    commitTime: '2026-05-01T00:00:00.000000Z',
  };

  test.each(MESSAGE_FORMATS)('%s: one message with the TRUNCATE operation, its flags and no row images', (format) => {
    const decoded = decoders[format](codecFor(format).encode(truncate).value) as Record<string, unknown>;
    expect(decoded).toEqual({
      op: 'truncate',
      table: 'public.all.types',
      position: truncate.position,
      commitTime: truncate.commitTime,
      truncate: { cascade: false, restartIdentity: true },
    });
  });

  test('json: _ns_op TRUNCATE and _ns_truncate, before and after null', () => {
    const env = JSON.parse(codecFor('json').encode(truncate).value.toString('utf8'));
    expect(env).toEqual({
      _ns_op: 'TRUNCATE',
      _ns_table: 'public.all.types',
      _ns_committed_at: Date.UTC(2026, 4, 1) * 1000,
      _ns_lsn: truncate.position,
      _ns_truncate: { cascade: false, restart_identity: true },
      before: null,
      after: null,
    });
  });

  test('cloudevents: type …TRUNCATE, no subject, flags in data', () => {
    const ce = JSON.parse(codecFor('cloudevents').encode(truncate).value.toString('utf8'));
    expect(ce.type).toBe('io.nanosync.cdc.TRUNCATE');
    expect(ce).not.toHaveProperty('subject');
    expect(ce.data).toEqual({ before: null, after: null, truncate: { cascade: false, restart_identity: true } });
  });

  test('avro: the Op enum gains TRUNCATE at its end, so older symbols keep their index', () => {
    const schema = avroSchemaOf(codecFor('avro').encode(truncate).value) as {
      fields: { name: string; type: { symbols?: string[] } }[];
    };
    expect(schema.fields[0]!.type.symbols).toEqual(['INSERT', 'UPDATE', 'DELETE', 'READ', 'TRUNCATE']);
    expect(schema.fields.at(-1)!.name).toBe('_ns_truncate');
    // Bytes written for any other operation are what the schema before TRUNCATE wrote:
    // a reader compiled from it decodes them (the trailing null `_ns_truncate` is one byte it ignores).
    const old = structuredClone(schema) as { fields: { name: string; type: unknown }[] };
    old.fields = old.fields.filter((f) => f.name !== '_ns_truncate');
    (old.fields[0]!.type as { symbols: string[] }).symbols = ['INSERT', 'UPDATE', 'DELETE', 'READ'];
    const reader = avro.Type.forSchema(old as avro.Schema, { wrapUnions: true });
    const payload = Buffer.from(unframe(codecFor('avro').encode(allTypesEvents[3]!).value, FRAME_AVRO).payload);
    const { value, offset } = reader.decode(payload, 0) as {
      value: { _ns_op: string; _ns_lsn: string };
      offset: number;
    };
    expect(value._ns_op).toBe('INSERT');
    expect(value._ns_lsn).toBe(allTypesEvents[3]!.position);
    expect(offset).toBe(payload.length - 1);
  });

  test('protobuf: Op value 5 and the Truncate message', () => {
    const descriptor = protobufDescriptorOf(codecFor('protobuf').encode(truncate).value);
    const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
    expect(root.lookupEnum('nanosync.Op').values.TRUNCATE).toBe(5);
    expect(root.lookupType('nanosync.Envelope').fields._ns_truncate?.id).toBe(9);
  });
});

describe('json envelope', () => {
  test('uses the documented field names and lossless value forms', () => {
    const env = JSON.parse(codecFor('json').encode(allTypesEvents[1]!).value.toString('utf8'));
    expect(Object.keys(env)).toEqual(['_ns_op', '_ns_table', '_ns_committed_at', '_ns_lsn', 'before', 'after']);
    expect(env._ns_op).toBe('INSERT');
    expect(env._ns_table).toBe('public.all.types');
    expect(env._ns_committed_at).toBe(Date.UTC(2026, 2, 14, 10, 22, 1) * 1000 + 456123);
    expect(env._ns_lsn).toBe('0000000001000100:00000000');
    expect(env.before).toBeNull();
    expect(env.after.f64).toBe('Infinity');
    expect(env.after.f32).toBe('-0');
    expect(env.after.dec).toBe('NaN');
    expect(env.after.i32).toBe(-2147483648);
  });

  test('commit times read from their fraction alone give the microseconds of the full parse', () => {
    // Runs of one second (as a busy stream's commits come), seconds before 1970, the last exact
    // second, and texts near the form the sources write but not in it.
    const times: string[] = [];
    for (const second of ['2026-03-14T10:22:01', '1969-12-31T23:59:59', '1970-01-01T00:00:00', '2255-06-05T23:47:34'])
      for (const fraction of ['000000', '000001', '456123', '999999']) times.push(`${second}.${fraction}Z`);
    times.push(
      '2026-03-14T10:22:01.4561Z',
      '2026-03-14T10:22:01.45612aZ',
      '2026-03-14T10:22:01.456123+',
      '2026-13-14T10:22:01.456123Z',
      '9999-12-31T23:59:59.999999Z',
      '2026-03-14T10:22:01.456123Z',
    );
    const fromFullParse = (time: string) => {
      const micros = commitTimeToMicros(time);
      return micros === undefined ? null : Number.isSafeInteger(Number(micros)) ? Number(micros) : micros.toString();
    };
    for (const time of [...times, ...[...times].reverse()])
      expect([time, commitTimeMicros(time)]).toEqual([time, fromFullParse(time)]);
    expect(commitTimeMicros('1969-12-31T23:59:59.500000Z')).toBe(-500_000);
  });

  test('each event gets its own commit time, however the commit times of consecutive events alternate', () => {
    const at = (commitTime: string | undefined) =>
      JSON.parse(
        codecFor('json')
          .encode({ ...allTypesEvents[1]!, commitTime })
          .value.toString('utf8'),
      )._ns_committed_at;
    const times = [
      '2026-03-14T10:22:01.456123Z',
      '2026-03-14T10:22:01.456123Z',
      '2026-03-14T10:22:02.000001Z',
      undefined,
      '2026-03-14T10:22:01.456123Z',
      'not a time',
      '2026-03-14T10:22:02.000001+00:00',
    ];
    const base = Date.UTC(2026, 2, 14, 10, 22, 1) * 1000;
    expect(times.map(at)).toEqual([
      base + 456123,
      base + 456123,
      base + 1_000_001,
      null,
      base + 456123,
      null,
      base + 1_000_001,
    ]);
  });

  test('int64 as string, bytes as base64, unchanged columns listed and left out', () => {
    const read = JSON.parse(codecFor('json').encode(allTypesEvents[0]!).value.toString('utf8'));
    expect(read._ns_op).toBe('READ');
    expect(read._ns_committed_at).toBeNull();
    expect(read.after.id).toBe('9223372036854775807');
    expect(read.after.raw).toBe('AAEC/f7/');
    expect(read.after.big_ints).toEqual(['9007199254740993', null, '-1']);
    const update = JSON.parse(codecFor('json').encode(allTypesEvents[2]!).value.toString('utf8'));
    expect(update._ns_unchanged).toEqual(['doc', 'raw']);
    expect(update.after).not.toHaveProperty('doc');
    expect(update.before).toEqual({ id: '2' });
  });

  test('a delete without an old image still carries the key as before', () => {
    const event: ChangeEvent = {
      table: allTypesTable,
      op: 'delete',
      key: { id: '5' },
      position: '0000000002000000:00000000',
    };
    const env = JSON.parse(codecFor('json').encode(event).value.toString('utf8'));
    expect(env).toMatchObject({ _ns_op: 'DELETE', before: { id: '5' }, after: null });
  });
});

describe('cloudevents envelope', () => {
  const codec = codecFor('cloudevents');

  test('is a valid structured CloudEvent 1.0 the SDK reads back', () => {
    const encoded = codec.encode(allTypesEvents[2]!);
    expect(encoded.headers).toEqual({ 'content-type': 'application/cloudevents+json; charset=utf-8' });
    const message = {
      key: '',
      value: encoded.value.toString('utf8'),
      body: encoded.value.toString('utf8'),
      headers: encoded.headers!,
    };
    const event = Kafka.toEvent(message as Parameters<typeof Kafka.toEvent>[0]) as CloudEvent<{
      before: unknown;
      after: unknown;
    }>;
    expect(event.specversion).toBe('1.0');
    expect(event.type).toBe('io.nanosync.cdc.UPDATE');
    expect(event.source).toBe('/nanosync/public/all.types');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.time).toBe('1999-12-31T23:59:59.000Z');
    expect(event.subject).toBe('{"id":2}');
    expect(event.data?.before).toEqual({ id: '2' });
    expect(event.validate()).toBe(true);
  });

  test('id is derived from table, position and key, so a redelivery keeps it', () => {
    const id = (e: ChangeEvent) => JSON.parse(codec.encode(e).value.toString('utf8')).id as string;
    const [a, b] = [allTypesEvents[1]!, allTypesEvents[2]!];
    expect(id(a)).toBe(id({ ...a }));
    expect(id(a)).toMatch(/^[0-9a-f]{32}$/);
    expect(id(a)).not.toBe(id(b));
    expect(id(a)).not.toBe(id({ ...a, key: { id: '99' } }));
    expect(id(a)).not.toBe(id({ ...a, position: '0000000001000100:00000001' }));
  });
});

describe('avro format', () => {
  test('embeds a standard Avro schema a plain avsc reader decodes', () => {
    const value = codecFor('avro').encode(allTypesEvents[1]!).value;
    const schema = avroSchemaOf(value) as {
      fields: { name: string }[];
      nanosync: { columns: { name: string; field: string }[] };
    };
    expect(schema.fields.map((f) => f.name)).toEqual([
      '_ns_op',
      '_ns_table',
      '_ns_committed_at',
      '_ns_lsn',
      '_ns_unchanged',
      '_ns_before_absent',
      'before',
      'after',
      '_ns_truncate',
    ]);
    const byName = Object.fromEntries(schema.nanosync.columns.map((c) => [c.name, c.field]));
    expect(byName['Odd "Name".x']).toBe('c_Odd__Name__x');
    expect(byName.constructor).toBe('c_constructor');
    const text = JSON.stringify(schema);
    for (const logical of ['"date"', '"time-micros"', '"timestamp-micros"', '"local-timestamp-micros"', '"uuid"'])
      expect(text).toContain(logical);
    // A consumer with only avsc (JS numbers for longs, fine below 2^53) reads the envelope.
    const small = codecFor('avro').encode(allTypesEvents[3]!).value;
    const plain = avro.Type.forSchema(avroSchemaOf(small) as avro.Schema, { wrapUnions: true });
    const record = plain.fromBuffer(Buffer.from(unframe(small, FRAME_AVRO).payload)) as {
      _ns_op: string;
      _ns_committed_at: { long: number };
      after: { 'io.nanosync.Row': Record<string, unknown> };
    };
    expect(record._ns_op).toBe('INSERT');
    expect(record._ns_committed_at).toEqual({ long: Date.UTC(2026, 0, 1) * 1000 });
    expect(record.after['io.nanosync.Row'].id).toEqual({ long: 3 });
    expect(record.after['io.nanosync.Row'].day).toBeNull();
  });

  test('caches the compiled schema per table schema', () => {
    const codec = codecFor('avro');
    const a = unframe(codec.encode(allTypesEvents[0]!).value, FRAME_AVRO);
    const b = unframe(codec.encode({ ...allTypesEvents[0]!, table: structuredClone(allTypesTable) }).value, FRAME_AVRO);
    expect(a.fingerprint).toBe(b.fingerprint);
    const changed = { ...allTypesTable, columns: allTypesTable.columns.slice(0, 3) };
    const c = unframe(
      codec.encode({ table: changed, op: 'insert', key: { id: '1' }, after: { id: '1' }, position: 'p' }).value,
      FRAME_AVRO,
    );
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });

  test('refuses a value that is not an Avro nanosync message', () => {
    expect(() => decodeAvroMessage(Buffer.from('{"x":1}'))).toThrow(/magic/);
    const proto = codecFor('protobuf').encode(allTypesEvents[0]!).value;
    expect(() => decodeAvroMessage(proto)).toThrow(/expected avro/);
  });
});

describe('protobuf format', () => {
  test('embeds a descriptor protobufjs loads, with optional fields for every column', () => {
    const value = codecFor('protobuf').encode(allTypesEvents[1]!).value;
    const descriptor = protobufDescriptorOf(value);
    const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
    const row = root.lookupType('nanosync.Row');
    expect(row.fieldsArray.every((f) => f.options?.proto3_optional === true)).toBe(true);
    expect(row.fields.id?.type).toBe('int64');
    expect(row.fields.day?.type).toBe('int32');
    expect(row.fields.i16?.type).toBe('int64');
    expect(row.fields.ts_tz?.type).toBe('int64');
    expect(row.fields.dec?.type).toBe('string');
    const envelope = root.lookupType('nanosync.Envelope');
    const message = envelope.toObject(envelope.decode(unframe(value, FRAME_PROTOBUF).payload), {
      longs: String,
      enums: String,
    }) as {
      _ns_op: string;
      after: { i32: number; id: string };
    };
    expect(message._ns_op).toBe('INSERT');
    expect(message.after.id).toBe('2');
    expect(message.after.i32).toBe('-2147483648'); // every integer column is int64
  });
});
