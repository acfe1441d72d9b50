import { compatibilityPartitioner } from '@platformatic/kafka';
import kafkajs from 'kafkajs';
import { describe, expect, test } from 'vitest';
import { javaPartitioner, murmur2 } from '../../src/partitioner.js';

// The sink's client places a keyed record with `compatibilityPartitioner`, which must be the
// Java client's (and kafkajs') placement: toPositive(murmur2(key)) % partitions. Otherwise
// switching clients would move existing keys to other partitions and break per-key order.

/** murmur2 of Kafka's own test vectors (clients/src/test/.../UtilsTest.testMurmur2). */
const JAVA_MURMUR2: [string, number][] = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

const javaPartition = (murmur2: number, partitions: number) => (murmur2 & 0x7fffffff) % partitions;

function platformatic(key: Buffer, partitions: number): number {
  return compatibilityPartitioner({ topic: 't', value: undefined }, key) % partitions;
}

function kafkajsPartition(key: Buffer, partitions: number): number {
  const partitioner = kafkajs.Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({
    partitionId: i,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  return partitioner({ topic: 't', partitionMetadata, message: { key, value: null } });
}

describe('key → partition', () => {
  test.each([1, 3, 6, 7, 12, 100])('matches the Java client on its murmur2 test vectors (%i partitions)', (n) => {
    for (const [key, murmur2] of JAVA_MURMUR2)
      expect(platformatic(Buffer.from(key), n)).toBe(javaPartition(murmur2, n));
  });

  test('matches kafkajs for the keys the sink writes (JSON arrays, registry keys, binary)', () => {
    const keys: Buffer[] = [];
    for (let i = 0; i < 2000; i++) keys.push(Buffer.from(JSON.stringify([i])));
    for (let i = 0; i < 500; i++) keys.push(Buffer.from(JSON.stringify([`customer-${i}`, i * 7919, null])));
    for (let i = 0; i < 500; i++) keys.push(Buffer.from([0, 0, 0, 0, i & 0xff, (i * 31) & 0xff, i >> 8]));
    keys.push(Buffer.alloc(0), Buffer.from('ü€𝄞'), Buffer.alloc(1000, 0xab));
    for (const n of [2, 6, 12, 50]) {
      let differences = 0;
      for (const key of keys) if (platformatic(key, n) !== kafkajsPartition(key, n)) differences++;
      expect(differences).toBe(0);
    }
  });

  test.each([1, 3, 6, 7, 12, 100])("the sink's own partitioner matches the Java test vectors (%i partitions)", (n) => {
    for (const [key, hash] of JAVA_MURMUR2) {
      expect(murmur2(Buffer.from(key))).toBe(hash);
      expect(javaPartitioner({}, Buffer.from(key)) % n).toBe(javaPartition(hash, n));
    }
  });

  test("the sink's own partitioner places every key as compatibilityPartitioner and kafkajs do", () => {
    const keys: Buffer[] = [Buffer.alloc(0), Buffer.from('ü€𝄞'), Buffer.alloc(1000, 0xab)];
    for (let i = 0; i < 3000; i++) keys.push(Buffer.from(JSON.stringify([i * 104729])));
    // Random bytes of every length up to 64, every remainder modulo 4, high bits set.
    let state = 12345;
    for (let i = 0; i < 3000; i++) {
      const key = Buffer.alloc(i % 65);
      for (let j = 0; j < key.length; j++) {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        key[j] = state >>> 24;
      }
      keys.push(key);
    }
    // A key that is a view into a larger buffer reads only its own bytes.
    keys.push(Buffer.from('xx[42]yy').subarray(2, 6));
    for (const key of keys) {
      const partition = javaPartitioner({}, key);
      expect(partition).toBe(compatibilityPartitioner({ topic: 't', value: undefined }, key));
      for (const n of [6, 50]) expect(partition % n).toBe(kafkajsPartition(key, n));
    }
    expect(javaPartitioner({}, undefined)).toBe(0);
  });
});
