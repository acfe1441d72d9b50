import { checkNothingLost, type OracleRecord } from '@nanosync/connector-testkit/harness';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { codecFor } from '@nanosync/sink-kafka';
import { describe, expect, it } from 'vitest';
import { kafkaDecoder } from '../../src/run.js';
// scenarios.js first: it and the DDL scenarios import each other, and the list must load first.
import '../../src/scenarios.js';
import { retypedV, SHAPE } from '../../src/scenarios-chaos-ddl.js';

/** public.accounts after `ALTER COLUMN v TYPE bigint`, as the PostgreSQL source describes it. */
const retyped: TableSchema = {
  schema: 'public',
  name: 'accounts',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'v', type: { kind: 'int64' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};

// ddl-while-streaming seed 13 (Avro) reported every insert after the retype as lost: the
// writer expected `v` as a BigInt, the runner's Avro decoding gives the canonical string.
describe.each(['json', 'avro', 'protobuf'] as const)('ddl-while-streaming, %s records after the retype', (format) => {
  const event: ChangeEvent = {
    op: 'insert',
    table: retyped,
    key: { id: 1000042 },
    // int64 reaches a sink as its canonical decimal text
    after: { id: 1000042, v: '1', note: 'w7' },
    position: '0000000001A2B3C8:0000000000000000',
  };
  const decoded = kafkaDecoder(format)(codecFor(format).encode(event).value);
  const record: OracleRecord = {
    table: decoded.table,
    op: decoded.op,
    key: { id: 1000042 },
    after: decoded.after ?? null,
    position: decoded.position,
  };

  it("hold the writer's insert as it expects it", () => {
    expect(
      checkNothingLost(
        [record],
        [
          {
            table: 'public.accounts',
            op: 'insert',
            key: { id: 1000042 },
            after: { id: 1000042, v: retypedV(1), note: 'w7' },
          },
        ],
      ),
    ).toEqual([]);
  });

  it('have the new shape of v, and an int32 v has the old one', () => {
    expect(SHAPE.retype.holds(record.after!, true)).toBe(true);
    expect(SHAPE.retype.holds({ ...record.after!, v: 1 }, true)).toBe(false);
    expect(SHAPE.retype.holds({ ...record.after!, v: 1 }, false)).toBe(true);
  });
});
