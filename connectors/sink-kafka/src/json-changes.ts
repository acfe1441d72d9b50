/**
 * A stream batch's records from its row images' JSON text (`JsonChanges`, written by the
 * source's `createJsonChangeWriter`), for `message_format: json` without a schema registry: the
 * very framed batch (encoded.ts) the worker encoder gives for the batch's decoded events —
 * topic, key, envelope, headers, key text, size, byte for byte, record for record — without
 * events, rows or strings per record. The stream sibling of json-encoded.ts, taking the same
 * tables (json-plan.ts).
 *
 * Change `i` is event `i`. An image's empty value text is a column the event's image does not
 * have: its envelope image (`jsonEnvelopeText`) lists the columns it has, in column order, and
 * an update's `_ns_unchanged` names the ones its `after` lacks. Each value's text is
 * `jsonValueText`'s, which is what `rowToJson` writes (float `-0` included: `"-0"` both ways,
 * so `negativeZero` changes nothing here). The message key takes each key column from `after`,
 * else `before` (`messageKeyOf`: the event's `key` holds nothing else); an update with a
 * `before` whose key differs there first gets a `delete` record under the old key, with the old
 * key as its key text, and a tombstone when `tombstones` is on (sink.ts `encodeInto`), and a
 * delete its tombstone after it.
 *
 * It returns undefined, leaving the batch to the worker encoder, for a table json-plan.ts does
 * not take, a key column in neither image, an int64 key text that is not canonical, an update
 * with a `before` lacking a key column (its old key would come from the event's `key`), and
 * shapes the decoded stream does not make: an insert with a `before` or lacking a column, an
 * update without `after`, a delete without `before` (the envelope would hold its `key`) or with
 * an `after`, an unknown op, an image beyond `ends`.
 */
import {
  copyRange,
  type EncodedBatch,
  JsonChangeOp,
  type JsonChanges,
  type JsonChangesEncoder,
  putBytes,
  type TableSchema,
} from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { KEY_TEXT, NO_VALUE, NONE, putU32, STRING } from './encoded.js';
import { OP_NAMES } from './formats/codec.js';
import { commitTimeMicros } from './formats/json.js';
import { committedAtText } from './formats/json-writer.js';
import {
  asBuffer,
  bytesOf,
  FrameStrings,
  keyLength,
  planCache,
  putKey,
  type TablePlan,
  tablePlan,
} from './json-plan.js';
import { HEADER_OP, HEADER_POSITION, HEADER_TABLE } from './sink.js';

interface Plan extends TablePlan {
  /** Per op (`JsonChangeOp`): `{"_ns_op":"<OP>","_ns_table":<table>,"_ns_committed_at":` */
  heads: Uint8Array[];
  /** Per column: `"name":` */
  labels: Uint8Array[];
  /** Per column: `"name"` (in `_ns_unchanged`) */
  quoted: Uint8Array[];
  /** The `ns-table` header's share of a record's size. */
  tableHeader: number;
}

/** Per `JsonChangeOp`: the event's op (the `ns-op` header; `OP_NAMES` gives the envelope's `_ns_op`). */
const OPS = ['', 'insert', 'update', 'delete'] as const;
const LSN = bytesOf(',"_ns_lsn":');
const UNCHANGED = bytesOf(',"_ns_unchanged":[');
const BEFORE = bytesOf(',"before":');
const AFTER = bytesOf(',"after":');
const NULL = bytesOf('null');
/**
 * A record's frame bytes besides its key, value, key text and headers: index, topic, table,
 * position, chunk, flags, three lengths, size, header count.
 */
const RECORD = 20 + 1 + 4 + 4 + 4 + 4 + 2;
/** Per string header in the frame: name, kind, value. */
const HEADER = 9;

function newPlan(table: TableSchema, config: KafkaSinkConfig): Plan | null {
  const plan = tablePlan(table, config);
  if (plan === null) return null;
  const tableJson = JSON.stringify(plan.table);
  return {
    ...plan,
    heads: OPS.map((op) => bytesOf(`{"_ns_op":"${op && OP_NAMES[op]}","_ns_table":${tableJson},"_ns_committed_at":`)),
    labels: plan.names.map((n) => bytesOf(`${JSON.stringify(n)}:`)),
    quoted: plan.names.map((n) => bytesOf(JSON.stringify(n))),
    tableHeader: 8 + HEADER_TABLE.length + Buffer.byteLength(plan.table),
  };
}

/** The encoder of stream batches for a sink's config, or undefined when its records are not plain JSON. */
export function jsonChangesEncoder(config: KafkaSinkConfig): JsonChangesEncoder | undefined {
  if (config.messageFormat !== 'json' || config.schemaRegistry !== undefined) return undefined;
  const planOf = planCache((table) => newPlan(table, config));
  const times = new CommitTimesText();
  return (changes) => encode(changes, config.tombstones, planOf, times);
}

/**
 * The `_ns_committed_at` text (`committedAtText`) of a batch's commit times, back to back in one
 * buffer kept from batch to batch. A transaction's changes share one text. Microseconds since
 * 1970 that are a whole number of seconds plus a fraction are written as the second's digits
 * (made once per second: the commits of a busy stream share it) followed by the fraction's six.
 * Where a small array was made per commit time, one-change transactions made one per change.
 */
export class CommitTimesText {
  /** The texts; `start` and `length` say where the last one added is. */
  bytes: Buffer;
  start = 0;
  length = -1;
  private used = 0;
  private time: string | undefined;
  private second = -1;
  private secondDigits: Uint8Array = new Uint8Array(0);

  constructor(size = 1024) {
    this.bytes = Buffer.allocUnsafe(size);
  }

  /** Start a batch: the last one's texts are written over. */
  reset(): void {
    this.used = 0;
    this.length = -1;
  }

  /** Adds `time`'s text unless it is the one added last; `start` and `length` then say where it is. */
  add(time: string | undefined): void {
    if (this.length >= 0 && time === this.time) return;
    this.time = time;
    const micros = commitTimeMicros(time);
    if (typeof micros !== 'number' || micros < 1_000_000) {
      const text = bytesOf(committedAtText(time));
      const at = this.room(text.length); // first: it may replace `bytes`
      this.bytes.set(text, at);
      return;
    }
    const seconds = Math.floor(micros / 1_000_000);
    if (seconds !== this.second) {
      this.secondDigits = bytesOf(String(seconds));
      this.second = seconds;
    }
    const digits = this.secondDigits;
    const at = this.room(digits.length + 6);
    const out = this.bytes;
    for (let i = 0; i < digits.length; i++) out[at + i] = digits[i]!;
    let fraction = micros - seconds * 1_000_000;
    for (let i = this.used - 1; i >= at + digits.length; i--) {
      out[i] = 48 + (fraction % 10);
      fraction = Math.floor(fraction / 10);
    }
  }

  /** Room for `length` bytes after the texts so far (the buffer grows, keeping them): they become the last text. */
  private room(length: number): number {
    const at = this.used;
    if (at + length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, at + length));
      this.bytes.copy(grown, 0, 0, at);
      this.bytes = grown;
    }
    this.used = at + length;
    this.start = at;
    this.length = length;
    return at;
  }
}

/**
 * Whether `text` is its own JSON string's content, as it is: printable ASCII without `"` or `\`
 * (a stream position always is). Such a position is written between quotes, with no string made.
 */
function plainJsonText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return false;
  }
  return true;
}

/** Scratch room to compare an update's old and new keys. */
let scratch = Buffer.allocUnsafe(256);

function encode(
  changes: JsonChanges,
  tombstones: boolean,
  planOf: (table: TableSchema) => Plan | null,
  times: CommitTimesText,
): EncodedBatch | undefined {
  const { count, ops, images, ends, positions } = changes;
  const text = asBuffer(changes.text);
  const plans: Plan[] = new Array(count);
  /** Per change: where its commit time's text is in `times.bytes`, and its length. */
  const timeStarts = new Int32Array(count);
  const timeLengths = new Int32Array(count);
  /** Per change: its position as JSON text, where that is not the position between quotes. */
  const lsns: (string | undefined)[] = new Array(count);
  times.reset();
  const keys = new Int32Array(count);
  const values = new Int32Array(count);
  /** Per change: the old key's length for an update that moved its row, else -1. */
  const oldKeys = new Int32Array(count);
  const deleteValues = new Int32Array(count);
  /** Per change: its position's string number, and the position's length in UTF-8. */
  const positionNumbers = new Int32Array(count);
  const positionBytes = new Int32Array(count);
  const strings = new FrameStrings();
  const opInterned = [false, false, false, false];
  const internOp = (op: number) => {
    if (opInterned[op]) return;
    opInterned[op] = true;
    strings.intern(OPS[op]!);
  };
  let lastPlan: Plan | undefined;
  let records = 0;
  let total = 0;
  // First the length of everything, checking that each change is one this encoder writes.
  for (let i = 0; i < count; i++) {
    const op = ops[i]!;
    const plan = planOf(changes.tables[i]!);
    if (plan === null) return undefined;
    const columns = plan.names.length;
    const before = images[2 * i]!;
    const after = images[2 * i + 1]!;
    if (!imageFits(before, columns, ends) || !imageFits(after, columns, ends)) return undefined;
    const shaped =
      op === JsonChangeOp.Insert
        ? before === -1 && after >= 0 && !lacksColumn(plan, ends, after)
        : op === JsonChangeOp.Update
          ? after >= 0
          : op === JsonChangeOp.Delete && before >= 0 && after === -1;
    if (!shaped) return undefined;
    const key = after >= 0 ? keyLength(plan, text, ends, after, before) : keyLength(plan, text, ends, before, -1);
    if (key < 0) return undefined;
    let oldKey = -1;
    if (op === JsonChangeOp.Update && before >= 0) {
      const length = keyLength(plan, text, ends, before, -1);
      if (length < 0) return undefined;
      // A key that changed moves the row: a delete under the old key (and a tombstone) first.
      if (!sameKey(plan, text, ends, after, before, key, length)) oldKey = length;
    }
    const position = positions[i]!;
    const lsn = plainJsonText(position) ? undefined : JSON.stringify(position);
    times.add(changes.commitTimes[i]);
    const lsnLength = lsn === undefined ? position.length + 2 : Buffer.byteLength(lsn);
    const head = times.length + LSN.length + lsnLength + BEFORE.length + AFTER.length + 1;
    const beforeLength = before >= 0 ? imageLength(plan, ends, before) : NULL.length;
    const afterLength = after >= 0 ? imageLength(plan, ends, after) : NULL.length;
    const value = plan.heads[op]!.length + head + beforeLength + afterLength + unchangedLength(plan, ends, after);
    plans[i] = plan;
    timeStarts[i] = times.start;
    timeLengths[i] = times.length;
    lsns[i] = lsn;
    keys[i] = key;
    values[i] = value;
    oldKeys[i] = oldKey;
    // The strings, in the order `frameRecords` meets them: each record's topic, table and
    // position, then its headers' names and values. Only the first record of the batch names
    // the headers, and a change's later records name nothing new but its op.
    if (plan !== lastPlan) {
      strings.intern(plan.topic);
      strings.intern(plan.table);
      lastPlan = plan;
    }
    // A position is a change's own (only the records of one change share it): numbered
    // without a lookup, a repeat of the one before reusing its number.
    if (i > 0 && position === positions[i - 1]) {
      positionNumbers[i] = positionNumbers[i - 1]!;
      positionBytes[i] = positionBytes[i - 1]!;
    } else {
      const bytes = Buffer.byteLength(position);
      positionBytes[i] = bytes;
      positionNumbers[i] = strings.add(position, bytes);
    }
    if (i === 0) {
      strings.intern(HEADER_TABLE);
      strings.intern(HEADER_OP);
      internOp(oldKey >= 0 ? JsonChangeOp.Delete : op);
      strings.intern(HEADER_POSITION);
    }
    if (oldKey >= 0) {
      const deleteValue = plan.heads[JsonChangeOp.Delete]!.length + head + beforeLength + NULL.length;
      deleteValues[i] = deleteValue;
      internOp(JsonChangeOp.Delete);
      records++;
      total += RECORD + 2 * oldKey + deleteValue + 3 * HEADER;
      if (tombstones) {
        records++;
        total += RECORD + 2 * oldKey + 2 * HEADER;
      }
    }
    internOp(op);
    records++;
    total += RECORD + key + value + 3 * HEADER;
    if (op === JsonChangeOp.Delete && tombstones) {
      records++;
      total += RECORD + key + 2 * HEADER;
    }
  }
  total += strings.headBytes;

  const out = Buffer.allocUnsafeSlow(total);
  let at = strings.putHead(out, records);
  const u32 = (n: number) => {
    at = putU32(out, at, n);
  };
  const headerTable = strings.number(HEADER_TABLE);
  const headerOp = strings.number(HEADER_OP);
  const headerPosition = strings.number(HEADER_POSITION);
  /** The string numbers of the plan of the change being written: its topic and table. */
  let numberedPlan: Plan | undefined;
  let topicNumber = 0;
  let tableNumber = 0;
  /** A record up to its key: event index, topic, table, position, no chunk, flags. */
  const start = (i: number, position: number, flags: number) => {
    u32(i);
    u32(topicNumber);
    u32(tableNumber);
    u32(position);
    u32(NONE);
    out[at++] = flags;
  };
  /** The headers: `ns-table`, `ns-op` (not on a tombstone: `op` undefined), `ns-position`. */
  const putHeaders = (op: string | undefined, position: number) => {
    out[at++] = op === undefined ? 2 : 3; // the header count, u16
    out[at++] = 0;
    u32(headerTable);
    out[at++] = STRING;
    u32(tableNumber);
    if (op !== undefined) {
      u32(headerOp);
      out[at++] = STRING;
      u32(strings.number(op));
    }
    u32(headerPosition);
    out[at++] = STRING;
    u32(position);
  };
  const opHeader = (op: string) => 8 + HEADER_OP.length + op.length;
  /** Change `i`'s envelope with `op` and these images, at `at`. */
  const envelope = (i: number, op: JsonChangeOp, before: number, after: number) =>
    putEnvelope(
      out,
      at,
      plans[i]!,
      text,
      ends,
      op,
      times,
      timeStarts[i]!,
      timeLengths[i]!,
      lsns[i],
      positions[i]!,
      before,
      after,
    );
  let size = 0;
  for (let i = 0; i < count; i++) {
    const op = ops[i] as JsonChangeOp;
    const plan = plans[i]!;
    const before = images[2 * i]!;
    const after = images[2 * i + 1]!;
    if (plan !== numberedPlan) {
      numberedPlan = plan;
      topicNumber = strings.number(plan.topic);
      tableNumber = strings.number(plan.table);
    }
    const position = positionNumbers[i]!;
    // The size of the `ns-table` and `ns-position` headers, which every record has.
    const tableAndPosition = plan.tableHeader + 8 + HEADER_POSITION.length + positionBytes[i]!;
    const oldKey = oldKeys[i]!;
    if (oldKey >= 0) {
      // The delete under the old key, its key text the old key's.
      start(i, position, KEY_TEXT);
      u32(oldKey);
      const keyAt = at;
      at = putKey(out, at, plan, text, ends, before, -1);
      u32(deleteValues[i]!);
      at = envelope(i, JsonChangeOp.Delete, before, -1);
      u32(oldKey);
      at += out.copy(out, at, keyAt, keyAt + oldKey);
      const deleteOp = OPS[JsonChangeOp.Delete]!;
      const deleteSize = 24 + oldKey + deleteValues[i]! + tableAndPosition + opHeader(deleteOp);
      size += deleteSize;
      u32(deleteSize);
      putHeaders(deleteOp, position);
      if (tombstones) {
        start(i, position, NO_VALUE | KEY_TEXT);
        u32(oldKey);
        at += out.copy(out, at, keyAt, keyAt + oldKey);
        u32(0);
        u32(oldKey);
        at += out.copy(out, at, keyAt, keyAt + oldKey);
        size += 24 + oldKey + tableAndPosition;
        u32(24 + oldKey + tableAndPosition);
        putHeaders(undefined, position);
      }
    }
    const key = keys[i]!;
    start(i, position, 0);
    u32(key);
    const keyAt = at;
    at = after >= 0 ? putKey(out, at, plan, text, ends, after, before) : putKey(out, at, plan, text, ends, before, -1);
    u32(values[i]!);
    at = envelope(i, op, before, after);
    u32(0); // no key text: the key's own bytes name the record
    const opName = OPS[op]!;
    const recordSize = 24 + key + values[i]! + tableAndPosition + opHeader(opName);
    size += recordSize;
    u32(recordSize);
    putHeaders(opName, position);
    if (op === JsonChangeOp.Delete && tombstones) {
      start(i, position, NO_VALUE);
      u32(key);
      at += out.copy(out, at, keyAt, keyAt + key);
      u32(0);
      u32(0);
      size += 24 + key + tableAndPosition;
      u32(24 + key + tableAndPosition);
      putHeaders(undefined, position);
    }
  }
  if (at !== total) throw new Error(`kafka framing: wrote ${at} bytes, expected ${total}`);
  return { bytes: out.buffer as ArrayBuffer, records, size };
}

/** An image at `first` (-1: none) lies within `ends`. */
function imageFits(first: number, columns: number, ends: Uint32Array): boolean {
  return first === -1 || (first >= 0 && first + columns <= ends.length);
}

/** Whether the image lacks a column (its text is empty). */
function lacksColumn(plan: Plan, ends: Uint32Array, first: number): boolean {
  for (let v = first; v < first + plan.names.length; v++) if (ends[v]! === (v === 0 ? 0 : ends[v - 1]!)) return true;
  return false;
}

/** The image as `{"col":value,…}` over the columns it has: its length. */
function imageLength(plan: Plan, ends: Uint32Array, first: number): number {
  let length = 2;
  let present = 0;
  for (let c = 0; c < plan.names.length; c++) {
    const v = first + c;
    const from = v === 0 ? 0 : ends[v - 1]!;
    if (ends[v]! === from) continue;
    present++;
    length += plan.labels[c]!.length + ends[v]! - from;
  }
  return present === 0 ? length : length + present - 1;
}

/** `,"_ns_unchanged":["col",…]` for the columns `after` does not have: its length (0 without any or without `after`). */
function unchangedLength(plan: Plan, ends: Uint32Array, after: number): number {
  if (after < 0) return 0;
  let length = 0;
  let missing = 0;
  for (let c = 0; c < plan.names.length; c++) {
    const v = after + c;
    if (ends[v]! !== (v === 0 ? 0 : ends[v - 1]!)) continue;
    missing++;
    length += plan.quoted[c]!.length;
  }
  return missing === 0 ? 0 : UNCHANGED.length + length + missing;
}

/** The envelope (`jsonEnvelopeText`) of a change with these images (-1: none) into `out` at `at`. */
function putEnvelope(
  out: Buffer,
  at: number,
  plan: Plan,
  text: Buffer,
  ends: Uint32Array,
  op: JsonChangeOp,
  times: CommitTimesText,
  timeStart: number,
  timeLength: number,
  /** The position as JSON text, or undefined to write `position` between quotes (`plainJsonText`). */
  lsn: string | undefined,
  position: string,
  before: number,
  after: number,
): number {
  at = putBytes(out, at, plan.heads[op]!);
  at = copyRange(out, at, times.bytes, timeStart, timeStart + timeLength);
  at = putBytes(out, at, LSN);
  if (lsn === undefined) {
    out[at++] = 34;
    at += out.write(position, at, 'latin1');
    out[at++] = 34;
  } else at += out.write(lsn, at, 'utf8');
  if (after >= 0 && unchangedLength(plan, ends, after) > 0) {
    at = putBytes(out, at, UNCHANGED);
    let first = true;
    for (let c = 0; c < plan.names.length; c++) {
      const v = after + c;
      if (ends[v]! !== (v === 0 ? 0 : ends[v - 1]!)) continue;
      if (!first) out[at++] = 44;
      first = false;
      at = putBytes(out, at, plan.quoted[c]!);
    }
    out[at++] = 93;
  }
  at = putBytes(out, at, BEFORE);
  at = before >= 0 ? putImage(out, at, plan, text, ends, before) : putBytes(out, at, NULL);
  at = putBytes(out, at, AFTER);
  at = after >= 0 ? putImage(out, at, plan, text, ends, after) : putBytes(out, at, NULL);
  out[at++] = 125;
  return at;
}

/** The image as `{"col":value,…}` over the columns it has. */
function putImage(out: Buffer, at: number, plan: Plan, text: Buffer, ends: Uint32Array, first: number): number {
  out[at++] = 123;
  let any = false;
  for (let c = 0; c < plan.names.length; c++) {
    const v = first + c;
    const from = v === 0 ? 0 : ends[v - 1]!;
    const to = ends[v]!;
    if (to === from) continue;
    if (any) out[at++] = 44;
    any = true;
    at = putBytes(out, at, plan.labels[c]!);
    at = copyRange(out, at, text, from, to);
  }
  out[at++] = 125;
  return at;
}

/** Whether an update's new key (from `after`, else `before`) and old key (from `before`) are the same bytes. */
function sameKey(
  plan: Plan,
  text: Buffer,
  ends: Uint32Array,
  after: number,
  before: number,
  key: number,
  oldKey: number,
): boolean {
  if (key !== oldKey) return false;
  if (scratch.length < 2 * key) scratch = Buffer.allocUnsafe(2 * key);
  putKey(scratch, 0, plan, text, ends, after, before);
  putKey(scratch, key, plan, text, ends, before, -1);
  return scratch.compare(scratch, key, 2 * key, 0, key) === 0;
}
