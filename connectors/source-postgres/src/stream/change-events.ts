import {
  type ChangeEvent,
  NanosyncError,
  type Position,
  type Row,
  type RowMaker,
  rowMaker,
  setRowField,
  type Value,
} from '@nanosync/core';
import { formatPosition } from '../position.js';
import { decodeValue } from '../types/index.js';
import {
  type DeleteMessage,
  type InsertMessage,
  type TupleValue,
  UNCHANGED_TOAST,
  type UpdateMessage,
} from './pgoutput.js';
import type { StreamColumn, StreamRelation } from './relations.js';
import { PgErrorCode } from '../errors.js';

/** Where an event sits: its position and its transaction's commit time. */
export interface EventContext {
  position: Position;
  commitTime: string;
}

/** A column may be called "__proto__": defined, not assigned as the prototype. */
const setField = setRowField;

/** Per relation (until its next Relation message): the maker of its full rows and the array it reads. */
const fullRows = new WeakMap<StreamRelation, { make: RowMaker; values: Value[] }>();

function fullRowsOf(relation: StreamRelation): { make: RowMaker; values: Value[] } {
  let full = fullRows.get(relation);
  if (full === undefined) {
    full = { make: rowMaker(relation.columns.map((c) => c.name)), values: new Array<Value>(relation.columns.length) };
    fullRows.set(relation, full);
  }
  return full;
}

/**
 * Text values → canonical values. With `identityOnly` (a 'K' tuple) only the identity
 * columns are read: the server sends the others as NULL placeholders. Columns sent as 'u'
 * (unchanged TOAST) are left out of the row (see {@link unchangedColumns}).
 */
function decodeTuple(relation: StreamRelation, tuple: TupleValue[], context: EventContext, identityOnly: boolean): Row {
  const { columns, table } = relation;
  if (tuple.length !== columns.length) {
    throw new NanosyncError(
      PgErrorCode.PgProtocol,
      `pgoutput: a tuple of "${table.schema}"."${table.name}" has ${tuple.length} columns, its Relation message announced ${columns.length} (at ${formatPosition(context.position)})`,
    );
  }
  if (!identityOnly) {
    // Every column is in the row unless one was sent as unchanged TOAST (then the loop below).
    const { make, values } = fullRowsOf(relation);
    let i = 0;
    for (; i < columns.length; i++) {
      const value = tuple[i] as TupleValue;
      if (value === UNCHANGED_TOAST) break;
      if (value === null) values[i] = null;
      else {
        const column = columns[i] as StreamRelation['columns'][number];
        try {
          values[i] = decodeValue(column.type, value);
        } catch (err) {
          throw valueAt(err, relation, column.name, context);
        }
      }
    }
    if (i === columns.length) return make(values);
  }
  const row: Row = {};
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i] as StreamRelation['columns'][number];
    if (identityOnly && !column.isIdentity) continue;
    const value = tuple[i] as TupleValue;
    if (value === UNCHANGED_TOAST) continue;
    if (value === null) {
      setField(row, column.name, null);
    } else {
      try {
        setField(row, column.name, decodeValue(column.type, value));
      } catch (err) {
        throw valueAt(err, relation, column.name, context);
      }
    }
  }
  return row;
}

/** Names of the columns a tuple sent as 'u' (unchanged TOAST), or undefined when there is none (the usual case). */
function unchangedColumns(relation: StreamRelation, tuple: TupleValue[]): string[] | undefined {
  let unchanged: string[] | undefined;
  for (let i = 0; i < tuple.length; i++) {
    if (tuple[i] !== UNCHANGED_TOAST) continue;
    if (unchanged === undefined) unchanged = [];
    unchanged.push((relation.columns[i] as StreamColumn).name);
  }
  return unchanged;
}

function valueAt(err: unknown, relation: StreamRelation, column: string, context: EventContext): NanosyncError {
  const table = `${relation.table.schema}.${relation.table.name}`;
  const reason = err instanceof Error ? err.message : String(err);
  return new NanosyncError(
    PgErrorCode.PgValue,
    `table "${table}" column "${column}" at position ${formatPosition(context.position)}: ${reason}`,
    {
      cause: err,
      details: { table, column, position: context.position },
    },
  );
}

/** The key columns' values, from `image` or, for a column it lacks, from `fallback`. */
function keyOf(relation: StreamRelation, image: Row, fallback?: Row): Row {
  const key: Row = {};
  for (const name of relation.table.keyColumns) {
    if (Object.hasOwn(image, name)) setField(key, name, image[name] as Value);
    else if (fallback !== undefined && Object.hasOwn(fallback, name)) setField(key, name, fallback[name] as Value);
  }
  return key;
}

function baseEvent(op: ChangeEvent['op'], relation: StreamRelation, context: EventContext): ChangeEvent {
  return { op, table: relation.table, key: {}, position: context.position, commitTime: context.commitTime };
}

export function insertEvent(relation: StreamRelation, message: InsertMessage, context: EventContext): ChangeEvent {
  const event = baseEvent('insert', relation, context);
  const row = decodeTuple(relation, message.newTuple, context, false);
  event.after = row;
  event.key = keyOf(relation, row);
  return event;
}

/**
 * An update. `before` is the key-only image ('K', sent when the identity changed) or the
 * full old row ('O', REPLICA IDENTITY FULL); absent when the server sent neither. Columns
 * the server did not resend (unchanged TOAST) are listed in `unchanged` and left out of
 * `after`, never turned into NULL. The key is taken from the new row, falling back to the
 * old image for a key column that was not resent.
 */
export function updateEvent(relation: StreamRelation, message: UpdateMessage, context: EventContext): ChangeEvent {
  const event = baseEvent('update', relation, context);
  const after = decodeTuple(relation, message.newTuple, context, false);
  let before: Row | undefined;
  if (message.oldTuple) {
    before = decodeTuple(relation, message.oldTuple, context, message.oldKind === 'key');
    event.before = before;
  }
  event.after = after;
  const unchanged = unchangedColumns(relation, message.newTuple);
  if (unchanged !== undefined) event.unchanged = unchanged;
  event.key = keyOf(relation, after, before);
  return event;
}

/** A delete: `before` is the identity columns ('K') or the whole old row ('O'). */
export function deleteEvent(relation: StreamRelation, message: DeleteMessage, context: EventContext): ChangeEvent {
  const event = baseEvent('delete', relation, context);
  const before = decodeTuple(relation, message.oldTuple, context, message.oldKind === 'key');
  event.before = before;
  event.key = keyOf(relation, before);
  return event;
}
