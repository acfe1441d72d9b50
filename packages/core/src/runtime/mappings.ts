import type { TargetMapping, TargetMappingFilter } from '../config/types.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { ChangeEvent, LogicalType, Row, TableSchema, Value } from '../model.js';

/**
 * A sink's `target_mappings`, compiled: column projection and row filter per source table,
 * applied to events before they enter the sink's queue.
 *
 * Projection keeps the listed columns in the listed order; key columns are always kept
 * (prepended when not listed) so the sink can still address the row. The sink also sees
 * the projected `TableSchema`, so it creates its topics or tables with those columns only.
 *
 * Filter: a row is kept when every condition holds. A condition on NULL is false except
 * `is_null`. Per operation:
 * - insert, read: kept when the new row matches.
 * - update: kept when the new row matches. When it does not, the row may have left the
 *   filtered set, so a `delete` for the key is sent instead (a no-op for a sink that never
 *   had the row); it is dropped only when the old row image is complete and did not match
 *   either. When a filter column is absent from the new row (unchanged TOAST) the update
 *   is kept: the column did not change, so neither did the verdict.
 * - delete: kept unless the old row image has every filter column and does not match.
 *
 * Tables without a mapping pass through untouched (same event objects, no copies).
 */
export interface EventMapper {
  /** The events this sink should get, in order. Returns `events` itself when nothing changes. */
  mapEvents(events: ChangeEvent[]): ChangeEvent[];
  /** The schema as this sink sees it (projected). Cached per schema object. */
  mapTable(table: TableSchema): TableSchema;
}

/** Compile a sink's mappings; `undefined` when there are none (the events go through as they are). */
export function createEventMapper(mappings: readonly TargetMapping[]): EventMapper | undefined {
  if (mappings.length === 0) return undefined;
  const byTable = new Map<string, TargetMapping>();
  for (const m of mappings) byTable.set(tableKey(m.tableRef.schema, m.tableRef.name), m);
  return new CompiledMapper(byTable);
}

/**
 * Check a sink's mappings against the tables' real columns, so a misspelt column is an
 * error at start rather than a filter that silently drops every row.
 */
export function validateMappings(
  sink: string,
  mappings: readonly TargetMapping[],
  tables: readonly TableSchema[],
): void {
  for (const m of mappings) {
    const table = tables.find((t) => t.schema === m.tableRef.schema && t.name === m.tableRef.name);
    if (table === undefined) {
      throw new NanosyncError(
        ErrorCode.ConfigInvalid,
        `sink ${sink}: target_mappings names table ${m.table}, which is not one of the pipeline's source tables`,
      );
    }
    const names = new Set(table.columns.map((c) => c.name));
    const referenced = [...(m.columns ?? []), ...(m.filter ?? []).map((f) => f.column)];
    for (const column of referenced) {
      if (!names.has(column)) {
        throw new NanosyncError(
          ErrorCode.ConfigInvalid,
          `sink ${sink}: target_mappings for ${m.table} names column "${column}", which the table does not have (columns: ${[...names].join(', ')})`,
        );
      }
    }
  }
}

function tableKey(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

type Verdict = boolean | undefined;

interface CompiledTable {
  /** Projected schema; `undefined` when every column is kept. */
  projected?: TableSchema;
  /** Column names kept, in output order. */
  keep?: string[];
  keepSet?: Set<string>;
  conditions: CompiledCondition[];
}

interface CompiledCondition {
  column: string;
  test: (value: Value) => boolean;
}

class CompiledMapper implements EventMapper {
  private readonly compiled = new WeakMap<TableSchema, CompiledTable | null>();
  private lastTable: TableSchema | undefined;
  private lastCompiled: CompiledTable | null = null;

  constructor(private readonly byTable: Map<string, TargetMapping>) {}

  mapTable(table: TableSchema): TableSchema {
    return this.lookup(table)?.projected ?? table;
  }

  mapEvents(events: ChangeEvent[]): ChangeEvent[] {
    let out: ChangeEvent[] | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const compiled = this.lookup(event.table);
      const mapped = compiled === null ? event : this.mapEvent(event, compiled);
      if (out === undefined) {
        if (mapped === event) continue;
        out = events.slice(0, i);
      }
      if (mapped !== undefined) out.push(mapped);
    }
    return out ?? events;
  }

  private lookup(table: TableSchema): CompiledTable | null {
    if (table === this.lastTable) return this.lastCompiled;
    let compiled = this.compiled.get(table);
    if (compiled === undefined) {
      const mapping = this.byTable.get(tableKey(table.schema, table.name));
      compiled = mapping === undefined ? null : compileTable(table, mapping);
      this.compiled.set(table, compiled);
    }
    this.lastTable = table;
    this.lastCompiled = compiled;
    return compiled;
  }

  private mapEvent(event: ChangeEvent, table: CompiledTable): ChangeEvent | undefined {
    let op = event.op;
    if (table.conditions.length > 0) {
      switch (op) {
        case 'insert':
        case 'read':
          if (matches(table.conditions, event.after) !== true) return undefined;
          break;
        case 'update': {
          if (matches(table.conditions, event.after) === false) {
            if (matches(table.conditions, event.before) === false) return undefined;
            op = 'delete';
          }
          break;
        }
        case 'delete':
          if (matches(table.conditions, event.before) === false) return undefined;
          break;
      }
    }
    if (table.keep === undefined && op === event.op) return event;
    const mapped: ChangeEvent = { op, table: table.projected ?? event.table, key: event.key, position: event.position };
    if (event.commitTime !== undefined) mapped.commitTime = event.commitTime;
    if (event.chunk !== undefined) mapped.chunk = event.chunk;
    if (event.truncate !== undefined) mapped.truncate = event.truncate;
    if (event.before !== undefined) mapped.before = project(event.before, table);
    if (op !== 'delete') {
      if (event.after !== undefined) mapped.after = project(event.after, table);
      if (event.unchanged !== undefined) {
        const unchanged = table.keepSet ? event.unchanged.filter((c) => table.keepSet!.has(c)) : event.unchanged;
        if (unchanged.length > 0) mapped.unchanged = unchanged;
      }
    }
    return mapped;
  }
}

function project(row: Row, table: CompiledTable): Row {
  if (table.keep === undefined) return row;
  const out: Row = {};
  for (const column of table.keep) {
    if (column in row) out[column] = row[column]!;
  }
  return out;
}

/** true / false, or undefined when a filter column is absent from the row (or there is no row). */
function matches(conditions: CompiledCondition[], row: Row | undefined): Verdict {
  if (row === undefined) return undefined;
  let verdict: Verdict = true;
  for (const c of conditions) {
    if (!(c.column in row)) {
      verdict = undefined;
      continue;
    }
    if (!c.test(row[c.column]!)) return false;
  }
  return verdict;
}

function compileTable(table: TableSchema, mapping: TargetMapping): CompiledTable {
  const compiled: CompiledTable = {
    conditions: (mapping.filter ?? []).map((f) =>
      compileCondition(f, table.columns.find((c) => c.name === f.column)?.type),
    ),
  };
  if (mapping.columns !== undefined) {
    const listed = mapping.columns.filter((c) => table.columns.some((col) => col.name === c));
    const keep = [...table.keyColumns.filter((k) => !listed.includes(k)), ...listed];
    if (keep.length !== table.columns.length || keep.some((c, i) => table.columns[i]!.name !== c)) {
      compiled.keep = keep;
      compiled.keepSet = new Set(keep);
      compiled.projected = {
        ...table,
        columns: keep.map((name) => table.columns.find((c) => c.name === name)!),
      };
    }
  }
  return compiled;
}

function compileCondition(filter: TargetMappingFilter, type: LogicalType | undefined): CompiledCondition {
  const { column, op } = filter;
  const numeric =
    type?.kind === 'int64' ||
    type?.kind === 'decimal' ||
    type?.kind === 'int16' ||
    type?.kind === 'int32' ||
    type?.kind === 'float32' ||
    type?.kind === 'float64';
  const cmp = (value: Value, expected: unknown) => compareValues(value, expected, numeric);
  switch (op) {
    case 'is_null':
      return { column, test: (v) => v === null };
    case 'not_null':
      return { column, test: (v) => v !== null };
    case 'in':
    case 'not_in': {
      const list = Array.isArray(filter.value) ? filter.value : [filter.value];
      const inList = (v: Value) => v !== null && list.some((x) => cmp(v, x) === 0);
      return { column, test: op === 'in' ? inList : (v) => v !== null && !inList(v) };
    }
    default: {
      const expected = filter.value;
      const accept = {
        eq: (c: number) => c === 0,
        ne: (c: number) => c !== 0,
        gt: (c: number) => c > 0,
        gte: (c: number) => c >= 0,
        lt: (c: number) => c < 0,
        lte: (c: number) => c <= 0,
      }[op];
      return { column, test: (v) => v !== null && accept(cmp(v, expected)) };
    }
  }
}

const DECIMAL = /^[+-]?(\d+)(\.\d+)?$/;

/**
 * Order a row value against a filter value from YAML. Numbers compare as numbers, also
 * when one side is a lossless numeric string (int64, decimal): those compare digit by
 * digit, never through a lossy float. Everything else compares as text (ISO dates and
 * timestamps order correctly as text); NaN compares as text too.
 */
export function compareValues(value: Value, expected: unknown, numericColumn = false): number {
  if (typeof value === 'number' && typeof expected === 'number')
    return value < expected
      ? -1
      : value > expected
        ? 1
        : value === expected
          ? 0
          : String(value).localeCompare(String(expected));
  const a = textOf(value);
  const b = textOf(expected);
  if (
    (numericColumn || typeof value === 'number' || typeof expected === 'number' || typeof expected === 'bigint') &&
    DECIMAL.test(a) &&
    DECIMAL.test(b)
  ) {
    return compareDecimalText(a, b);
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function textOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'number' && Number.isInteger(v) && Math.abs(v) >= 1e21) return BigInt(v).toString();
  return String(v);
}

/** Compare two plain decimal strings exactly (`-12.50` vs `-12.5` → 0). */
export function compareDecimalText(a: string, b: string): number {
  const x = splitDecimal(a);
  const y = splitDecimal(b);
  if (x.zero && y.zero) return 0;
  if (x.negative !== y.negative) return x.negative ? -1 : 1;
  const sign = x.negative ? -1 : 1;
  if (x.int.length !== y.int.length) return sign * (x.int.length < y.int.length ? -1 : 1);
  if (x.int !== y.int) return sign * (x.int < y.int ? -1 : 1);
  const len = Math.max(x.frac.length, y.frac.length);
  const fx = x.frac.padEnd(len, '0');
  const fy = y.frac.padEnd(len, '0');
  return fx === fy ? 0 : sign * (fx < fy ? -1 : 1);
}

function splitDecimal(text: string): { negative: boolean; int: string; frac: string; zero: boolean } {
  const negative = text.startsWith('-');
  const body = text.replace(/^[+-]/, '');
  const dot = body.indexOf('.');
  const int = (dot < 0 ? body : body.slice(0, dot)).replace(/^0+/, '');
  const frac = dot < 0 ? '' : body.slice(dot + 1).replace(/0+$/, '');
  const zero = int === '' && frac === '';
  return { negative: negative && !zero, int, frac, zero };
}
