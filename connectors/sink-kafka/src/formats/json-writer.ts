import { type ChangeEvent, type LogicalType, type Row, type TableSchema, qualifiedName } from '@nanosync/core';
import { OP_NAMES, beforeImage } from './codec.js';
import { rowToJson } from './json-values.js';
import { commitTimeMicros, toEnvelope } from './json.js';

/**
 * The JSON envelope (json.ts) as text: the same bytes as `JSON.stringify(toEnvelope(event))`,
 * without copying each row image into a new object first. A row whose keys are the table's
 * columns in the table's order, each value already in its JSON form (integers, finite floats
 * other than -0, int64 as digit strings, booleans, strings, null), is what `rowToJson` would
 * copy it into, so it is stringified as it is; any other row (bytes, arrays, float specials,
 * bigints, `undefined`, other keys or order) is copied by `rowToJson` as before, which also
 * throws the same error for a value that does not fit its column. What the check needs of a
 * table (its columns' names and kinds, its name as JSON) is worked out once per table shape.
 *
 * Written by hand (a string built value by value, or into a buffer) the envelope took 1.5–2.4
 * times the CPU of V8's `JSON.stringify` on the S1 bench rows; skipping the copy took a third
 * off (see apps/bench/README.md, "Issue 19: Kafka path CPU, fourth pass").
 */
export function jsonEnvelopeText(event: ChangeEvent): string {
  const plan = planOf(event.table);
  const op = OP_NAMES[event.op];
  if (plan === undefined || op === undefined || typeof event.position !== 'string')
    return JSON.stringify(toEnvelope(event));
  let text = `{"_ns_op":"${op}","_ns_table":${plan.table},"_ns_committed_at":${committedAtText(
    event.commitTime,
  )},"_ns_lsn":${JSON.stringify(event.position)}`;
  if (event.unchanged?.length) text += `,"_ns_unchanged":${JSON.stringify([...event.unchanged])}`;
  else if (event.op === 'truncate')
    text += `,"_ns_truncate":{"cascade":${JSON.stringify(event.truncate?.cascade ?? false)},"restart_identity":${JSON.stringify(event.truncate?.restartIdentity ?? false)}}`;
  const before = beforeImage(event);
  text += `,"before":${before ? rowJson(plan, event.table, before) : 'null'},"after":${
    event.after ? rowJson(plan, event.table, event.after) : 'null'
  }}`;
  return text;
}

/** `_ns_committed_at`'s JSON text for an event with this commit time: microseconds (see `committedAtMicros`). */
export function committedAtText(commitTime: string | undefined): string {
  const at = commitTimeMicros(commitTime);
  return at === null ? 'null' : typeof at === 'number' ? String(at) : `"${at}"`;
}

/** What the envelope writer knows of a table shape; undefined where `toEnvelope` must write it. */
interface TablePlan {
  /** `schema.table` as a JSON string. */
  table: string;
  names: string[];
  kinds: Kind[];
}

/** Which values of a column are already their own JSON form (see `isJsonForm`). */
const Kind = { Int32: 0, Int64: 1, Float: 2, Bool: 3, Text: 4, Copied: 5 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

const plans = new WeakMap<TableSchema, TablePlan | null>();

function planOf(table: TableSchema): TablePlan | undefined {
  let plan = plans.get(table);
  if (plan === undefined) {
    plan = newPlan(table);
    plans.set(table, plan);
  }
  return plan ?? undefined;
}

function newPlan(table: TableSchema): TablePlan | null {
  const names: string[] = [];
  const kinds: Kind[] = [];
  for (const column of table.columns) {
    // `JSON.stringify` would call a row's own `toJSON`; `rowToJson` copies it as a value.
    if (typeof column.name !== 'string' || column.name === 'toJSON') return null;
    names.push(column.name);
    kinds.push(kindOf(column.type));
  }
  return { table: JSON.stringify(qualifiedName(table)), names, kinds };
}

function kindOf(type: LogicalType): Kind {
  switch (type.kind) {
    case 'int16':
    case 'int32':
      return Kind.Int32;
    case 'int64':
      return Kind.Int64;
    case 'float32':
    case 'float64':
      return Kind.Float;
    case 'bool':
      return Kind.Bool;
    case 'bytes':
    case 'array':
      return Kind.Copied;
    default:
      return Kind.Text;
  }
}

/** A row image as `JSON.stringify(rowToJson(table, row))` writes it. */
function rowJson(plan: TablePlan, table: TableSchema, row: Row): string {
  return JSON.stringify(isPlainObject(row) && isJsonForm(plan, row) ? row : rowToJson(table, row));
}

/** An object `JSON.stringify` writes key by key: no array, no `toJSON` of a class (a `Date`). */
function isPlainObject(row: unknown): boolean {
  if (typeof row !== 'object' || row === null) return false;
  const prototype = Object.getPrototypeOf(row);
  return prototype === Object.prototype || prototype === null;
}

/**
 * Whether `rowToJson` would give back the row's own keys, in the row's order, with the same
 * values: every enumerable key of the row (own or inherited, as `for…in` lists them) is a
 * column, in column order, with a value that is its own JSON form; a column the walk passes
 * over is not the row's own (a non-enumerable one would be copied).
 */
function isJsonForm(plan: TablePlan, row: Row): boolean {
  const { names, kinds } = plan;
  let j = 0;
  for (const key in row) {
    while (j < names.length && names[j] !== key) {
      if (Object.hasOwn(row, names[j]!)) return false;
      j++;
    }
    if (j === names.length) return false;
    const value = row[key];
    if (value !== null) {
      switch (kinds[j]) {
        case Kind.Int32:
          if (typeof value !== 'number' || !Number.isInteger(value)) return false;
          break;
        case Kind.Int64:
          if (typeof value !== 'string' || !INT64.test(value)) return false;
          break;
        case Kind.Float:
          if (typeof value !== 'number' || !Number.isFinite(value) || Object.is(value, -0)) return false;
          break;
        case Kind.Bool:
          if (typeof value !== 'boolean') return false;
          break;
        case Kind.Text:
          if (typeof value !== 'string') return false;
          break;
        default:
          return false;
      }
    }
    j++;
  }
  for (; j < names.length; j++) if (Object.hasOwn(row, names[j]!)) return false;
  return true;
}

/** The int64 text `int64Text` keeps as it is. */
const INT64 = /^-?\d+$/;
