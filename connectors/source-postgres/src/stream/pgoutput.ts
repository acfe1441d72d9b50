/**
 * Decoder for the pgoutput logical replication messages (protocol version 1).
 *
 * Each XLogData payload carries one message; its first byte says which. Integers are big
 * endian, strings are NUL-terminated UTF-8, LSNs are 64-bit, timestamps are microseconds
 * since 2000-01-01 00:00:00 UTC.
 *
 *   'B' Begin     final LSN of the transaction (its commit record) · commit time · xid
 *   'C' Commit    flags (0) · commit LSN · end LSN of the transaction · commit time
 *   'O' Origin    commit LSN on the origin server · origin name
 *   'R' Relation  relation oid · namespace ('' for pg_catalog) · name · replica identity
 *                 ('d' default, 'n' nothing, 'f' full, 'i' index) · column count, then per
 *                 column: flags (bit 0 = part of the identity key) · name · type oid · typmod
 *   'Y' Type      type oid · namespace · name (sent for types that are not built in)
 *   'I' Insert    relation oid · 'N' · new tuple
 *   'U' Update    relation oid · optionally 'K' + key tuple (the identity key changed) or
 *                 'O' + old tuple (REPLICA IDENTITY FULL) · 'N' · new tuple
 *   'D' Delete    relation oid · 'K' + key tuple or 'O' + old tuple
 *   'T' Truncate  relation count · options (bit 0 CASCADE, bit 1 RESTART IDENTITY) · oids
 *   'M' Message   flags (bit 0 transactional) · LSN · prefix · content length · content
 *
 * A tuple is a column count followed, per column, by a kind byte: 'n' NULL, 'u' an unchanged
 * TOASTed value that was not sent, 't' text (length + bytes in the output function's text
 * form), 'b' binary (length + bytes; only when the binary option is on, which we never ask for).
 * In a key tuple the columns outside the key are sent as 'n'.
 *
 * Values stay as the server's text: turning text into canonical values is the job of
 * `decodeValue` (src/types/), shared with the snapshot, so both paths agree byte for byte.
 * That is why we do not use pg-logical-replication's own pgoutput parser: it runs pg's
 * global type parsers on every value (timestamptz becomes a Date and loses its
 * microseconds, json is parsed and loses digits of large numbers, an unchanged TOAST column
 * becomes `undefined`), and overriding them would change every pg client in the process.
 * Measured on 200,000 eight-column inserts: its parser ~258k messages/s; this decoder
 * ~1.58M/s, and ~380k/s including decodeValue and building the ChangeEvent.
 */
import { NanosyncError } from '@nanosync/core';
import { PgErrorCode } from '../errors.js';

/** Marks a column whose unchanged TOASTed value the server did not send (kind 'u'). */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');

/** One column of a tuple: text form, bytes ('b'), NULL, or not sent. */
export type TupleValue = string | Uint8Array | null | typeof UNCHANGED_TOAST;

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeModifier: number;
  /** Part of the replica identity (every column under REPLICA IDENTITY FULL). */
  isKey: boolean;
}

export interface BeginMessage {
  tag: 'begin';
  /** LSN of the commit record: the first half of every position in this transaction. */
  finalLsn: bigint;
  /** Microseconds since 2000-01-01 UTC. */
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: 'commit';
  flags: number;
  commitLsn: bigint;
  /** End of the commit record: what the slot is told once the transaction is durable. */
  endLsn: bigint;
  commitTime: bigint;
}

export interface OriginMessage {
  tag: 'origin';
  originLsn: bigint;
  name: string;
}

export interface RelationMessage {
  tag: 'relation';
  relationId: number;
  /** Namespace; pgoutput sends '' for pg_catalog, which we restore. */
  schema: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}

export interface TypeMessage {
  tag: 'type';
  typeOid: number;
  schema: string;
  name: string;
}

export interface InsertMessage {
  tag: 'insert';
  relationId: number;
  newTuple: TupleValue[];
}

export interface UpdateMessage {
  tag: 'update';
  relationId: number;
  /** 'key' = only identity columns are meaningful; 'old' = full old row (REPLICA IDENTITY FULL). */
  oldKind?: 'key' | 'old';
  oldTuple?: TupleValue[];
  newTuple: TupleValue[];
}

export interface DeleteMessage {
  tag: 'delete';
  relationId: number;
  oldKind: 'key' | 'old';
  oldTuple: TupleValue[];
}

export interface TruncateMessage {
  tag: 'truncate';
  relationIds: number[];
  cascade: boolean;
  restartIdentity: boolean;
}

export interface LogicalMessage {
  tag: 'message';
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  /** Empty when the decoder was told to keep only another prefix's content (`contentSkipped`). */
  content: Uint8Array;
  /** The payload was not copied: its prefix is not the one the caller asked to keep. */
  contentSkipped?: true;
}

export interface DecodeOptions {
  /**
   * Copy a logical message's payload only when its prefix is this (the stream's watermark
   * prefix) or starts with it and a dot (its sub-prefixes); other messages (another pipeline's watermarks, an application's
   * own messages, which may be large) come back with an empty `content`.
   */
  keepMessagePrefix?: string;
}

const NO_CONTENT = new Uint8Array(0);

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

const TAG_BEGIN = 0x42; // 'B'
const TAG_COMMIT = 0x43; // 'C'
const TAG_ORIGIN = 0x4f; // 'O'
const TAG_RELATION = 0x52; // 'R'
const TAG_TYPE = 0x59; // 'Y'
export const TAG_INSERT = 0x49; // 'I'
export const TAG_UPDATE = 0x55; // 'U'
export const TAG_DELETE = 0x44; // 'D'
const TAG_TRUNCATE = 0x54; // 'T'
const TAG_MESSAGE = 0x4d; // 'M'

export const TUPLE_NEW = 0x4e; // 'N'
export const TUPLE_KEY = 0x4b; // 'K'
export const TUPLE_OLD = 0x4f; // 'O'

export const KIND_NULL = 0x6e; // 'n'
export const KIND_UNCHANGED = 0x75; // 'u'
export const KIND_TEXT = 0x74; // 't'
const KIND_BINARY = 0x62; // 'b'

const IDENTITY_DEFAULT = 0x64; // 'd'
const IDENTITY_NOTHING = 0x6e; // 'n'
const IDENTITY_FULL = 0x66; // 'f'
const IDENTITY_INDEX = 0x69; // 'i'

function replicaIdentityOf(byte: number): ReplicaIdentity | undefined {
  switch (byte) {
    case IDENTITY_DEFAULT:
      return 'default';
    case IDENTITY_NOTHING:
      return 'nothing';
    case IDENTITY_FULL:
      return 'full';
    case IDENTITY_INDEX:
      return 'index';
    default:
      return undefined;
  }
}

function protocolError(message: string): NanosyncError {
  return new NanosyncError(PgErrorCode.PgProtocol, `pgoutput: ${message}`);
}

const TWO_32 = 0x1_0000_0000;
/** A 64-bit value whose upper 32 bits are below this (in magnitude) is exact as a number. */
const EXACT_HIGH = 0x20_0000;

/** Sequential reader over one message; every read checks the remaining length. */
class Reader {
  private offset: number;

  /**
   * The message is `buffer` from `start` to `end` (an XLogData's payload is read in place,
   * within the socket's buffer).
   */
  constructor(
    private readonly buffer: Buffer,
    private readonly start: number,
    private readonly end: number,
  ) {
    this.offset = start;
  }

  private need(bytes: number): void {
    if (this.offset + bytes > this.end) {
      throw protocolError(
        `message ends early (need ${bytes} bytes at offset ${this.offset - this.start} of ${this.end - this.start})`,
      );
    }
  }

  byte(): number {
    this.need(1);
    return this.buffer[this.offset++] as number;
  }

  int16(): number {
    this.need(2);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(): number {
    this.need(4);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint32(): number {
    this.need(4);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  // The 64-bit fields (LSNs, commit times) are below 2^53 in magnitude in practice: then one
  // BigInt is made from the exact number, where Buffer's readBig(U)Int64BE makes four (two
  // halves, a shift, a sum). With one-change transactions five such fields per transaction
  // made a tenth of a backlog drain's allocations (apps/bench/README.md).

  uint64(): bigint {
    this.need(8);
    const high = this.buffer.readUInt32BE(this.offset);
    const low = this.buffer.readUInt32BE(this.offset + 4);
    this.offset += 8;
    return high < EXACT_HIGH ? BigInt(high * TWO_32 + low) : (BigInt(high) << 32n) | BigInt(low);
  }

  int64(): bigint {
    this.need(8);
    const high = this.buffer.readInt32BE(this.offset);
    const low = this.buffer.readUInt32BE(this.offset + 4);
    this.offset += 8;
    return high < EXACT_HIGH && high >= -EXACT_HIGH ? BigInt(high * TWO_32 + low) : (BigInt(high) << 32n) + BigInt(low);
  }

  cString(): string {
    const zero = this.offset < this.end ? this.buffer.indexOf(0, this.offset) : -1;
    if (zero < 0 || zero >= this.end) throw protocolError(`unterminated string at offset ${this.offset - this.start}`);
    const text = this.buffer.toString('utf8', this.offset, zero);
    this.offset = zero + 1;
    return text;
  }

  text(length: number): string {
    this.need(length);
    const text = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return text;
  }

  bytes(length: number): Uint8Array {
    this.need(length);
    // Copy: the socket's buffer is reused by the driver once this message is handled.
    const bytes = Uint8Array.prototype.slice.call(this.buffer, this.offset, this.offset + length);
    this.offset += length;
    return bytes;
  }

  skip(length: number): void {
    this.need(length);
    this.offset += length;
  }

  finish(tag: string): void {
    if (this.offset !== this.end) {
      throw protocolError(`${tag} message has ${this.end - this.offset} unexpected trailing bytes`);
    }
  }
}

function readTuple(reader: Reader): TupleValue[] {
  const count = reader.int16();
  const values: TupleValue[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const kind = reader.byte();
    switch (kind) {
      case KIND_NULL:
        values[i] = null;
        break;
      case KIND_UNCHANGED:
        values[i] = UNCHANGED_TOAST;
        break;
      case KIND_TEXT:
        values[i] = reader.text(reader.int32());
        break;
      case KIND_BINARY:
        values[i] = reader.bytes(reader.int32());
        break;
      default:
        throw protocolError(`unknown tuple column kind 0x${kind.toString(16)} in column ${i + 1}`);
    }
  }
  return values;
}

function expectByte(reader: Reader, expected: number, what: string): void {
  const actual = reader.byte();
  if (actual !== expected) {
    throw protocolError(`expected '${String.fromCharCode(expected)}' before ${what}, got 0x${actual.toString(16)}`);
  }
}

/**
 * Decodes one pgoutput message (the payload of an XLogData message): `buffer` from `start` to
 * `end`, so the payload needs no view of its own.
 */
export function decodePgOutput(
  buffer: Buffer,
  options: DecodeOptions = {},
  start = 0,
  end = buffer.length,
): PgOutputMessage {
  if (end <= start) throw protocolError('empty message');
  const reader = new Reader(buffer, start, end);
  const tag = reader.byte();
  switch (tag) {
    case TAG_BEGIN: {
      const message: BeginMessage = {
        tag: 'begin',
        finalLsn: reader.uint64(),
        commitTime: reader.int64(),
        xid: reader.uint32(),
      };
      reader.finish('Begin');
      return message;
    }
    case TAG_COMMIT: {
      const message: CommitMessage = {
        tag: 'commit',
        flags: reader.byte(),
        commitLsn: reader.uint64(),
        endLsn: reader.uint64(),
        commitTime: reader.int64(),
      };
      reader.finish('Commit');
      return message;
    }
    case TAG_ORIGIN: {
      const message: OriginMessage = { tag: 'origin', originLsn: reader.uint64(), name: reader.cString() };
      reader.finish('Origin');
      return message;
    }
    case TAG_RELATION: {
      const relationId = reader.uint32();
      const namespace = reader.cString();
      const name = reader.cString();
      const identityByte = reader.byte();
      const replicaIdentity = replicaIdentityOf(identityByte);
      if (!replicaIdentity)
        throw protocolError(`unknown replica identity 0x${identityByte.toString(16)} for relation ${name}`);
      const count = reader.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = reader.byte();
        columns.push({
          isKey: (flags & 1) === 1,
          name: reader.cString(),
          typeOid: reader.uint32(),
          typeModifier: reader.int32(),
        });
      }
      reader.finish('Relation');
      return {
        tag: 'relation',
        relationId,
        schema: namespace === '' ? 'pg_catalog' : namespace,
        name,
        replicaIdentity,
        columns,
      };
    }
    case TAG_TYPE: {
      const typeOid = reader.uint32();
      const namespace = reader.cString();
      const message: TypeMessage = {
        tag: 'type',
        typeOid,
        schema: namespace === '' ? 'pg_catalog' : namespace,
        name: reader.cString(),
      };
      reader.finish('Type');
      return message;
    }
    case TAG_INSERT: {
      const relationId = reader.uint32();
      expectByte(reader, TUPLE_NEW, 'the new tuple of an Insert');
      const message: InsertMessage = { tag: 'insert', relationId, newTuple: readTuple(reader) };
      reader.finish('Insert');
      return message;
    }
    case TAG_UPDATE: {
      const relationId = reader.uint32();
      let kind = reader.byte();
      const message: UpdateMessage = { tag: 'update', relationId, newTuple: [] };
      if (kind === TUPLE_KEY || kind === TUPLE_OLD) {
        message.oldKind = kind === TUPLE_KEY ? 'key' : 'old';
        message.oldTuple = readTuple(reader);
        kind = reader.byte();
      }
      if (kind !== TUPLE_NEW)
        throw protocolError(`expected 'N' before the new tuple of an Update, got 0x${kind.toString(16)}`);
      message.newTuple = readTuple(reader);
      reader.finish('Update');
      return message;
    }
    case TAG_DELETE: {
      const relationId = reader.uint32();
      const kind = reader.byte();
      if (kind !== TUPLE_KEY && kind !== TUPLE_OLD) {
        throw protocolError(`expected 'K' or 'O' in a Delete, got 0x${kind.toString(16)}`);
      }
      const message: DeleteMessage = {
        tag: 'delete',
        relationId,
        oldKind: kind === TUPLE_KEY ? 'key' : 'old',
        oldTuple: readTuple(reader),
      };
      reader.finish('Delete');
      return message;
    }
    case TAG_TRUNCATE: {
      const count = reader.uint32();
      const options = reader.byte();
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(reader.uint32());
      reader.finish('Truncate');
      return { tag: 'truncate', relationIds, cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0 };
    }
    case TAG_MESSAGE: {
      const flags = reader.byte();
      const lsn = reader.uint64();
      const prefix = reader.cString();
      const length = reader.uint32();
      const transactional = (flags & 1) !== 0;
      const keep = options.keepMessagePrefix;
      if (keep !== undefined && prefix !== keep && !prefix.startsWith(`${keep}.`)) {
        reader.skip(length);
        reader.finish('Message');
        return { tag: 'message', transactional, lsn, prefix, content: NO_CONTENT, contentSkipped: true };
      }
      const content = reader.bytes(length);
      reader.finish('Message');
      return { tag: 'message', transactional, lsn, prefix, content };
    }
    default:
      throw protocolError(
        `unexpected message type '${String.fromCharCode(tag)}' (0x${tag.toString(16)}); streaming of in-progress transactions is not requested`,
      );
  }
}

/** Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch. */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000n;

const MAX_EXACT_MICROS = BigInt(Number.MAX_SAFE_INTEGER);

/** The `YYYY-MM-DDTHH:MM:SS` of the last second formatted: commits of a busy stream share it. */
let lastSecond = Number.NaN;
let lastSecondText = '';

/** A pgoutput timestamp as ISO 8601 UTC with microseconds (`2024-05-01T12:00:00.123456Z`). */
export function formatPgTimestamp(microsSince2000: bigint): string {
  const unixMicros = microsSince2000 + POSTGRES_EPOCH_MICROS;
  // Within ±2^53 µs (about 285 years around 1970) a Number holds the value exactly.
  if (unixMicros >= -MAX_EXACT_MICROS && unixMicros <= MAX_EXACT_MICROS) {
    const micros = Number(unixMicros);
    const second = Math.floor(micros / 1_000_000);
    const fraction = micros - second * 1_000_000;
    if (second !== lastSecond) {
      lastSecondText = new Date(second * 1000).toISOString().slice(0, 19);
      lastSecond = second;
    }
    return `${lastSecondText}.${fraction.toString().padStart(6, '0')}Z`;
  }
  let seconds = unixMicros / 1_000_000n;
  let micros = unixMicros % 1_000_000n;
  if (micros < 0n) {
    micros += 1_000_000n;
    seconds -= 1n;
  }
  const iso = new Date(Number(seconds) * 1000).toISOString();
  return `${iso.slice(0, 19)}.${micros.toString().padStart(6, '0')}Z`;
}
