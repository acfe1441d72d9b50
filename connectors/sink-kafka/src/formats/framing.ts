import { createHash } from 'node:crypto';
import { NanosyncError } from '@nanosync/core';
import { KafkaErrorCode } from '../errors.js';

/**
 * Avro and Protobuf record values carry the writer's schema in front of the payload, so a
 * consumer needs no registry:
 *
 *   byte 0        0x4e 'N'  magic
 *   byte 1        0x01      framing version
 *   byte 2        0x41 'A' Avro | 0x50 'P' Protobuf
 *   bytes 3–10    schema fingerprint: first 8 bytes of SHA-256 over the schema text
 *   bytes 11–14   schema length S, unsigned 32-bit big-endian
 *   next S bytes  schema text, UTF-8 JSON (Avro schema / protobufjs JSON descriptor)
 *   rest          payload (Avro binary datum / Protobuf message)
 *
 * The fingerprint lets a reader cache the compiled schema without hashing it again; the
 * writer builds the whole prefix once per table schema.
 */
export const FRAME_MAGIC = 0x4e; // 'N'
export const FRAME_VERSION = 0x01;
export const FRAME_AVRO = 0x41; // 'A'
export const FRAME_PROTOBUF = 0x50; // 'P'
const HEADER_BYTES = 15;

export type FramedFormat = typeof FRAME_AVRO | typeof FRAME_PROTOBUF;

export interface Unframed {
  format: FramedFormat;
  fingerprint: string;
  schemaText: string;
  payload: Uint8Array;
}

export function fingerprintOf(schemaText: string): Buffer {
  return createHash('sha256').update(schemaText, 'utf8').digest().subarray(0, 8);
}

/** The constant part of every message of one schema: header and schema text. */
export function framePrefix(format: FramedFormat, schemaText: string): Buffer {
  const schema = Buffer.from(schemaText, 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = FRAME_MAGIC;
  header[1] = FRAME_VERSION;
  header[2] = format;
  fingerprintOf(schemaText).copy(header, 3);
  header.writeUInt32BE(schema.length, 11);
  return Buffer.concat([header, schema]);
}

export function unframe(value: Uint8Array, expected: FramedFormat): Unframed {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  const name = expected === FRAME_AVRO ? 'avro' : 'protobuf';
  if (buf.length < HEADER_BYTES || buf[0] !== FRAME_MAGIC) {
    throw new NanosyncError(KafkaErrorCode.KafkaEncode, `not a nanosync ${name} message: missing the 'N' magic byte`);
  }
  if (buf[1] !== FRAME_VERSION) {
    throw new NanosyncError(
      KafkaErrorCode.KafkaEncode,
      `nanosync ${name} message uses framing version ${buf[1]}; this reader knows ${FRAME_VERSION}`,
    );
  }
  if (buf[2] !== expected) {
    throw new NanosyncError(
      KafkaErrorCode.KafkaEncode,
      `message is framed as format ${String.fromCharCode(buf[2] ?? 0)}, expected ${name}`,
    );
  }
  const length = buf.readUInt32BE(11);
  if (HEADER_BYTES + length > buf.length) {
    throw new NanosyncError(
      KafkaErrorCode.KafkaEncode,
      `nanosync ${name} message is truncated: schema of ${length} bytes does not fit`,
    );
  }
  return {
    format: expected,
    fingerprint: buf.subarray(3, 11).toString('hex'),
    schemaText: buf.subarray(HEADER_BYTES, HEADER_BYTES + length).toString('utf8'),
    payload: buf.subarray(HEADER_BYTES + length),
  };
}

/** A small bounded cache: compiled readers per fingerprint, oldest dropped first. */
export class BoundedCache<V> {
  private readonly entries = new Map<string, V>();
  constructor(private readonly limit = 256) {}

  get(key: string, build: () => V): V {
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    const value = build();
    if (this.entries.size >= this.limit) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, value);
    return value;
  }
}
