import { adapt } from '@google-cloud/bigquery-storage';
import { describe, expect, test } from 'vitest';
import { targetTableFor } from '../../src/schema/target-table.js';
import { CHANGE_SEQUENCE_NUMBER, CHANGE_TYPE, rowLayoutFor } from '../../src/write/proto-rows.js';
import { allTypesTable } from '../fixtures/all-types.js';

/**
 * The sink builds its protobuf descriptors itself (so they can be golden-tested and carry
 * exactly the columns it writes). Google's own adapter derives a descriptor from a BigQuery
 * table schema; for every column the two must agree on the wire type and on REPEATED, or
 * BigQuery would read the rows differently from how they were meant.
 */
describe('our Storage Write descriptor agrees with Google’s adapter', () => {
  test('same protobuf type and repetition for every column of every type, and for the CDC pseudo-columns', () => {
    const target = targetTableFor(allTypesTable, 'mirror');
    const ours = rowLayoutFor(target, [
      { name: CHANGE_TYPE, type: 'STRING', mode: 'NULLABLE' },
      { name: CHANGE_SEQUENCE_NUMBER, type: 'STRING', mode: 'NULLABLE' },
    ]);
    const storageSchema = adapt.convertBigQuerySchemaToStorageTableSchema({
      fields: target.fields.map((f) => ({ name: f.name, type: f.type, mode: f.mode })),
    });
    const google = adapt.convertStorageSchemaToProto2Descriptor(
      storageSchema,
      'root',
      adapt.withChangeType(),
      adapt.withChangeSequenceNumber(),
    );
    const googleByColumn = new Map(
      (google.field ?? []).map((f) => [
        (f.options as Record<string, unknown> | null | undefined)?.['.google.cloud.bigquery.storage.v1.columnName'] ??
          f.name,
        { type: Number(f.type), repeated: Number(f.label) === 3 },
      ]),
    );
    const mine = new Map(
      ours.fields.map((f) => [
        f.column,
        { type: ours.descriptor.field.find((d) => d.number === f.number)?.type, repeated: f.field.mode === 'REPEATED' },
      ]),
    );
    expect(mine.size).toBe(target.fields.length + 2);
    for (const [column, shape] of mine) expect({ column, ...shape }).toEqual({ column, ...googleByColumn.get(column) });
  });
});

describe('the descriptor as the Storage Write client sends it', () => {
  test('a column name that is not a protobuf identifier survives into the encoded AppendRows request', async () => {
    const { protos } = await import('@google-cloud/bigquery-storage');
    const layout = rowLayoutFor(targetTableFor(allTypesTable, 'mirror'));
    // What managedwriter.Writer does with our descriptor before each request.
    const descriptor = new protos.google.protobuf.DescriptorProto(layout.descriptor as never).toJSON();
    const request = protos.google.cloud.bigquery.storage.v1.AppendRowsRequest.fromObject({
      writeStream: 'projects/p/datasets/d/tables/t/streams/_default',
      protoRows: { writerSchema: { protoDescriptor: descriptor }, rows: { serializedRows: [] } },
    });
    const bytes = protos.google.cloud.bigquery.storage.v1.AppendRowsRequest.encode(request).finish();
    const decoded = protos.google.cloud.bigquery.storage.v1.AppendRowsRequest.decode(bytes);
    const fields = decoded.protoRows?.writerSchema?.protoDescriptor?.field ?? [];
    const odd = fields.find(
      (f) =>
        f.name !== 'id' &&
        (f.options as Record<string, unknown> | null)?.['.google.cloud.bigquery.storage.v1.columnName'] !== undefined,
    );
    expect((odd?.options as Record<string, unknown>)['.google.cloud.bigquery.storage.v1.columnName']).toBe(
      'Odd _Name__x',
    );
    expect(fields).toHaveLength(layout.fields.length);
  });
});
