/**
 * Raw stream batches (raw-changes.ts: pgoutput Insert, Update and Delete messages packed with
 * their positions and commit times) written straight into the JSON text of every value of every
 * row image (`JsonChanges`), for sinks that encode JSON from it: no event, row, field string or
 * decoded value per change on the common path.
 *
 * Change `i` is the event `createChangeDecoder` gives for the batch's message `i`, and its
 * images hold what that event's `before` and `after` hold: a key-only old tuple ('K') only the
 * replica identity's columns, a column sent as unchanged TOAST ('u') nothing (the event lists it
 * in `unchanged`). Each value's text is `jsonValueText` of the value the decoder gives. A
 * pgoutput text value is the type's output text, the same as a COPY field without COPY's
 * escapes, so the values are written by the snapshot writer's code (json-rows.ts,
 * `fastValueJson` with `copyEscapes` off, else `writeDecoded`) into the same shared buffers.
 *
 * A batch it cannot write so (a binary value, a tuple of the wrong width, a message cut short
 * or with bytes left over, a value that does not decode) gives undefined: core then decodes the
 * batch, and the decoder throws its usual error.
 */
import { JsonChangeOp, type JsonChanges, type TableSchema } from '@nanosync/core';
import {
  fastValueJson,
  grow,
  grown,
  Kind,
  kindOf,
  NULL,
  output,
  put,
  shrinkOutput,
  writeDecoded,
} from '../snapshot/json-rows.js';
import {
  KIND_NULL,
  KIND_TEXT,
  KIND_UNCHANGED,
  TAG_DELETE,
  TAG_INSERT,
  TAG_UPDATE,
  TUPLE_KEY,
  TUPLE_NEW,
  TUPLE_OLD,
} from './pgoutput.js';
import { relationCache } from './raw-changes.js';
import type { StreamRelation } from './relations.js';

/** Per relation version: how each column's text becomes JSON. */
const relationKinds = new WeakMap<StreamRelation, Kind[]>();

function kindsOf(relation: StreamRelation): Kind[] {
  let kinds = relationKinds.get(relation);
  if (kinds === undefined) {
    kinds = relation.columns.map((c) => kindOf(c.type));
    relationKinds.set(relation, kinds);
  }
  return kinds;
}

/** Per-change arrays, shared by every call like `output` (views of them are returned). */
let ops = new Uint8Array(256);
let images = new Int32Array(512);

/** Where the writer is: the batch's bytes, the output's end and the next value's index. */
interface Cursor {
  bytes: Buffer;
  at: number;
  value: number;
}

/**
 * One tuple's values at `offset` of `cursor.bytes`, appended as one image of `relation.columns`
 * values: the offset after the tuple, or -1 where the batch must be decoded instead.
 * `identityOnly`: a key tuple, of which only the identity columns are read.
 */
function writeTuple(
  cursor: Cursor,
  offset: number,
  end: number,
  relation: StreamRelation,
  identityOnly: boolean,
): number {
  const { bytes } = cursor;
  const columns = relation.columns;
  if (offset + 2 > end || bytes.readInt16BE(offset) !== columns.length) return -1;
  offset += 2;
  const kinds = kindsOf(relation);
  let out = output.text;
  let ends = output.ends;
  let at = cursor.at;
  let value = cursor.value;
  for (let c = 0; c < columns.length; c++) {
    if (offset >= end) return -1;
    const kind = bytes[offset++];
    let length = 0;
    if (kind === KIND_TEXT) {
      if (offset + 4 > end) return -1;
      length = bytes.readInt32BE(offset);
      offset += 4;
      if (length < 0 || offset + length > end) return -1;
    } else if (kind !== KIND_NULL && kind !== KIND_UNCHANGED) return -1;
    const start = offset;
    offset += length;
    if (value === ends.length) output.ends = ends = grown(ends);
    // A column the event's image leaves out has an empty text.
    if ((identityOnly && !relation.columns[c]!.isIdentity) || kind === KIND_UNCHANGED) {
      ends[value++] = at;
      continue;
    }
    if (at + length * 6 + 8 > out.length) output.text = out = grow(out, at, at + length * 6 + 8);
    if (kind === KIND_NULL) at = put(out, at, NULL);
    else {
      const from = at;
      at = fastValueJson(out, at, bytes, start, offset, kinds[c]!, false);
      if (at < 0) {
        at = writeDecoded(from, columns[c]!.type, bytes.toString('utf8', start, offset));
        if (at < 0) return -1;
        out = output.text;
      }
    }
    ends[value++] = at;
  }
  cursor.at = at;
  cursor.value = value;
  return offset;
}

/**
 * A writer of raw batches (`SourceWorkerModule.createJsonChangeWriter`). Relations are cached
 * by key as the change decoder caches them, so a change's table is the decoded event's.
 */
export function createJsonChangeWriter(): (raw: Uint8Array, setup: unknown) => JsonChanges | undefined {
  const relationsOf = relationCache();
  return (raw, setup) => {
    const relations = relationsOf(setup);
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const tables: TableSchema[] = [];
    const positions: string[] = [];
    const commitTimes: string[] = [];
    const cursor: Cursor = { bytes, at: 0, value: 0 };
    output.negativeZero = false;
    let count = 0;
    let offset = 0;
    let lastTime = '';
    let lastTimeAt = -1;
    let lastTimeLength = 0;
    while (offset < bytes.length) {
      if (offset + 4 > bytes.length) return undefined;
      const relation = relations[bytes.readUInt16LE(offset)];
      const positionLength = bytes[offset + 2]!;
      offset += 3;
      const position = bytes.toString('latin1', offset, offset + positionLength);
      offset += positionLength;
      const timeLength = bytes[offset++]!;
      // A transaction's changes share their commit time: one string while its bytes repeat.
      if (
        timeLength !== lastTimeLength ||
        lastTimeAt < 0 ||
        bytes.compare(bytes, lastTimeAt, lastTimeAt + timeLength, offset, offset + timeLength) !== 0
      ) {
        lastTime = bytes.toString('latin1', offset, offset + timeLength);
        lastTimeLength = timeLength;
      }
      lastTimeAt = offset;
      offset += timeLength;
      if (offset + 4 > bytes.length) return undefined;
      const length = bytes.readUInt32LE(offset);
      offset += 4;
      const end = offset + length;
      if (relation === undefined || end > bytes.length || length < 6) return undefined;
      if (count === ops.length) {
        const next = new Uint8Array(ops.length * 2);
        next.set(ops);
        ops = next;
      }
      if (2 * count + 2 > images.length) {
        const next = new Int32Array(images.length * 2);
        next.set(images);
        images = next;
      }
      // The message: tag, relation OID (not needed: the slot names the relation), tuples.
      const tag = bytes[offset];
      let at = offset + 5;
      let before = -1;
      let after = -1;
      if (tag === TAG_INSERT) {
        if (bytes[at++] !== TUPLE_NEW) return undefined;
        after = cursor.value;
        at = writeTuple(cursor, at, end, relation, false);
        ops[count] = JsonChangeOp.Insert;
      } else if (tag === TAG_UPDATE) {
        let kind = bytes[at++];
        if (kind === TUPLE_KEY || kind === TUPLE_OLD) {
          before = cursor.value;
          at = writeTuple(cursor, at, end, relation, kind === TUPLE_KEY);
          if (at < 0 || at >= end) return undefined;
          kind = bytes[at++];
        }
        if (kind !== TUPLE_NEW) return undefined;
        after = cursor.value;
        at = writeTuple(cursor, at, end, relation, false);
        ops[count] = JsonChangeOp.Update;
      } else if (tag === TAG_DELETE) {
        const kind = bytes[at++];
        if (kind !== TUPLE_KEY && kind !== TUPLE_OLD) return undefined;
        before = cursor.value;
        at = writeTuple(cursor, at, end, relation, kind === TUPLE_KEY);
        ops[count] = JsonChangeOp.Delete;
      } else return undefined;
      if (at !== end) return undefined;
      images[2 * count] = before;
      images[2 * count + 1] = after;
      tables.push(relation.table);
      positions.push(position);
      commitTimes.push(lastTime);
      count++;
      offset = end;
    }
    const text = output.text.subarray(0, cursor.at);
    const ends = output.ends.subarray(0, cursor.value);
    shrinkOutput();
    return {
      count,
      ops: ops.subarray(0, count),
      tables,
      positions,
      commitTimes,
      images: images.subarray(0, 2 * count),
      text,
      ends,
      negativeZero: output.negativeZero,
    };
  };
}
