import type { TableRef } from '../contract/connector.js';
import { didYouMean, type PathSegment } from './issues.js';
import { type Collector, checkKeys, describe, isPlainMap, readMap, readString, type YamlMap } from './structure.js';
import { formatTableName, parseTableName } from './table-name.js';
import { FILTER_OPS, type FilterOp, type TargetMapping, type TargetMappingFilter } from './types.js';

/** A sink's `target_mappings`: which source tables it keeps, which columns, which rows. */

export const MAPPING_KEYS = ['table', 'columns', 'filter'];
export const FILTER_KEYS = ['column', 'op', 'value'];

export function readTargetMappings(
  sink: YamlMap,
  sinkPath: PathSegment[],
  tableRefs: TableRef[] | undefined,
  out: Collector,
): TargetMapping[] | undefined {
  const list = sink.target_mappings;
  const path = [...sinkPath, 'target_mappings'];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    out.issue(path, `target_mappings must be a list, found ${describe(list)}`);
    return undefined;
  }
  const before = out.issues.length;
  const mappings: TargetMapping[] = [];
  const known = (tableRefs ?? []).map(formatTableName);
  list.forEach((item, i) => {
    const itemPath = [...path, i];
    const map = readMap(item, itemPath, 'a target mapping', out);
    if (map === undefined) return;
    checkKeys(map, MAPPING_KEYS, itemPath, out, 'a target mapping');
    const tableText = readString(map, 'table', itemPath, out, true);
    if (tableText === undefined) return;
    const parsed = parseTableName(tableText);
    if (!parsed.ok) {
      out.issue([...itemPath, 'table'], parsed.message);
      return;
    }
    const table = formatTableName(parsed.ref);
    if (tableRefs !== undefined && !known.includes(table)) {
      out.issue(
        [...itemPath, 'table'],
        `table ${table} is not one of the pipeline's source tables (${known.join(', ') || 'none'})${didYouMean(table, known)}`,
      );
      return;
    }
    if (mappings.some((m) => m.table === table)) {
      out.issue([...itemPath, 'table'], `table ${table} has more than one target mapping in this sink`);
      return;
    }
    const mapping: TargetMapping = { table, tableRef: parsed.ref };
    if (map.columns !== undefined) {
      const columns = readColumnList(map.columns, [...itemPath, 'columns'], out);
      if (columns !== undefined) mapping.columns = columns;
    }
    if (map.filter !== undefined) {
      const filter = readFilter(map.filter, [...itemPath, 'filter'], out);
      if (filter !== undefined) mapping.filter = filter;
    }
    mappings.push(mapping);
  });
  return out.issues.length > before ? undefined : mappings;
}

function readColumnList(value: unknown, path: PathSegment[], out: Collector): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    out.issue(path, `columns must be a non-empty list of column names, found ${describe(value)}`);
    return undefined;
  }
  const columns: string[] = [];
  value.forEach((column, i) => {
    if (typeof column !== 'string' || column === '') {
      out.issue([...path, i], `a column name must be a non-empty string, found ${describe(column)}`);
    } else if (columns.includes(column)) {
      out.issue([...path, i], `column "${column}" is listed more than once`);
    } else {
      columns.push(column);
    }
  });
  return columns.length === value.length ? columns : undefined;
}

function readFilter(value: unknown, path: PathSegment[], out: Collector): TargetMappingFilter[] | undefined {
  if (!Array.isArray(value)) {
    out.issue(path, `filter must be a list of { column, op, value }, found ${describe(value)}`);
    return undefined;
  }
  const conditions: TargetMappingFilter[] = [];
  value.forEach((item, i) => {
    const itemPath = [...path, i];
    const map = readMap(item, itemPath, 'a filter condition', out);
    if (map === undefined) return;
    checkKeys(map, FILTER_KEYS, itemPath, out, 'a filter condition');
    const column = readString(map, 'column', itemPath, out, true);
    const op = map.op;
    if (typeof op !== 'string' || !(FILTER_OPS as readonly string[]).includes(op)) {
      const hint = typeof op === 'string' ? didYouMean(op, FILTER_OPS) : '';
      const found = op === undefined ? 'op is required' : `found ${typeof op === 'string' ? `"${op}"` : describe(op)}`;
      const message = `op must be one of ${FILTER_OPS.join(', ')}; ${found}${hint}`;
      if (op === undefined) out.missing(itemPath, 'op', message);
      else out.issue([...itemPath, 'op'], message);
      return;
    }
    const filterOp = op as FilterOp;
    const hasValue = 'value' in map;
    if (filterOp === 'is_null' || filterOp === 'not_null') {
      if (hasValue) out.issue([...itemPath, 'value'], `op ${filterOp} takes no value`, { target: 'key' });
    } else if (!hasValue) {
      out.issue(itemPath, `op ${filterOp} needs a value`);
    } else if ((filterOp === 'in' || filterOp === 'not_in') && !Array.isArray(map.value)) {
      out.issue([...itemPath, 'value'], `op ${filterOp} needs a list value, found ${describe(map.value)}`);
    } else if (filterOp !== 'in' && filterOp !== 'not_in' && (isPlainMap(map.value) || Array.isArray(map.value))) {
      out.issue([...itemPath, 'value'], `op ${filterOp} needs a single value, found ${describe(map.value)}`);
    }
    if (column === undefined) return;
    conditions.push({ column, op: filterOp, ...(hasValue ? { value: map.value } : {}) });
  });
  return conditions.length === value.length ? conditions : undefined;
}
