import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { targetTableFor } from '../../src/schema/target-table.js';
import {
  CHANGE_SEQUENCE_NUMBER,
  CHANGE_TYPE,
  RowRejected,
  decodeRow,
  encodeRow,
  rowLayoutFor,
} from '../../src/write/proto-rows.js';
import { allTypesTable, richRow } from '../fixtures/all-types.js';

const goldenPath = fileURLToPath(new URL('./golden/storage-write.json', import.meta.url));
const cdcExtras = [
  { name: CHANGE_TYPE, type: 'STRING' as const, mode: 'NULLABLE' as const },
  { name: CHANGE_SEQUENCE_NUMBER, type: 'STRING' as const, mode: 'NULLABLE' as const },
];

describe('Storage Write API rows', () => {
  const layout = rowLayoutFor(targetTableFor(allTypesTable, 'mirror'), cdcExtras);
  const row = encodeRow(layout, richRow, {
    [CHANGE_TYPE]: 'UPSERT',
    [CHANGE_SEQUENCE_NUMBER]: '0000000016B3F2A8/00000002/1',
  });

  test('descriptor and encoded row match the golden fixture, field by field', () => {
    const actual = {
      descriptor: layout.descriptor,
      row: Buffer.from(row).toString('hex'),
      decoded: decodeRow(layout, row),
    };
    if (process.env.UPDATE_GOLDEN) writeFileSync(goldenPath, `${JSON.stringify(actual, null, 2)}\n`);
    const golden = JSON.parse(readFileSync(goldenPath, 'utf8'));
    expect(JSON.parse(JSON.stringify(actual))).toEqual(golden);
  });

  test('per type: a row holding only that column matches its golden bytes', () => {
    const perType: Record<string, { type: string; hex: string }> = {};
    for (const column of allTypesTable.columns) {
      const field = layout.bySource.get(column.name);
      const value = richRow[column.name];
      if (!field || value === undefined) continue;
      const image = column.name === 'id' ? { id: richRow.id as string } : { [column.name]: value };
      perType[column.name] = {
        type: `${column.type.kind} → ${field.field.type}${field.field.mode === 'REPEATED' ? '[]' : ''}`,
        hex: Buffer.from(encodeRow(layout, image)).toString('hex'),
      };
    }
    const path = goldenPath.replace('storage-write.json', 'storage-write-per-type.json');
    if (process.env.UPDATE_GOLDEN) writeFileSync(path, `${JSON.stringify(perType, null, 2)}\n`);
    expect(perType).toEqual(JSON.parse(readFileSync(path, 'utf8')));
    expect(Object.keys(perType)).toHaveLength(allTypesTable.columns.length);
  });

  test('per type: the value BigQuery receives', () => {
    const d = decodeRow(layout, row);
    const by = (column: string) => d[layout.fields.find((f) => f.column === column)?.protoName as string];
    expect(by('id')).toBe('9223372036854775807');
    expect(by('i64')).toBe('-9223372036854775808');
    expect(by('f64')).toBeNaN();
    expect(by('dec_small')).toBe('-1234567890.12');
    expect(by('dec_wide')).toBe(richRow.dec_wide);
    expect(by('dec_free')).toBe('NaN');
    expect(by('day')).toBe(-719162);
    expect(by('clock')).toBe('23:59:59.999999');
    expect(by('ts')).toBe('9999-12-31 23:59:59.999999');
    expect(by('ts_tz')).toBe('1773483721456789');
    expect(by('raw')).toEqual([0, 1, 2, 253, 254, 255]);
    expect(by('doc')).toBe(richRow.doc);
    expect(by('big_ints')).toEqual(['9007199254740993', '-1']);
    expect(by('grid')).toBe('[[1,null],[3,4]]');
    expect(by(CHANGE_TYPE)).toBe('UPSERT');
  });

  test('a column name that is not a protobuf identifier travels in the column_name option', () => {
    const odd = layout.descriptor.field.find((f) => f.options !== undefined);
    expect(odd?.options).toEqual({ '.google.cloud.bigquery.storage.v1.columnName': 'Odd _Name__x' });
    expect(odd?.name).toMatch(/^f\d+(_\d+)?$/);
  });

  test('NULL and absent columns write no field (NULL), never a default', () => {
    const d = decodeRow(layout, encodeRow(layout, { id: '1', txt: null }));
    expect(Object.keys(d)).toEqual(['id']);
  });

  test('a value BigQuery cannot hold names the source column', () => {
    try {
      encodeRow(layout, { ...richRow, day: 'infinity' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RowRejected);
      expect((err as RowRejected).column).toBe('day');
      expect((err as RowRejected).message).toMatch(/outside BigQuery's DATE range/);
    }
  });
});
