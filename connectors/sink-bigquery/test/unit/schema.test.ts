import type { LogicalType, TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { createTableSql, planSchemaChange, targetTableFor } from '../../src/schema/target-table.js';
import { allTypesTable } from '../fixtures/all-types.js';

const path = '`proj.ds.public_all_types`';

describe('BigQuery table from a TableSchema', () => {
  test('every logical type maps to the documented BigQuery type', () => {
    const target = targetTableFor(allTypesTable, 'mirror');
    const types = Object.fromEntries(
      target.fields.map((f) => [
        f.name,
        `${f.type}${f.precision !== undefined ? `(${f.precision},${f.scale})` : ''} ${f.mode}`,
      ]),
    );
    expect(types).toEqual({
      id: 'INT64 REQUIRED',
      i16: 'INT64 NULLABLE',
      i32: 'INT64 NULLABLE',
      i64: 'INT64 NULLABLE',
      f32: 'FLOAT64 NULLABLE',
      f64: 'FLOAT64 NULLABLE',
      dec_small: 'NUMERIC(12,2) NULLABLE',
      dec_big: 'BIGNUMERIC(40,20) NULLABLE',
      dec_wide: 'STRING NULLABLE',
      dec_free: 'STRING NULLABLE',
      flag: 'BOOL NULLABLE',
      txt: 'STRING NULLABLE',
      raw: 'BYTES NULLABLE',
      day: 'DATE NULLABLE',
      clock: 'TIME NULLABLE',
      clock_tz: 'STRING NULLABLE',
      ts: 'DATETIME NULLABLE',
      ts_tz: 'TIMESTAMP NULLABLE',
      span: 'STRING NULLABLE',
      uid: 'STRING NULLABLE',
      doc: 'JSON NULLABLE',
      addr: 'STRING NULLABLE',
      net: 'STRING NULLABLE',
      mac: 'STRING NULLABLE',
      cash: 'STRING NULLABLE',
      mood: 'STRING NULLABLE',
      geo: 'STRING NULLABLE',
      ints: 'INT64 REPEATED',
      big_ints: 'INT64 REPEATED',
      stamps: 'TIMESTAMP REPEATED',
      grid: 'JSON NULLABLE',
      'Odd _Name__x': 'STRING NULLABLE',
      c__CHANGE_TYPE: 'STRING NULLABLE',
    });
  });

  test('CREATE TABLE declares the key NOT ENFORCED, clusters on it and sets max_staleness', () => {
    const sql = createTableSql(targetTableFor(allTypesTable, 'mirror'), {
      projectId: 'proj',
      datasetId: 'ds',
      tableId: 'public_all_types',
      maxStalenessSeconds: 900,
    });
    expect(sql).toContain('CREATE TABLE IF NOT EXISTS `proj.ds.public_all_types` (\n  `id` INT64 NOT NULL,');
    expect(sql).toContain('`dec_small` NUMERIC(12, 2),');
    expect(sql).toContain('`ints` ARRAY<INT64>,');
    expect(sql).toContain('`Odd _Name__x` STRING,');
    expect(sql).toContain('PRIMARY KEY (`id`) NOT ENFORCED\n)');
    expect(sql).toContain('CLUSTER BY `id`');
    expect(sql).toContain("OPTIONS (max_staleness = INTERVAL '0-0 0 0:15:0' YEAR TO SECOND)");
    const noStaleness = createTableSql(targetTableFor(allTypesTable, 'mirror'), {
      projectId: 'proj',
      datasetId: 'ds',
      tableId: 't',
      maxStalenessSeconds: 0,
    });
    expect(noStaleness).not.toContain('OPTIONS');
  });

  test('a changelog is keyed by event id and partitioned by commit day, every source column nullable', () => {
    const target = targetTableFor(allTypesTable, 'changelog');
    expect(target.fields.slice(0, 5).map((f) => f.name)).toEqual([
      '_ns_event_id',
      '_ns_op',
      '_ns_position',
      '_ns_committed_at',
      '_ns_unchanged',
    ]);
    expect(target.fields.find((f) => f.name === 'id')?.mode).toBe('NULLABLE');
    const sql = createTableSql(target, { projectId: 'proj', datasetId: 'ds', tableId: 'log', maxStalenessSeconds: 0 });
    expect(sql).toContain('PRIMARY KEY (`_ns_event_id`) NOT ENFORCED');
    expect(sql).toContain('PARTITION BY DATE(`_ns_committed_at`)');
  });

  test('clustering keeps the key prefix of clusterable types, at most four', () => {
    const t: TableSchema = {
      schema: 's',
      name: 't',
      keyColumns: ['a', 'b', 'f', 'c'],
      columns: [
        ...['a', 'b', 'c'].map((name) => ({ name, type: { kind: 'string' } as LogicalType, nullable: false })),
        { name: 'f', type: { kind: 'bytes' } as LogicalType, nullable: false },
      ],
    };
    expect(targetTableFor(t, 'mirror').clustering).toEqual(['a', 'b']);
    expect(targetTableFor(t, 'mirror').primaryKey).toEqual(['a', 'b', 'f', 'c']);
  });

  test('a table without key cannot be mirrored; a json key is refused', () => {
    expect(() => targetTableFor({ ...allTypesTable, keyColumns: [] }, 'mirror')).toThrow(
      /public\.all\.types has no primary key.*write_mode: append/,
    );
    expect(() => targetTableFor({ ...allTypesTable, keyColumns: ['doc'] }, 'mirror')).toThrow(
      /key column "doc" maps to BigQuery JSON/,
    );
  });

  test('two source columns on one BigQuery name are refused, naming both', () => {
    const t: TableSchema = {
      schema: 's',
      name: 't',
      keyColumns: ['a.b'],
      columns: [
        { name: 'a.b', type: { kind: 'int32' }, nullable: false },
        { name: 'A_B', type: { kind: 'int32' }, nullable: true },
      ],
    };
    expect(() => targetTableFor(t, 'mirror')).toThrow(
      /column "A_B" becomes BigQuery column "A_B", which column "a\.b" becomes too/,
    );
  });
});

describe('schema evolution', () => {
  const base: TableSchema = {
    schema: 'public',
    name: 'orders',
    keyColumns: ['id'],
    columns: [
      { name: 'id', type: { kind: 'int64' }, nullable: false },
      { name: 'amount', type: { kind: 'decimal', precision: 10, scale: 2 }, nullable: true },
      { name: 'note', type: { kind: 'string' }, nullable: true },
    ],
  };
  const existing = [
    { name: 'id', type: 'INTEGER', mode: 'REQUIRED' },
    { name: 'amount', type: 'NUMERIC', mode: 'NULLABLE', precision: '10', scale: '2' },
    { name: 'note', type: 'STRING', mode: 'NULLABLE' },
  ];

  test('nothing to do when the table matches', () => {
    expect(planSchemaChange(targetTableFor(base, 'mirror'), existing, path).statements).toEqual([]);
  });

  test('an added column is added, nullable', () => {
    const wider = {
      ...base,
      columns: [
        ...base.columns,
        { name: 'tags', type: { kind: 'array' as const, items: { kind: 'string' as const } }, nullable: false },
      ],
    };
    const change = planSchemaChange(targetTableFor(wider, 'mirror'), existing, path);
    expect(change.statements).toEqual([`ALTER TABLE ${path} ADD COLUMN IF NOT EXISTS \`tags\` ARRAY<STRING>`]);
  });

  test('a dropped column is kept; a REQUIRED one becomes nullable', () => {
    const narrower = { ...base, columns: base.columns.filter((c) => c.name !== 'note') };
    const change = planSchemaChange(
      targetTableFor(narrower, 'mirror'),
      [...existing, { name: 'legacy', type: 'STRING', mode: 'REQUIRED' }],
      path,
    );
    expect(change.kept).toEqual(['note', 'legacy']);
    expect(change.statements).toEqual([`ALTER TABLE ${path} ALTER COLUMN \`legacy\` DROP NOT NULL`]);
  });

  test('a widening numeric change is applied, a narrowing or retyping one stops with both types', () => {
    const widened = {
      ...base,
      columns: base.columns.map((c) =>
        c.name === 'amount' ? { ...c, type: { kind: 'decimal' as const, precision: 14, scale: 4 } } : c,
      ),
    };
    expect(planSchemaChange(targetTableFor(widened, 'mirror'), existing, path).statements).toEqual([
      `ALTER TABLE ${path} ALTER COLUMN \`amount\` SET DATA TYPE NUMERIC(14, 4)`,
    ]);
    const narrowed = {
      ...base,
      columns: base.columns.map((c) =>
        c.name === 'amount' ? { ...c, type: { kind: 'decimal' as const, precision: 8, scale: 1 } } : c,
      ),
    };
    expect(() => planSchemaChange(targetTableFor(narrowed, 'mirror'), existing, path)).toThrow(
      /table public\.orders: column "amount" is NUMERIC\(10, 2\) in BigQuery but the source now has a type that maps to NUMERIC\(8, 1\)/,
    );
    const retyped = {
      ...base,
      columns: base.columns.map((c) => (c.name === 'note' ? { ...c, type: { kind: 'int32' as const } } : c)),
    };
    expect(() => planSchemaChange(targetTableFor(retyped, 'mirror'), existing, path)).toThrow(
      /column "note" is STRING in BigQuery .* maps to INT64/,
    );
  });
});
