import { compatibilityPartitioner } from '@platformatic/kafka';
import kafkajs from 'kafkajs';
import { describe, expect, test } from 'vitest';

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
});
