import { ErrorCode, NanosyncError, type TableSchema, qualifiedName } from '@nanosync/core';
import type { BigQuerySinkConfig } from './config.js';
import { BigQueryErrorCode } from './errors.js';

/**
 * Names on the BigQuery side.
 *
 * Tables: `table_names[schema.table]` when given, else `table_id` for a one-table pipeline,
 * else `<table_prefix><schema>_<table>`. Characters BigQuery does not allow in a table name
 * become `_`. Columns keep their source name when BigQuery allows it; other characters
 * become `_`, names that start with a prefix BigQuery reserves get `c_` in front, and two
 * source columns that would land on one BigQuery name (BigQuery compares names without
 * case) stop the pipeline with an error naming both. Every identifier in generated SQL is
 * quoted with backticks, so a name never reads as SQL.
 */

const NOT_IN_TABLE_NAME = /[^\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]/gu;
const NOT_IN_COLUMN_NAME = /[^\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]/gu;
const RESERVED_COLUMN_PREFIXES = [
  '_table_',
  '_file_',
  '_partition',
  '_row_timestamp',
  '__root__',
  '_colon_',
  '_change_',
];
/** Columns the sink adds itself (append mode's changelog fields, the MERGE staging fields). */
export const SINK_COLUMN_PREFIX = '_ns_';
const MAX_COLUMN_NAME = 300;

export function tableNameFor(
  table: Pick<TableSchema, 'schema' | 'name'>,
  config: Pick<BigQuerySinkConfig, 'tableId' | 'tablePrefix' | 'tableNames'>,
): string {
  const explicit = config.tableNames[qualifiedName(table)];
  if (explicit !== undefined) return explicit;
  if (config.tableId !== undefined) return config.tableId;
  const part = (s: string) => s.replace(NOT_IN_TABLE_NAME, '_');
  return truncateUtf8(`${config.tablePrefix}${part(table.schema)}_${part(table.name)}`, 1024);
}

/** Refuses a `table_id` for several tables and two source tables mapped onto one BigQuery table. */
export function checkTableNames(
  tables: readonly TableSchema[],
  config: Pick<BigQuerySinkConfig, 'tableId' | 'tablePrefix' | 'tableNames'>,
): void {
  const unnamed = tables.filter((t) => config.tableNames[qualifiedName(t)] === undefined);
  if (config.tableId !== undefined && unnamed.length > 1) {
    throw new NanosyncError(
      ErrorCode.ConfigInvalid,
      `table_id "${config.tableId}" names one table, but the pipeline has ${unnamed.length} (${unnamed.map(qualifiedName).join(', ')}): ` +
        'use table_prefix (one table per source table), or table_names to name each',
      { retriable: false },
    );
  }
  const seen = new Map<string, string>();
  for (const table of tables) {
    const name = tableNameFor(table, config);
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      throw new NanosyncError(
        ErrorCode.ConfigInvalid,
        `source tables ${other} and ${qualifiedName(table)} would both be written to BigQuery table "${name}": name one of them in table_names`,
        { retriable: false },
      );
    }
    seen.set(name.toLowerCase(), qualifiedName(table));
  }
}

/** The BigQuery column for a source column (see the module comment). */
export function columnNameFor(source: string): string {
  let name = source.replace(NOT_IN_COLUMN_NAME, '_');
  if (name.length === 0) name = '_';
  const lower = name.toLowerCase();
  if (RESERVED_COLUMN_PREFIXES.some((p) => lower.startsWith(p))) name = `c_${name}`;
  if (/^\p{N}/u.test(name)) name = `c_${name}`;
  return truncateUtf8(name, MAX_COLUMN_NAME);
}

/** Source column → BigQuery column for a whole table; fails when two land on one name, or on a name the sink uses itself. */
export function columnNamesFor(table: TableSchema, reserved: readonly string[] = []): Map<string, string> {
  const names = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const r of reserved) owners.set(r.toLowerCase(), `(the sink's own column ${r})`);
  for (const column of table.columns) {
    const target = columnNameFor(column.name);
    const owner = owners.get(target.toLowerCase());
    if (owner !== undefined) {
      throw new NanosyncError(
        BigQueryErrorCode.BigQuerySchema,
        `table ${qualifiedName(table)}: column "${column.name}" becomes BigQuery column "${target}", which ${owner.startsWith('(') ? `is taken ${owner}` : `column "${owner}" becomes too`} ` +
          '(BigQuery compares column names without case); rename one of them at the source or leave it out with target_mappings',
        { retriable: false, details: { table: qualifiedName(table), column: column.name } },
      );
    }
    owners.set(target.toLowerCase(), column.name);
    names.set(column.name, target);
  }
  return names;
}

/** A GoogleSQL quoted identifier: backticks, with `\` and `` ` `` escaped. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;
}

/** `` `project.dataset.table` `` — one quoted path, as GoogleSQL allows for table references. */
export function quoteTablePath(projectId: string, datasetId: string, tableId: string): string {
  return quoteIdentifier(`${projectId}.${datasetId}.${tableId}`);
}

/** A GoogleSQL string literal. */
export function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
}

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch, 'utf8') > maxBytes) break;
    out += ch;
  }
  return out;
}
