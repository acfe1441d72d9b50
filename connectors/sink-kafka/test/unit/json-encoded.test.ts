import {
  type ChangeEvent,
  hasNegativeZero,
  type JsonRows,
  jsonValueText,
  keyMaker,
  type Row,
  type TableSchema,
} from '@nanosync/core';
import { jsonRowsAsObjects } from '@nanosync/connector-testkit';
import { describe, expect, it } from 'vitest';
import { type KafkaSinkConfig, parseKafkaSinkConfig } from '../../src/config.js';
import type { KafkaEncoderSetup } from '../../src/sink.js';
import { createEncoder, createJsonEncoder } from '../../src/worker.js';
import { allTypesTable, nullRow, richRow, rowsOf, specialRow } from '../fixtures/all-types.js';

/**
 * The Kafka sink's encoder of snapshot chunks from their values' JSON text gives the very
 * framed batch the worker encoder gives for the chunk's `read` events (topic, key, envelope,
 * headers, size; byte for byte), for rows of every logical type and their awkward values,
 * with and without chunk ids and dropped rows, with composite keys, `primary_keys` and a
 * fixed topic; and it declines what it does not write alike.
 */

const POSITION = '0000000001000000:00000000';

/** The rows' values as `createJsonRowWriter` writes them: jsonValueText, in column order. */
function jsonRows(table: TableSchema, rows: Row[]): JsonRows {
  const parts: Buffer[] = [];
  let negativeZero = false;
  for (const row of rows)
    for (const c of table.columns) {
      parts.push(Buffer.from(jsonValueText(row[c.name]), 'utf8'));
      negativeZero ||= hasNegativeZero(row[c.name]);
    }
  const ends = new Uint32Array(parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    at += p.length;
    ends[i] = at;
  });
  return { rows: rows.length, columns: table.columns.length, text: Buffer.concat(parts), ends, negativeZero };
}

/** What core's readEvents makes of the rows. */
function readEvents(table: TableSchema, rows: Row[], chunk: string | undefined, keep?: Uint8Array): ChangeEvent[] {
  const key = keyMaker(table.keyColumns);
  const events: ChangeEvent[] = [];
  rows.forEach((row, i) => {
    if (keep !== undefined && keep[i] !== 1) return;
    const event: ChangeEvent = { op: 'read', table, key: key(row), after: row, position: POSITION };
    if (chunk !== undefined) event.chunk = chunk;
    events.push(event);
  });
  return events;
}

function setupOf(config: KafkaSinkConfig): KafkaEncoderSetup {
  return { config, compacted: [], registryIds: [] };
}

const json = parseKafkaSinkConfig({ brokers: 'b:9092', topic_prefix: 'w.', message_format: 'json' });

async function expectSameBytes(
  setup: KafkaEncoderSetup,
  table: TableSchema,
  rows: Row[],
  chunk: string | undefined,
  keep?: Uint8Array,
): Promise<void> {
  const expected = await createEncoder(setup)(readEvents(table, rows, chunk, keep));
  const values = jsonRows(table, rows);
  // The values alone, and the rows written as objects (JsonRows.starts).
  for (const form of [
    values,
    jsonRowsAsObjects(
      values,
      table.columns.map((c) => c.name),
    ),
  ]) {
    const got = createJsonEncoder(setup)!(table, form, POSITION, chunk, keep);
    expect(got).toBeDefined();
    expect(Buffer.from(got!.bytes).equals(Buffer.from(expected.bytes))).toBe(true);
    expect(got!.records).toBe(expected.records);
    expect(got!.size).toBe(expected.size);
  }
}

describe('Kafka sink: chunks encoded from their values’ JSON text', () => {
  it('gives the framed batch the worker encoder gives for the chunk’s read events', async () => {
    for (const n of [0, 1, 3, 40]) {
      const rows = rowsOf(n);
      for (const chunk of [undefined, 'public.all_types/0/5']) {
        await expectSameBytes(setupOf(json), allTypesTable, rows, chunk);
        await expectSameBytes(
          setupOf(json),
          allTypesTable,
          rows,
          chunk,
          Uint8Array.from(rows.map((_, i) => (i % 3 === 0 ? 0 : 1))),
        );
      }
    }
  });

  it('with composite keys of several kinds, primary_keys, and one topic for every table', async () => {
    const rows = rowsOf(12);
    const composite: TableSchema = { ...allTypesTable, keyColumns: ['i32', 'txt', 'flag', 'raw', 'day', 'i64'] };
    await expectSameBytes(setupOf(json), composite, rows, 'c/1');
    await expectSameBytes(setupOf({ ...json, primaryKeys: ['uid', 'id'] }), allTypesTable, rows, 'c/1');
    const oneTopic = parseKafkaSinkConfig({ brokers: 'b:9092', topic: 'everything', message_format: 'json' });
    await expectSameBytes(setupOf(oneTopic), allTypesTable, rows, undefined);
  });

  it('declines other formats, keys whose canonical text differs, odd column names and non-canonical int64 keys', () => {
    for (const message_format of ['avro', 'protobuf', 'cloudevents']) {
      const config = parseKafkaSinkConfig({ brokers: 'b:9092', message_format });
      expect(createJsonEncoder(setupOf(config))).toBeUndefined();
    }
    const encode = createJsonEncoder(setupOf(json))!;
    const rows = rowsOf(3);
    for (const keyColumns of [['dec'], ['f64'], ['ints'], []]) {
      const table: TableSchema = { ...allTypesTable, keyColumns };
      expect(encode(table, jsonRows(table, rows), POSITION, undefined, undefined), keyColumns.join()).toBeUndefined();
    }
    for (const odd of ['0', '12', '__proto__', 'toJSON']) {
      const table: TableSchema = {
        ...allTypesTable,
        columns: [...allTypesTable.columns, { name: odd, type: { kind: 'string' }, nullable: true }],
      };
      const withOdd = rows.map((r) => ({ ...r, [odd]: 'x' }));
      expect(encode(table, jsonRows(table, withOdd), POSITION, undefined, undefined), odd).toBeUndefined();
    }
    const leadingZero = [{ ...richRow, id: '007' }];
    const zeroRows = jsonRows(allTypesTable, leadingZero);
    expect(encode(allTypesTable, zeroRows, POSITION, undefined, undefined)).toBeUndefined();
    const names = allTypesTable.columns.map((c) => c.name);
    expect(encode(allTypesTable, jsonRowsAsObjects(zeroRows, names), POSITION, undefined, undefined)).toBeUndefined();
  });
});
