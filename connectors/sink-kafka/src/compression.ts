/// <reference path="./vendor.d.ts" />
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import snappy from 'snappyjs';

/**
 * Kafka record-batch compression codecs in pure JavaScript. The sink's client
 * (@platformatic/kafka) compresses with its own codecs; these are for readers built on
 * kafkajs, which ships only gzip (`registerCompressionCodecs(kafkajs)`), and for tests.
 *
 * - snappy: `snappyjs` (pure JavaScript). Written in the xerial framing the Java client
 *   uses; read in that framing or as a raw Snappy block (what kafkajs-snappy and some
 *   other clients write).
 * - lz4: the LZ4 frame format Kafka expects, with 64 KiB independent blocks from the
 *   small block compressor below (pure JavaScript; it follows the format's end-of-block
 *   rules, which the broker's liblz4 checks and `lz4js`' own compressor does not);
 *   frames from any producer are read with `lz4js`.
 * - zstd: Node's own `zlib` Zstandard (Node ≥ 22.15 / 23.8), nothing to install.
 *
 * Registration into kafkajs is process-wide (kafkajs keeps one table) and idempotent.
 */

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

/** Kafka's compression type ids (the record batch attribute bits), as kafkajs numbers them. */
export const COMPRESSION_TYPES = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };

/** Why a compression cannot be used on this Node, or undefined when it can. */
export function compressionUnavailable(compression: string): string | undefined {
  if (compression === 'zstd' && typeof zlib.zstdCompress !== 'function') {
    return `compression zstd needs Node.js 22.15 or newer (this is ${process.version}); use snappy, lz4 or gzip`;
  }
  return undefined;
}

// --- snappy --------------------------------------------------------------------------

/** xerial header: 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00, then version 1 and compatible version 1 (int32 BE). */
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
const XERIAL_HEADER = Buffer.concat([XERIAL_MAGIC, Buffer.from([0, 0, 0, 1, 0, 0, 0, 1])]);
const XERIAL_BLOCK = 32 * 1024;

export function snappyCompress(data: Buffer): Buffer {
  const parts: Buffer[] = [XERIAL_HEADER];
  for (let offset = 0; offset < data.length; offset += XERIAL_BLOCK) {
    const block = snappy.compress(data.subarray(offset, offset + XERIAL_BLOCK)) as Buffer;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(block.length, 0);
    parts.push(length, Buffer.from(block));
  }
  return Buffer.concat(parts);
}

export function snappyDecompress(data: Buffer): Buffer {
  if (data.length < XERIAL_HEADER.length || !data.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC)) {
    return Buffer.from(snappy.uncompress(data) as Buffer);
  }
  const parts: Buffer[] = [];
  for (let offset = XERIAL_HEADER.length; offset < data.length; ) {
    const length = data.readUInt32BE(offset);
    offset += 4;
    parts.push(Buffer.from(snappy.uncompress(data.subarray(offset, offset + length)) as Buffer));
    offset += length;
  }
  return Buffer.concat(parts);
}

// --- lz4 -----------------------------------------------------------------------------

interface Lz4js {
  decompress(src: Uint8Array, maxSize?: number): Uint8Array;
}
const require = createRequire(import.meta.url);
const lz4js = require('lz4js') as Lz4js;
const xxh32 = (
  require('lz4js/xxh32.js') as { hash(seed: number, src: Uint8Array, index: number, length: number): number }
).hash;

const LZ4_MAGIC = 0x184d2204;
const LZ4_FLG = 0x60; // version 01, blocks independent, no checksums, no content size
const LZ4_BD = 0x40; // 64 KiB maximum block size
const LZ4_BLOCK = 64 * 1024;
const LZ4_UNCOMPRESSED = 0x80000000;
const MIN_MATCH = 4;
const MF_LIMIT = 12; // the last match starts at least 12 bytes before the end of the block
const LAST_LITERALS = 5; // the last 5 bytes of a block are always literals
const HASH_BITS = 16;
const MAX_OFFSET = 65535;

function writeLength(dst: Uint8Array, at: number, rest: number): number {
  let i = at;
  let n = rest;
  for (; n >= 255; n -= 255) dst[i++] = 255;
  dst[i++] = n;
  return i;
}

/**
 * One LZ4 block (greedy, 4-byte hash of positions), honouring the end-of-block rules of
 * the LZ4 block format that strict decoders such as liblz4 (used by the broker) enforce.
 * Returns the compressed length; the caller stores the block raw when that is not smaller.
 */
export function lz4CompressBlock(src: Uint8Array, dst: Uint8Array, table: Int32Array): number {
  const n = src.length;
  let d = 0;
  let anchor = 0;
  if (n > MF_LIMIT) {
    table.fill(-1);
    const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
    const lastMatchStart = n - MF_LIMIT;
    const matchEnd = n - LAST_LITERALS;
    let i = 0;
    while (i <= lastMatchStart) {
      const sequence = view.getUint32(i, true);
      const h = Math.imul(sequence, 2654435761) >>> (32 - HASH_BITS);
      const candidate = table[h]!;
      table[h] = i;
      if (candidate < 0 || i - candidate > MAX_OFFSET || view.getUint32(candidate, true) !== sequence) {
        i++;
        continue;
      }
      let length = MIN_MATCH;
      while (i + length < matchEnd && src[i + length] === src[candidate + length]) length++;
      const literals = i - anchor;
      const extra = length - MIN_MATCH;
      dst[d++] = (Math.min(literals, 15) << 4) | Math.min(extra, 15);
      if (literals >= 15) d = writeLength(dst, d, literals - 15);
      dst.set(src.subarray(anchor, i), d);
      d += literals;
      const offset = i - candidate;
      dst[d++] = offset & 0xff;
      dst[d++] = offset >>> 8;
      if (extra >= 15) d = writeLength(dst, d, extra - 15);
      i += length;
      anchor = i;
    }
  }
  const literals = n - anchor;
  dst[d++] = Math.min(literals, 15) << 4;
  if (literals >= 15) d = writeLength(dst, d, literals - 15);
  dst.set(src.subarray(anchor, n), d);
  return d + literals;
}

export function lz4Compress(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(7);
  header.writeUInt32LE(LZ4_MAGIC, 0);
  header[4] = LZ4_FLG;
  header[5] = LZ4_BD;
  header[6] = (xxh32(0, header, 4, 2) >>> 8) & 0xff;
  parts.push(header);
  const table = new Int32Array(1 << HASH_BITS);
  const scratch = Buffer.alloc(LZ4_BLOCK + Math.ceil(LZ4_BLOCK / 255) + 16);
  for (let offset = 0; offset < data.length; offset += LZ4_BLOCK) {
    const block = data.subarray(offset, offset + LZ4_BLOCK);
    const size = lz4CompressBlock(block, scratch, table);
    const length = Buffer.alloc(4);
    if (size < block.length) {
      length.writeUInt32LE(size, 0);
      parts.push(length, Buffer.from(scratch.subarray(0, size)));
    } else {
      length.writeUInt32LE((LZ4_UNCOMPRESSED | block.length) >>> 0, 0);
      parts.push(length, Buffer.from(block));
    }
  }
  parts.push(Buffer.alloc(4));
  return Buffer.concat(parts);
}

export function lz4Decompress(data: Buffer): Buffer {
  return Buffer.from(lz4js.decompress(data));
}

// --- registration --------------------------------------------------------------------

const zstdCompress = typeof zlib.zstdCompress === 'function' ? promisify(zlib.zstdCompress) : undefined;
const zstdDecompress = typeof zlib.zstdDecompress === 'function' ? promisify(zlib.zstdDecompress) : undefined;

const codecs: Partial<Record<number, () => Codec>> = {
  [COMPRESSION_TYPES.snappy]: () => ({
    compress: async (encoder) => snappyCompress(encoder.buffer),
    decompress: async (buffer) => snappyDecompress(buffer),
  }),
  [COMPRESSION_TYPES.lz4]: () => ({
    compress: async (encoder) => lz4Compress(encoder.buffer),
    decompress: async (buffer) => lz4Decompress(buffer),
  }),
};
if (zstdCompress && zstdDecompress) {
  codecs[COMPRESSION_TYPES.zstd] = () => ({
    compress: async (encoder) => zstdCompress(encoder.buffer),
    decompress: async (buffer) => zstdDecompress(buffer),
  });
}

/**
 * Install the snappy, lz4 and zstd codecs into a kafkajs module (the caller's own: this
 * package does not depend on kafkajs), e.g. `registerCompressionCodecs(kafkajs)`, so its
 * consumers read batches in every compression the sink writes.
 */
export function registerCompressionCodecs(kafkajs: { CompressionCodecs: unknown }): void {
  const table = kafkajs.CompressionCodecs as Record<number, unknown>;
  for (const [type, codec] of Object.entries(codecs)) table[Number(type)] = codec;
}
