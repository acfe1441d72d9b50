import { type ReadBack, registerSinkTests } from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import { parseBigQuerySinkConfig } from '../../src/config.js';
import { tableNameFor } from '../../src/naming.js';
import { BigQuerySink } from '../../src/sink.js';
import { LIVE_SKIP, LiveDataset, liveContext } from './live-env.js';

/**
 * The connector test kit against real BigQuery, once per way of writing a table: CDC
 * upserts (the default), staging + MERGE, and the append-mode changelog. Each `target` of
 * the kit is a table prefix inside one dataset the suite creates and deletes.
 */
const unrepresentable = [
  { type: { kind: 'date' as const }, value: 'infinity', description: 'date infinity' },
  { type: { kind: 'decimal' as const, precision: 10, scale: 2 }, value: 'NaN', description: 'NaN in NUMERIC(10, 2)' },
  { type: { kind: 'time' as const }, value: '24:00:00.000000', description: 'time 24:00' },
];

for (const variant of [
  { name: 'bigquery (cdc)', properties: {} },
  { name: 'bigquery (merge)', properties: { upsert_method: 'merge', merge_interval_ms: 0 } },
  { name: 'bigquery (append)', properties: { write_mode: 'append' } },
]) {
  let live: LiveDataset | undefined;
  registerSinkTests(
    async () => {
      live = await LiveDataset.create('kit');
      const dataset = live;
      return {
        createSink: async (target) =>
          new BigQuerySink(
            parseBigQuerySinkConfig(dataset.properties({ ...variant.properties, table_prefix: `${target}_` })),
            liveContext(target),
          ),
        read: async (target, table): Promise<ReadBack> => {
          const path = `\`${dataset.projectId}.${dataset.datasetId}.${tableNameFor(table, { tablePrefix: `${target}_`, tableNames: {} })}\``;
          if (variant.properties.write_mode !== 'append')
            return { rows: (await dataset.rows(`SELECT id, note, qty FROM ${path}`)) as Row[] };
          const rows = await dataset.rows(
            `SELECT _ns_op, _ns_position, _ns_unchanged, id, note, qty FROM ${path} ORDER BY _ns_position`,
          );
          return {
            records: rows.map((r) => ({
              op: String(r._ns_op),
              key: (r._ns_op === 'truncate' ? {} : { id: Number(r.id) }) as Row,
              after:
                r._ns_op === 'delete' || r._ns_op === 'truncate'
                  ? null
                  : ({ id: Number(r.id), note: r.note ?? null, qty: r.qty === null ? null : Number(r.qty) } as Row),
              unchanged: (r._ns_unchanged as string[] | null) ?? [],
              position: String(r._ns_position),
            })),
          };
        },
        dispose: async () => {
          await live?.[Symbol.asyncDispose]();
        },
      };
    },
    { name: variant.name, skip: LIVE_SKIP, unrepresentable },
  );
}
