import { decodeAvroMessage, decodeJsonMessage } from '@nanosync/sink-kafka';
import { describe, expect, it } from 'vitest';
import {
  consumeFramed,
  copyChunk,
  decodeChunk,
  decodeMessages,
  encodeFramed,
  insertMessages,
  packMessages,
  s0Position,
  s1Relation,
  s1Table,
  unpackMessages,
} from '../../src/s0-rows.js';

/** Key, value and position of every record of a framed buffer. */
function records(framed: Buffer): { key: string; value: Buffer; position: string }[] {
  const out: { key: string; value: Buffer; position: string }[] = [];
  let offset = 0;
  const field = () => {
    const length = framed.readUInt32LE(offset);
    const bytes = framed.subarray(offset + 4, offset + 4 + length);
    offset += 4 + length;
    return bytes;
  };
  while (offset < framed.length) out.push({ key: field().toString(), value: field(), position: field().toString() });
  return out;
}

describe('S0 rows', () => {
  it('decodes S1-shaped COPY text with the source decoder into snapshot events of canonical values', () => {
    const table = s1Table();
    const chunk = copyChunk(101, 50);
    expect(chunk.toString().split('\n')).toHaveLength(51);
    expect(copyChunk(101, 50).equals(chunk)).toBe(true);
    const events = decodeChunk(chunk, table, s0Position(3));
    expect(events).toHaveLength(50);
    const first = events[0]!;
    expect(first).toMatchObject({ op: 'read', key: { id: '101' }, position: s0Position(3) });
    expect(first.after).toMatchObject({ id: '101', b1: '707' });
    expect(typeof first.after!.i1).toBe('number');
    expect(typeof first.after!.f2).toBe('number');
    expect(first.after!.d1).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(Object.keys(first.after!)).toHaveLength(16);
  });

  it('frames what the Kafka codecs make of each event, and the null sink counts every record', () => {
    const table = s1Table();
    const events = decodeChunk(copyChunk(1, 20), table, s0Position(0));
    for (const format of ['json', 'avro'] as const) {
      const framed = encodeFramed(events, format);
      expect(framed.byteOffset).toBe(0);
      expect(framed.buffer.byteLength).toBe(framed.length);
      expect(consumeFramed(framed)).toEqual({ records: 20, bytes: framed.length });
      const all = records(framed);
      expect(all.map((r) => r.key)).toEqual(events.map((e) => `[${e.key.id}]`));
      expect(all.every((r) => r.position === s0Position(0))).toBe(true);
      const decoded =
        format === 'json'
          ? decodeJsonMessage(all[7]!.value, { table: table.schema })
          : decodeAvroMessage(all[7]!.value);
      expect(decoded).toMatchObject({ op: 'read', table: 'public.bench_s1', after: events[7]!.after });
    }
    expect(() => consumeFramed(encodeFramed(events, 'json').subarray(0, 30))).toThrow(/ends inside record 1/);
  });

  it('turns the rows into pgoutput Insert messages that the stream decoder reads back as the same rows', () => {
    const table = s1Table();
    const relation = s1Relation(table);
    const chunk = copyChunk(1, 30);
    const messages = insertMessages(chunk, relation.relationId, table.columns.length);
    expect(messages).toHaveLength(30);
    expect(String.fromCharCode(messages[0]![0]!)).toBe('I');
    const packed = packMessages(messages);
    const unpacked = unpackMessages(new Uint8Array(packed));
    expect(unpacked.map((m) => m.toString('hex'))).toEqual(messages.map((m) => m.toString('hex')));
    const streamed = decodeMessages(unpacked, relation, s0Position(1));
    const snapshot = decodeChunk(chunk, table, s0Position(1));
    expect(streamed.map((e) => e.op)).toEqual(new Array(30).fill('insert'));
    expect(streamed.map((e) => e.after)).toEqual(snapshot.map((e) => e.after));
    expect(streamed.map((e) => e.key)).toEqual(snapshot.map((e) => e.key));
    expect(streamed[0]!.commitTime).toBeDefined();
  });
});
