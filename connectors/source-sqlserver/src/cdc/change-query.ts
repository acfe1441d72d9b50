/**
 * The query that reads one page of change rows of one capture instance.
 *
 * Two read paths, same result:
 *  - `function` (default): `cdc.fn_cdc_get_all_changes_<instance>(@from, @to, N'all update old')`
 *    (`N'all'` without before-images), the interface Microsoft documents and keeps stable;
 *  - `change_table`: the change table `cdc.<instance>_CT` itself, filtered on
 *    `__$start_lsn` — one function call less per page, relying on the change table's
 *    documented columns.
 * Either way each page is `TOP (@limit)` rows after the last row already read, ordered by
 * (`__$start_lsn`, `__$command_id`, `__$seqval`, `__$operation`), so paging never splits or
 * skips rows of one transaction (both halves of a deferred update share an LSN and a
 * seqval and differ in command id and operation). The commit time comes from
 * `cdc.lsn_time_mapping`, joined on the start LSN.
 */
import { quoteIdent } from '../errors.js';
import { selectExpression, type MssqlColumn } from '../types/mapping.js';
import type { ChangeReadPath } from '../config.js';

export interface ChangeQueryOptions {
  /** The capture instance name (from `cdc.change_tables`). */
  instance: string;
  /** The change table's name (from the catalog, `OBJECT_NAME(change_tables.object_id)`). */
  changeTable: string;
  columns: MssqlColumn[];
  beforeImages: boolean;
  path: ChangeReadPath;
  /** Continue strictly after a row tuple (true), or after a whole LSN (false). */
  afterTuple: boolean;
}

export const CHANGE_META_COLUMNS = 5;

/**
 * Parameters: `@limit` int, `@from` / `@to` binary(10) (inclusive), `@after_lsn` binary(10),
 * and with `afterTuple` also `@after_cmd` int, `@after_seq` binary(10), `@after_op` int.
 * Result columns, by position: start_lsn, command_id, seqval, operation, commit time text,
 * then one per captured column in `columns` order.
 */
export function changePageSql(o: ChangeQueryOptions): string {
  const values = o.columns.map((c, i) => `${selectExpression(c, `c.${quoteIdent(c.name)}`)} AS [v${i}]`);
  const source =
    o.path === 'function'
      ? `cdc.${quoteIdent(`fn_cdc_get_all_changes_${o.instance}`)}(@from, @to, ${o.beforeImages ? "N'all update old'" : "N'all'"}) c`
      : `cdc.${quoteIdent(o.changeTable)} c`;
  const filters: string[] = [];
  if (o.path === 'change_table') {
    filters.push('c.__$start_lsn >= @from', 'c.__$start_lsn <= @to');
    if (!o.beforeImages) filters.push('c.__$operation <> 3');
  }
  filters.push(
    o.afterTuple
      ? '(c.__$start_lsn > @after_lsn OR (c.__$start_lsn = @after_lsn AND (c.__$command_id > @after_cmd OR (c.__$command_id = @after_cmd AND (c.__$seqval > @after_seq OR (c.__$seqval = @after_seq AND c.__$operation > @after_op))))))'
      : 'c.__$start_lsn > @after_lsn',
  );
  return `SELECT TOP (@limit) c.__$start_lsn, c.__$command_id, c.__$seqval, c.__$operation,
       CONVERT(varchar(27), m.tran_end_time, 121) AS __ns_commit_time${values.length ? `,\n       ${values.join(',\n       ')}` : ''}
  FROM ${source}
  LEFT JOIN cdc.lsn_time_mapping m ON m.start_lsn = c.__$start_lsn
 WHERE ${filters.join('\n   AND ')}
 ORDER BY c.__$start_lsn, c.__$command_id, c.__$seqval, c.__$operation`;
}

/**
 * The highest start LSN of each change table, in one statement, so that idle tables are
 * skipped without querying them one by one. Result: (instance, max_lsn).
 */
export function maxLsnPerInstanceSql(instances: { instance: string; changeTable: string }[]): string {
  return instances
    .map(
      (i, n) =>
        `SELECT @i${n} AS capture_instance, (SELECT MAX(__$start_lsn) FROM cdc.${quoteIdent(i.changeTable)}) AS max_lsn`,
    )
    .join('\nUNION ALL\n');
}

/**
 * The upper bounds of a poll, in this order: the capture job's max LSN (dummy entries with
 * `tran_id = 0x00` included: the checkpoint may advance to it when nothing changed), then
 * the highest LSN of a real transaction. Reading them in two statements in that order means
 * every real transaction at or below the first is visible to the second.
 */
export const MAX_LSN_SQL = 'SELECT sys.fn_cdc_get_max_lsn() AS max_lsn';
export const MAX_TRANSACTION_LSN_SQL = `SELECT MAX(start_lsn) AS max_lsn,
       DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) AS utc_offset_minutes
  FROM cdc.lsn_time_mapping WHERE tran_id <> 0x00`;
