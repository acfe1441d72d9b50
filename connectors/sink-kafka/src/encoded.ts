/**
 * Records encoded in a worker thread (`Sink.writeEncoded`): the framing between the worker
 * encoder (`./worker`) and the sink on the main thread. Private to this sink; both sides are
 * built from this file, so they always agree.
 *
 * One buffer per batch, little-endian:
 *
 *   u32 MAGIC, u32 string count, per string: u32 byte length + UTF-8
 *   u32 record count, per record:
 *     u32 event index (in the batch's events), u32 topic, u32 table, u32 position, u32 chunk
 *       (string numbers; chunk NONE when the event has none), u8 flags (READ, NO_KEY, NO_VALUE, KEY_TEXT)
 *     u32 key length + bytes, u32 value length + bytes, u32 key text length + UTF-8 (0 without KEY_TEXT)
 *     u32 size (what the record counts against max_bytes_in_flight)
 *     u16 header count, per header (in the record's order): u32 name (string number),
 *       u8 kind (UNDEFINED, STRING: u32 string number, BYTES: u32 length + bytes)
 *
 * Strings that repeat from record to record (topics, table names, header names, ops, a
 * snapshot's position and chunk) are stored once; on the main thread the records are views
 * into the one buffer, their repeated strings shared, and a record's own key text (only the
 * registry formats have one; it names a record in an error) is read only when asked for.
 */
import type { ChangeEvent } from '@nanosync/core';
import type { OutgoingMessage, RecordHeaders } from './producer.js';

// Exported for the encoders that write this framing from JSON text (json-encoded.ts, json-changes.ts).
export const MAGIC = 0x314b534e; // "NSK1"
/** The chunk of a record whose event has none. */
export const NONE = 0xffffffff;
/** Record flags. */
export const READ = 1;
const NO_KEY = 2;
export const NO_VALUE = 4;
/** The record has a key text of its own (else its key bytes are its text, `messageKeyText`). */
export const KEY_TEXT = 8;
/** Header kinds. */
export const UNDEFINED = 0;
export const STRING = 1;
export const BYTES = 2;

/** A record read back from a framed batch, with what exactly_once needs to skip replays. */
export interface FramedRecord extends OutgoingMessage {
  event: number;
  /** The position of the event it came from. */
  position: string;
  /** The event was a snapshot row (`read`). */
  read: boolean;
  /** The event's snapshot chunk, if any. */
  chunk: string | undefined;
}

/** The records `encode` produced for `events`, framed in one buffer of its own (movable between threads). */
export function frameRecords(records: readonly OutgoingMessage[], events: readonly ChangeEvent[]): Buffer {
  const strings = new Map<string, number>();
  const list: string[] = [];
  let stringBytes = 0;
  const intern = (s: string): number => {
    let n = strings.get(s);
    if (n === undefined) {
      n = list.length;
      strings.set(s, n);
      list.push(s);
      stringBytes += 4 + Buffer.byteLength(s);
    }
    return n;
  };
  let total = 12;
  for (const record of records) {
    const event = events[record.event ?? 0]!;
    intern(record.topic);
    intern(record.table);
    intern(event.position);
    if (event.chunk !== undefined) intern(event.chunk);
    total += 21 + 4 + (record.key?.length ?? 0) + 4 + (record.value?.length ?? 0) + 4;
    total += (record.keyText === undefined ? 0 : Buffer.byteLength(record.keyText)) + 4 + 2;
    const headers = record.headers;
    for (const name in headers) {
      intern(name);
      const v = headers[name];
      total += 5;
      if (typeof v === 'string') {
        intern(v);
        total += 4;
      } else if (v !== undefined) total += 4 + v.length;
    }
  }
  total += stringBytes;
  // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so it can be moved.
  const out = Buffer.allocUnsafeSlow(total);
  let at = 0;
  const u32 = (n: number) => {
    at = putU32(out, at, n);
  };
  const bytes = (b: Uint8Array) => {
    u32(b.length);
    out.set(b, at);
    at += b.length;
  };
  const text = (s: string) => {
    const length = out.write(s, at + 4, 'utf8');
    u32(length);
    at += length;
  };
  u32(MAGIC);
  u32(list.length);
  for (const s of list) text(s);
  u32(records.length);
  for (const record of records) {
    const index = record.event ?? 0;
    const event = events[index]!;
    u32(index);
    u32(strings.get(record.topic)!);
    u32(strings.get(record.table)!);
    u32(strings.get(event.position)!);
    u32(event.chunk === undefined ? NONE : strings.get(event.chunk)!);
    out[at++] =
      (event.op === 'read' ? READ : 0) |
      (record.key ? 0 : NO_KEY) |
      (record.value ? 0 : NO_VALUE) |
      (record.keyText === undefined ? 0 : KEY_TEXT);
    bytes(record.key ?? EMPTY);
    bytes(record.value ?? EMPTY);
    if (record.keyText === undefined) u32(0);
    else text(record.keyText);
    u32(record.size);
    const headers = record.headers;
    const countAt = at;
    at += 2;
    let count = 0;
    for (const name in headers) {
      count++;
      u32(strings.get(name)!);
      const v = headers[name];
      if (v === undefined) out[at++] = UNDEFINED;
      else if (typeof v === 'string') {
        out[at++] = STRING;
        u32(strings.get(v)!);
      } else {
        out[at++] = BYTES;
        bytes(v);
      }
    }
    out.writeUInt16LE(count, countAt);
  }
  if (at !== total) throw new Error(`kafka framing: wrote ${at} bytes, expected ${total}`);
  return out;
}

const EMPTY = new Uint8Array(0);

/** A framed batch's bytes and its string table, read as far as asked (shared by its records). */
export class FrameStrings {
  private readonly cache: (string | undefined)[];
  constructor(
    readonly bytes: Buffer,
    /** Each string's first byte and byte length in `bytes`. */
    readonly starts: Int32Array,
    readonly lengths: Int32Array,
  ) {
    this.cache = new Array(starts.length);
  }

  get(n: number): string {
    let s = this.cache[n];
    if (s === undefined) {
      const start = this.starts[n]!;
      s = this.bytes.toString('utf8', start, start + this.lengths[n]!);
      this.cache[n] = s;
    }
    return s;
  }
}

/**
 * A record of a framed batch: offsets into the batch's bytes, with what the sink reads of every
 * record (topic, table, size, event, snapshot row, chunk) at hand. The key, value, headers and
 * position are made from the bytes when asked for; the producer's packs of records
 * (packed-records.ts) copy key, value and headers from the bytes without asking.
 */
export class Framed implements FramedRecord {
  constructor(
    readonly topic: string,
    readonly table: string,
    readonly size: number,
    readonly event: number,
    readonly read: boolean,
    readonly chunk: string | undefined,
    readonly frame: FrameStrings,
    private readonly positionRef: number,
    /** Key and value: first byte and length in the frame's bytes; length -1 for none (null). */
    readonly keyAt: number,
    readonly keyLength: number,
    readonly valueAt: number,
    readonly valueLength: number,
    /** Where the header count (u16) and the headers start in the frame's bytes. */
    readonly headersAt: number,
    private readonly keyTextAt: number,
    private readonly keyTextLength: number,
  ) {}

  get position(): string {
    return this.frame.get(this.positionRef);
  }

  get key(): Buffer | null {
    return this.keyLength < 0 ? null : this.frame.bytes.subarray(this.keyAt, this.keyAt + this.keyLength);
  }

  get value(): Buffer | null {
    return this.valueLength < 0 ? null : this.frame.bytes.subarray(this.valueAt, this.valueAt + this.valueLength);
  }

  get headers(): RecordHeaders {
    const { bytes } = this.frame;
    let at = this.headersAt;
    const count = bytes[at]! | (bytes[at + 1]! << 8);
    at += 2;
    const headers: RecordHeaders = {};
    for (let h = 0; h < count; h++) {
      const name = this.frame.get(getU32(bytes, at));
      const kind = bytes[at + 4];
      at += 5;
      if (kind === STRING) {
        headers[name] = this.frame.get(getU32(bytes, at));
        at += 4;
      } else if (kind === BYTES) {
        const length = getU32(bytes, at);
        headers[name] = bytes.subarray(at + 4, at + 4 + length);
        at += 4 + length;
      } else headers[name] = undefined;
    }
    return headers;
  }

  get keyText(): string | undefined {
    return this.keyTextAt < 0
      ? undefined
      : this.frame.bytes.toString('utf8', this.keyTextAt, this.keyTextAt + this.keyTextLength);
  }
}

/**
 * The records of a framed batch (views into `bytes`, which must stay untouched while they are
 * used), appended to `into` when given; `eventOffset` is added to each record's event index (a
 * batch written after others in one write: its events come after theirs). Every record is
 * checked to lie within the bytes and to name strings the batch holds.
 */
export function unframeRecords(
  bytes: ArrayBuffer | Uint8Array,
  into: FramedRecord[] = [],
  eventOffset = 0,
): FramedRecord[] {
  const framed = readFramed([bytes], [eventOffset]);
  for (let i = 0; i < framed.length; i++) into.push(framed.record(i));
  return into;
}

// A record's numbers in `FramedRecords.fields`, STRIDE of them per record.
const FRAME = 0;
const EVENT = 1;
const TOPIC = 2;
const TABLE = 3;
const POSITION = 4;
const CHUNK = 5;
const FLAGS = 6;
const KEY_AT = 7;
const KEY_LENGTH = 8;
const VALUE_AT = 9;
const VALUE_LENGTH = 10;
const HEADERS_AT = 11;
const KEY_TEXT_AT = 12;
const KEY_TEXT_LENGTH = 13;
const SIZE = 14;
const STRIDE = 15;

/**
 * The records of one write's framed batches, in order, as numbers in one typed array (no
 * object per record): what the producer's packs copy from (a `FramedRun` of them, packed-records.ts). A
 * record becomes a `Framed` object only where one is asked for (`record`): exactly_once's
 * skipping, an error naming a record, a send through the client's own encoder.
 */
export class FramedRecords {
  constructor(
    /** Each batch's bytes and strings. */
    readonly frames: readonly FrameStrings[],
    /** STRIDE numbers per record (see the constants above); -1 for none. */
    readonly fields: Int32Array,
    readonly length: number,
  ) {}

  /** What record `i` counts against `max_bytes_in_flight`. */
  size(i: number): number {
    return this.fields[i * STRIDE + SIZE]!;
  }

  /** The first record made from event `event`, or -1. */
  indexOfEvent(event: number): number {
    for (let i = 0; i < this.length; i++) if (this.fields[i * STRIDE + EVENT] === event) return i;
    return -1;
  }

  frameOf(i: number): FrameStrings {
    return this.frames[this.fields[i * STRIDE + FRAME]!]!;
  }

  topic(i: number): string {
    return this.frameOf(i).get(this.fields[i * STRIDE + TOPIC]!);
  }

  keyAt(i: number): number {
    return this.fields[i * STRIDE + KEY_AT]!;
  }

  /** -1: no key (null). */
  keyLength(i: number): number {
    return this.fields[i * STRIDE + KEY_LENGTH]!;
  }

  valueAt(i: number): number {
    return this.fields[i * STRIDE + VALUE_AT]!;
  }

  /** -1: no value (null). */
  valueLength(i: number): number {
    return this.fields[i * STRIDE + VALUE_LENGTH]!;
  }

  headersAt(i: number): number {
    return this.fields[i * STRIDE + HEADERS_AT]!;
  }

  /** Record `i` as an object (a view into its batch's bytes). */
  record(i: number): Framed {
    const f = this.fields;
    const o = i * STRIDE;
    const frame = this.frames[f[o + FRAME]!]!;
    const chunk = f[o + CHUNK]!;
    return new Framed(
      frame.get(f[o + TOPIC]!),
      frame.get(f[o + TABLE]!),
      f[o + SIZE]!,
      f[o + EVENT]!,
      (f[o + FLAGS]! & READ) !== 0,
      chunk < 0 ? undefined : frame.get(chunk),
      frame,
      f[o + POSITION]!,
      f[o + KEY_AT]!,
      f[o + KEY_LENGTH]!,
      f[o + VALUE_AT]!,
      f[o + VALUE_LENGTH]!,
      f[o + HEADERS_AT]!,
      f[o + KEY_TEXT_AT]!,
      f[o + KEY_TEXT_LENGTH]!,
    );
  }

  /** Every record as an object. */
  records(): FramedRecord[] {
    const out: FramedRecord[] = new Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.record(i);
    return out;
  }
}

/** A framed batch's string table read, and where its records start. */
interface FrameHead {
  buf: Buffer;
  frame: FrameStrings;
  count: number;
  at: number;
}

/** Reads a framed batch's strings and record count; fails on bytes that are not one. */
function readHead(bytes: ArrayBuffer | Uint8Array): FrameHead {
  const buf =
    bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : Buffer.from(bytes);
  const r = new BatchReader(buf, 0);
  if (r.u32() !== MAGIC) malformed('not a framed batch of this sink', r.at, buf);
  const stringCount = r.u32();
  if (stringCount * 4 > buf.length) malformed('string count past the end', r.at, buf);
  const starts = new Int32Array(stringCount);
  const lengths = new Int32Array(stringCount);
  for (let i = 0; i < stringCount; i++) {
    const length = r.u32();
    starts[i] = r.skip(length);
    lengths[i] = length;
  }
  const count = r.u32();
  // Every record takes at least 39 bytes: a count past that is not this framing.
  if (count * 39 > buf.length - r.at) malformed('record count past the end', r.at, buf);
  return { buf, frame: new FrameStrings(buf, starts, lengths), count, at: r.at };
}

/** Reads a batch's head field by field, each checked to lie within its bytes. */
class BatchReader {
  constructor(
    readonly buf: Buffer,
    public at: number,
  ) {}

  u32(): number {
    const buf = this.buf;
    const at = this.at;
    if (at + 4 > buf.length) malformed('ends early', at, buf);
    this.at = at + 4;
    return getU32(buf, at);
  }

  /** Skips `length` bytes, returning where they start. */
  skip(length: number): number {
    const start = this.at;
    if (start + length > this.buf.length) malformed('ends early', start, this.buf);
    this.at = start + length;
    return start;
  }
}

/**
 * The little-endian u32 at `at` (in bounds: the caller checked). Read byte by byte:
 * `Buffer#readUInt32LE` was not inlined into the record loops and cost more than the loop
 * around it; the same for `putU32` (apps/bench/README.md, "The framing's integers byte by byte").
 */
export function getU32(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16)) + buf[at + 3]! * 0x1000000;
}

/** Writes `n` (0 to 2^32 − 1) little-endian at `at` (in bounds: the caller sized the buffer); returns the end. */
export function putU32(buf: Uint8Array, at: number, n: number): number {
  buf[at] = n;
  buf[at + 1] = n >>> 8;
  buf[at + 2] = n >>> 16;
  buf[at + 3] = n >>> 24;
  return at + 4;
}

function malformed(what: string, at: number, buf: Buffer): never {
  throw new Error(`kafka framing: malformed encoded batch (${what} at byte ${at} of ${buf.length})`);
}

/**
 * The records of one write's framed batches, in order (see `FramedRecords`); `eventOffsets[b]`
 * is added to the event indexes of batch `b` (its events come after those of the batches before
 * it). Every record is checked to lie within its batch's bytes and to name strings it holds.
 */
export function readFramed(
  batches: readonly (ArrayBuffer | Uint8Array)[],
  eventOffsets: readonly number[],
): FramedRecords {
  const heads = batches.map(readHead);
  let total = 0;
  for (const head of heads) total += head.count;
  const fields = new Int32Array(total * STRIDE);
  let o = 0;
  for (let b = 0; b < heads.length; b++) {
    const { buf, frame, count } = heads[b]!;
    const eventOffset = eventOffsets[b] ?? 0;
    const stringCount = frame.starts.length;
    const end = buf.length;
    // Checked once per stretch of fixed-size fields, then read without a call per field.
    let at = heads[b]!.at;
    for (let i = 0; i < count; i++, o += STRIDE) {
      if (at + 25 > end) malformed('ends early', at, buf);
      const topic = getU32(buf, at + 4);
      const table = getU32(buf, at + 8);
      const position = getU32(buf, at + 12);
      if (topic >= stringCount || table >= stringCount || position >= stringCount)
        malformed(`string ${Math.max(topic, table, position)} of ${stringCount}`, at, buf);
      const chunk = getU32(buf, at + 16);
      if (chunk !== NONE && chunk >= stringCount) malformed('chunk', at + 16, buf);
      const flags = buf[at + 20]!;
      const keyLength = getU32(buf, at + 21);
      fields[o + FRAME] = b;
      fields[o + EVENT] = getU32(buf, at) + eventOffset;
      fields[o + TOPIC] = topic;
      fields[o + TABLE] = table;
      fields[o + POSITION] = position;
      fields[o + CHUNK] = chunk === NONE ? -1 : chunk;
      fields[o + FLAGS] = flags;
      at += 25;
      if (at + keyLength + 4 > end) malformed('ends early', at, buf);
      fields[o + KEY_AT] = at;
      fields[o + KEY_LENGTH] = flags & NO_KEY ? -1 : keyLength;
      at += keyLength;
      const valueLength = getU32(buf, at);
      at += 4;
      if (at + valueLength + 4 > end) malformed('ends early', at, buf);
      fields[o + VALUE_AT] = at;
      fields[o + VALUE_LENGTH] = flags & NO_VALUE ? -1 : valueLength;
      at += valueLength;
      const keyTextLength = getU32(buf, at);
      at += 4;
      if (at + keyTextLength + 6 > end) malformed('ends early', at, buf);
      fields[o + KEY_TEXT_AT] = flags & KEY_TEXT ? at : -1;
      fields[o + KEY_TEXT_LENGTH] = keyTextLength;
      at += keyTextLength;
      fields[o + SIZE] = getU32(buf, at);
      fields[o + HEADERS_AT] = at + 4;
      const headerCount = buf[at + 4]! | (buf[at + 5]! << 8);
      at += 6;
      for (let h = 0; h < headerCount; h++) {
        if (at + 5 > end) malformed('ends early', at, buf);
        const name = getU32(buf, at);
        if (name >= stringCount) malformed(`string ${name} of ${stringCount}`, at, buf);
        const kind = buf[at + 4];
        at += 5;
        if (kind === UNDEFINED) continue;
        if (kind !== STRING && kind !== BYTES) malformed(`header kind ${kind}`, at, buf);
        if (at + 4 > end) malformed('ends early', at, buf);
        const v = getU32(buf, at);
        at += 4;
        if (kind === STRING) {
          if (v >= stringCount) malformed(`string ${v} of ${stringCount}`, at, buf);
        } else {
          if (at + v > end) malformed('ends early', at, buf);
          at += v;
        }
      }
    }
    if (at !== end) malformed('trailing bytes', at, buf);
  }
  return new FramedRecords(
    heads.map((h) => h.frame),
    fields,
    total,
  );
}
