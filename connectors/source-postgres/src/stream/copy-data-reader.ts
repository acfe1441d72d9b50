import { NanosyncError } from '@nanosync/core';
import { PgErrorCode } from '../errors.js';

/** A backend message's type byte and its int32 length (which counts itself, not the type). */
const HEADER_BYTES = 5;
const COPY_DATA = 0x64; // 'd'

/**
 * Splits what a replication connection's socket delivers into the server's messages, and
 * hands each CopyData's contents to `onCopyData` where they lie: `buffer` from `start` to
 * `end`, valid only until the call returns (the socket's chunk, or a message assembled
 * here when one spans chunks). Every other message (CopyBothResponse, an ErrorResponse, the
 * end of the stream) goes to `forward` whole, as a Buffer of its own, in the order it came.
 *
 * The pg driver makes a message object and a Buffer view per CopyData, and emits it twice;
 * with one-change transactions that is three of each per change (apps/bench/README.md, "The
 * replication socket read without the driver's parser").
 */
export class CopyDataReader {
  /** The first bytes of a message that spans chunks, until its length is known. */
  private readonly head = Buffer.allocUnsafe(HEADER_BYTES);
  private headFilled = 0;
  /** A message that spans chunks, once its length is known. */
  private body: Buffer | undefined;
  private bodyFilled = 0;

  constructor(
    private readonly onCopyData: (buffer: Buffer, start: number, end: number) => void,
    private readonly forward: (message: Buffer) => void,
  ) {}

  /** Reads one chunk off the socket. */
  push(chunk: Buffer): void {
    const length = chunk.length;
    let offset = 0;
    if (this.headFilled > 0) {
      offset = this.completeSpanning(chunk);
      if (offset < 0) return;
    }
    while (offset + HEADER_BYTES <= length) {
      const end = offset + 1 + messageLength(chunk, offset);
      if (end > length) break;
      this.dispatch(chunk, offset, end);
      offset = end;
    }
    if (offset < length) this.keep(chunk, offset);
  }

  /** Whether part of a message is held, waiting for the rest. */
  get holding(): boolean {
    return this.headFilled > 0;
  }

  /** Adds the chunk's first bytes to the message that spans chunks: where the rest begins, or -1. */
  private completeSpanning(chunk: Buffer): number {
    let offset = 0;
    if (this.body === undefined) {
      const take = Math.min(HEADER_BYTES - this.headFilled, chunk.length);
      chunk.copy(this.head, this.headFilled, 0, take);
      this.headFilled += take;
      offset = take;
      if (this.headFilled < HEADER_BYTES) return -1;
      this.body = Buffer.allocUnsafe(1 + messageLength(this.head, 0));
      this.head.copy(this.body, 0);
      this.bodyFilled = HEADER_BYTES;
    }
    const body = this.body;
    const take = Math.min(body.length - this.bodyFilled, chunk.length - offset);
    chunk.copy(body, this.bodyFilled, offset, offset + take);
    this.bodyFilled += take;
    offset += take;
    if (this.bodyFilled < body.length) return -1;
    this.body = undefined;
    this.headFilled = 0;
    this.bodyFilled = 0;
    this.dispatch(body, 0, body.length);
    return offset;
  }

  /** Holds the start of a message whose end is in a later chunk. */
  private keep(chunk: Buffer, offset: number): void {
    const rest = chunk.length - offset;
    if (rest < HEADER_BYTES) {
      chunk.copy(this.head, 0, offset);
      this.headFilled = rest;
      return;
    }
    const body = Buffer.allocUnsafe(1 + messageLength(chunk, offset));
    chunk.copy(body, 0, offset);
    this.body = body;
    this.headFilled = HEADER_BYTES;
    this.bodyFilled = rest;
  }

  private dispatch(buffer: Buffer, start: number, end: number): void {
    if (buffer[start] === COPY_DATA) this.onCopyData(buffer, start + HEADER_BYTES, end);
    else this.forward(buffer.subarray(start, end));
  }
}

/** The message's length after its type byte; a length below 4 is not a message. */
function messageLength(buffer: Buffer, offset: number): number {
  const length = buffer.readUInt32BE(offset + 1);
  if (length < 4) {
    throw new NanosyncError(
      PgErrorCode.PgProtocol,
      `replication connection: the server sent a message of type 0x${(buffer[offset] as number).toString(16)} with length ${length}`,
    );
  }
  return length;
}
