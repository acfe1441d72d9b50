import { randomBytes } from 'node:crypto';
import kafkajs from 'kafkajs';
import { createRequire } from 'node:module';
import { describe, expect, test } from 'vitest';
import {
  lz4Compress,
  lz4Decompress,
  registerCompressionCodecs,
  snappyCompress,
  snappyDecompress,
} from '../../src/compression.js';

const { CompressionCodecs, CompressionTypes } = kafkajs;
const require = createRequire(import.meta.url);

const repetitive = Buffer.from(
  '{"_ns_op":"INSERT","_ns_table":"public.orders","after":{"id":"1","status":"pending"}}\n'.repeat(3000),
);
const random = randomBytes(200_000);
const inputs = { empty: Buffer.alloc(0), tiny: Buffer.from('abc'), repetitive, random };

describe('snappy (xerial framing)', () => {
  test.each(Object.entries(inputs))('round-trips %s', (_, data) => {
    const out = snappyCompress(data);
    expect(out.subarray(0, 8)).toEqual(Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]));
    expect(snappyDecompress(out)).toEqual(data);
  });

  test('reads raw snappy blocks as other clients write them', () => {
    const snappy = require('snappyjs') as { compress(b: Buffer): Buffer };
    expect(snappyDecompress(Buffer.from(snappy.compress(repetitive)))).toEqual(repetitive);
  });

  test('compresses', () => {
    expect(snappyCompress(repetitive).length).toBeLessThan(repetitive.length / 5);
  });
});

describe('lz4 (frame format)', () => {
  test.each(Object.entries(inputs))('round-trips %s', (_, data) => {
    const out = lz4Compress(data);
    expect(out.readUInt32LE(0)).toBe(0x184d2204);
    expect(out[4]).toBe(0x60); // version 01 + independent blocks
    expect(out[5]).toBe(0x40); // 64 KiB blocks
    expect(lz4Decompress(out)).toEqual(data);
  });

  test('full 64 KiB blocks end in literals, as strict decoders require', () => {
    // A 4-byte repeat whose second copy starts 10 bytes before the end of a full block: a
    // naive compressor emits a match there, which the broker's liblz4 rejects.
    const lateRepeat = randomBytes(65536);
    lateRepeat.write('WXYZ', 65536 - 40, 'latin1');
    lateRepeat.write('WXYZ', 65536 - 10, 'latin1');
    for (const data of [
      repetitive,
      Buffer.alloc(200_000, 0x78),
      Buffer.concat([randomBytes(70_000), repetitive]),
      lateRepeat,
    ]) {
      const out = lz4Compress(data);
      let offset = 7;
      for (;;) {
        const size = out.readUInt32LE(offset);
        offset += 4;
        if (size === 0) break;
        if (!(size & 0x80000000)) expect(lastSequenceIsLiteralsOnly(out.subarray(offset, offset + size))).toBe(true);
        offset += size & 0x7fffffff;
      }
      expect(lz4Decompress(out)).toEqual(data);
    }
  });

  test('blocks decode independently (what the broker does), one block at a time', () => {
    const out = lz4Compress(repetitive);
    const lz4 = require('lz4js') as {
      decompressBlock(src: Uint8Array, dst: Uint8Array, s: number, len: number, d: number): number;
    };
    let offset = 7;
    let total = 0;
    for (;;) {
      const size = out.readUInt32LE(offset);
      offset += 4;
      if (size === 0) break;
      const dst = Buffer.alloc(64 * 1024);
      const n = size & 0x80000000 ? size & 0x7fffffff : lz4.decompressBlock(out, dst, offset, size, 0);
      expect(dst.subarray(0, n)).toEqual(repetitive.subarray(total, total + n));
      total += n;
      offset += size & 0x7fffffff;
    }
    expect(total).toBe(repetitive.length);
    expect(out.length).toBeLessThan(repetitive.length / 5);
  });
});

describe('kafkajs registration', () => {
  test('snappy, lz4 and zstd codecs are installed and round-trip', async () => {
    registerCompressionCodecs(kafkajs);
    for (const type of [CompressionTypes.Snappy, CompressionTypes.LZ4, CompressionTypes.ZSTD]) {
      const factory = (
        CompressionCodecs as unknown as Record<
          number,
          () => { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> }
        >
      )[type];
      expect(factory, `codec ${type}`).toBeTypeOf('function');
      const codec = factory!();
      const compressed = await codec.compress({ buffer: repetitive });
      expect(compressed.length).toBeLessThan(repetitive.length / 5);
      expect(await codec.decompress(compressed)).toEqual(repetitive);
    }
  });
});

/**
 * Walk an LZ4 block's sequences and check the end-of-block rules: the block ends with at
 * least 5 literals, and the last match starts at least 12 bytes before the end.
 */
function lastSequenceIsLiteralsOnly(block: Buffer): boolean {
  let i = 0;
  let lastMatch = Number.POSITIVE_INFINITY;
  for (;;) {
    const token = block[i++]!;
    let literals = token >> 4;
    if (literals === 15) for (let b = 255; b === 255; ) literals += b = block[i++]!;
    i += literals;
    if (i >= block.length) return i === block.length && literals >= 5 && literals + lastMatch >= 12;
    i += 2;
    let match = token & 15;
    if (match === 15) for (let b = 255; b === 255; ) match += b = block[i++]!;
    lastMatch = match + 4;
    if (i >= block.length) return false;
  }
}
