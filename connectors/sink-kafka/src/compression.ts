import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import kafkajs from 'kafkajs';
import snappy from 'snappyjs';

const { CompressionCodecs, CompressionTypes } = kafkajs;

/**
 * Kafka record-batch compression codecs for kafkajs, which ships only gzip.
 *
 * - snappy: `snappyjs` (pure JavaScript). Written in the xerial framing the Java client
 *   uses; read in that framing or as a raw Snappy block (what kafkajs-snappy and some
 *   other clients write).
 * - lz4: the LZ4 frame format Kafka expects, written here around `lz4js`' block
 *   compressor (pure JavaScript) with 64 KiB independent blocks, so the broker's
 *   block-at-a-time reader can decode it; read with `lz4js`.
 * - zstd: Node's own `zlib` Zstandard (Node ≥ 22.15 / 23.8), nothing to install.
 *
 * Registration is process-wide (kafkajs keeps one table) and idempotent.
 */

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

export const COMPRESSION_TYPES = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
} as const;

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
  compressBound(n: number): number;
  compressBlock(src: Uint8Array, dst: Uint8Array, sIndex: number, sLength: number, hashTable: Uint32Array): number;
  decompress(src: Uint8Array, maxSize?: number): Uint8Array;
}
const require = createRequire(import.meta.url);
const lz4 = require('lz4js') as Lz4js;
const xxh32 = (require('lz4js/xxh32.js') as { hash(seed: number, src: Uint8Array, index: number, length: number): number }).hash;

const LZ4_MAGIC = 0x184d2204;
const LZ4_FLG = 0x60; // version 01, blocks independent, no checksums, no content size
const LZ4_BD = 0x40; // 64 KiB maximum block size
const LZ4_BLOCK = 64 * 1024;
const LZ4_UNCOMPRESSED = 0x80000000;

export function lz4Compress(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(7);
  header.writeUInt32LE(LZ4_MAGIC, 0);
  header[4] = LZ4_FLG;
  header[5] = LZ4_BD;
  header[6] = (xxh32(0, header, 4, 2) >>> 8) & 0xff;
  parts.push(header);
  const hashTable = new Uint32Array(1 << 16);
  const scratch = Buffer.alloc(lz4.compressBound(LZ4_BLOCK));
  for (let offset = 0; offset < data.length; offset += LZ4_BLOCK) {
    const block = data.subarray(offset, offset + LZ4_BLOCK);
    hashTable.fill(0);
    const size = lz4.compressBlock(block, scratch, 0, block.length, hashTable);
    const length = Buffer.alloc(4);
    if (size > 0 && size < block.length) {
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
  return Buffer.from(lz4.decompress(data));
}

// --- registration --------------------------------------------------------------------

const zstdCompress = typeof zlib.zstdCompress === 'function' ? promisify(zlib.zstdCompress) : undefined;
const zstdDecompress = typeof zlib.zstdDecompress === 'function' ? promisify(zlib.zstdDecompress) : undefined;

const codecs: Partial<Record<number, () => Codec>> = {
  [CompressionTypes.Snappy]: () => ({
    compress: async (encoder) => snappyCompress(encoder.buffer),
    decompress: async (buffer) => snappyDecompress(buffer),
  }),
  [CompressionTypes.LZ4]: () => ({
    compress: async (encoder) => lz4Compress(encoder.buffer),
    decompress: async (buffer) => lz4Decompress(buffer),
  }),
};
if (zstdCompress && zstdDecompress) {
  codecs[CompressionTypes.ZSTD] = () => ({
    compress: async (encoder) => zstdCompress(encoder.buffer),
    decompress: async (buffer) => zstdDecompress(buffer),
  });
}

/** Install the snappy, lz4 and zstd codecs into kafkajs (producer and consumer side alike). */
export function registerCompressionCodecs(): void {
  const table = CompressionCodecs as unknown as Record<number, unknown>;
  for (const [type, codec] of Object.entries(codecs)) table[Number(type)] = codec;
}
