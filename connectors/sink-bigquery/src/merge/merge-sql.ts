import type { TargetTable } from '../schema/target-table.js';
import type { BigQueryField } from '../schema/types.js';
import { quoteIdentifier, quoteString } from '../naming.js';

/**
 * The staging table of a MERGE table and the MERGE statement that applies one staged batch.
 *
 * Staging rows are the folded changes of one `write()` (one per key), appended through the
 * Storage Write API with the batch id; the MERGE reads back only that batch. Appends may be
 * retried and repeated, so the MERGE still keeps one row per key (the highest `_ns_seq`).
 * Updates that left columns out carry the sorted list of those columns in `_ns_unchanged`;
 * each distinct list gets its own `WHEN MATCHED` clause that does not touch them. A row
 * that is not in the target and left columns out is not inserted (its full row arrives with
 * the snapshot); any other upsert inserts.
 */
export const STAGING_FIELDS: BigQueryField[] = [
  { name: '_ns_batch', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_seq', type: 'INT64', mode: 'REQUIRED' },
  { name: '_ns_op', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_unchanged', type: 'STRING', mode: 'REQUIRED' },
  { name: '_ns_staged_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
];

export const STAGING_OP_UPSERT = 'U';
export const STAGING_OP_DELETE = 'D';

/** The staging table that belongs to a MERGE target table. */
export function stagingTableName(targetTableId: string): string {
  return `_ns_staging_${targetTableId}`.slice(0, 1024);
}

/** Staging keeps the target's columns, all nullable (a delete carries only the key), then the staging fields. */
export function stagingTargetFor(target: TargetTable): TargetTable {
  const columns = new Map(
    [...target.columns].map(([name, mapping]) => [
      name,
      {
        ...mapping,
        field: {
          ...mapping.field,
          mode: mapping.field.mode === 'REPEATED' ? ('REPEATED' as const) : ('NULLABLE' as const),
        },
      },
    ]),
  );
  return {
    ...target,
    columns,
    fields: [...[...columns.values()].map((c) => c.field), ...STAGING_FIELDS],
    primaryKey: [],
    clustering: ['_ns_batch'],
    partitionBy: '_ns_staged_at',
  };
}

/** `CREATE TABLE IF NOT EXISTS` for a staging table: day partitions that expire after one day. */
export function createStagingTableSql(staging: TargetTable, tablePath: string): string {
  const lines = staging.fields.map((f) => {
    const type = f.mode === 'REPEATED' ? `ARRAY<${baseType(f)}>` : baseType(f);
    return `  ${quoteIdentifier(f.name)} ${type}${f.mode === 'REQUIRED' ? ' NOT NULL' : ''}`;
  });
  return (
    `CREATE TABLE IF NOT EXISTS ${tablePath} (\n${lines.join(',\n')}\n)\n` +
    `PARTITION BY DATE(${quoteIdentifier('_ns_staged_at')})\nCLUSTER BY ${quoteIdentifier('_ns_batch')}\n` +
    'OPTIONS (partition_expiration_days = 1)'
  );
}

function baseType(f: BigQueryField): string {
  return (f.type === 'NUMERIC' || f.type === 'BIGNUMERIC') && f.precision !== undefined
    ? `${f.type}(${f.precision}, ${f.scale ?? 0})`
    : f.type;
}

/** The `_ns_unchanged` value for a set of columns (BigQuery names), order-independent. */
export function unchangedTag(columns: readonly string[]): string {
  return columns.length === 0 ? '' : JSON.stringify([...columns].sort());
}

export interface MergeSqlOptions {
  targetPath: string;
  stagingPath: string;
  /** Distinct `_ns_unchanged` column sets (BigQuery names) present in the batch. */
  unchangedSets: readonly (readonly string[])[];
}

/** The MERGE for one staged batch; the batch id is the query parameter `@batch`. */
export function mergeSql(target: TargetTable, options: MergeSqlOptions): string {
  const keys = target.primaryKey;
  const columns = [...target.columns.values()].map((c) => c.field.name);
  const nonKey = columns.filter((c) => !keys.includes(c));
  const q = quoteIdentifier;
  const lines: string[] = [];
  lines.push(`MERGE ${options.targetPath} AS T`);
  lines.push('USING (');
  lines.push(`  SELECT * FROM ${options.stagingPath}`);
  lines.push(`  WHERE ${q('_ns_batch')} = @batch`);
  lines.push(
    `  QUALIFY ROW_NUMBER() OVER (PARTITION BY ${keys.map((k) => q(k)).join(', ')} ORDER BY ${q('_ns_seq')} DESC) = 1`,
  );
  lines.push(') AS S');
  lines.push(`ON ${keys.map((k) => `T.${q(k)} = S.${q(k)}`).join(' AND ')}`);
  lines.push(`WHEN MATCHED AND S.${q('_ns_op')} = '${STAGING_OP_DELETE}' THEN DELETE`);

  const sets = new Map<string, string[]>([['', []]]);
  for (const set of options.unchangedSets) sets.set(unchangedTag(set), [...set].sort());
  for (const [tag, kept] of sets) {
    const updated = nonKey.filter((c) => !kept.includes(c));
    if (updated.length === 0) continue; // every non-key column kept: nothing to change
    lines.push(
      `WHEN MATCHED AND S.${q('_ns_op')} = '${STAGING_OP_UPSERT}' AND S.${q('_ns_unchanged')} = ${quoteString(tag)} THEN UPDATE SET ` +
        updated.map((c) => `${q(c)} = S.${q(c)}`).join(', '),
    );
  }
  lines.push(
    `WHEN NOT MATCHED AND S.${q('_ns_op')} = '${STAGING_OP_UPSERT}' AND S.${q('_ns_unchanged')} = '' THEN INSERT (${columns.map((c) => q(c)).join(', ')}) ` +
      `VALUES (${columns.map((c) => `S.${q(c)}`).join(', ')})`,
  );
  return lines.join('\n');
}
