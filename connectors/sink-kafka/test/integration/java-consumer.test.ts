import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { startKafka } from '@nanosync/testcontainers';
import { expect, test } from 'vitest';
import { createSink, uniqueName } from './helpers.js';

const run = promisify(execFile);

const table: TableSchema = {
  schema: 'public',
  name: 'java_check',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};

/**
 * The broker validating our batches proves they decompress in Java; this goes one step
 * further and reads them with the Java console consumer, the reference client, so the
 * snappy, lz4 and zstd framing we write is what other clients' decoders expect.
 */
test('the Java consumer reads records written with snappy, lz4 and zstd', async () => {
  await using kafka = await startKafka();
  if (!kafka.libDir) {
    console.warn('skipped: no Kafka jars folder (libDir) for the Java console consumer');
    return;
  }
  const prefix = uniqueName('ns-it-java');
  const compressions = ['snappy', 'lz4', 'zstd'] as const;
  // Enough data for several full 64 KiB lz4 blocks per batch.
  const notes = Array.from({ length: 2000 }, (_, i) => `note ${i} ${'repeat '.repeat(20)}${'x'.repeat(i % 97)}`);
  for (const compression of compressions) {
    await using handle = createSink({
      brokers: kafka.brokers.join(','),
      topic: `${prefix}-${compression}`,
      compression,
    });
    await handle.sink.open([table]);
    const events: ChangeEvent[] = notes.map((note, i) => ({
      table,
      op: 'insert',
      key: { id: i },
      after: { id: i, note },
      position: `p${i}`,
    }));
    await handle.sink.write(events);
  }
  const { stdout } = await run(
    'java',
    [
      '-cp',
      `${kafka.libDir}/*`,
      'org.apache.kafka.tools.consumer.ConsoleConsumer',
      '--bootstrap-server',
      kafka.brokers[0]!,
      '--include',
      `${prefix}-.*`,
      '--from-beginning',
      '--max-messages',
      String(notes.length * compressions.length),
      '--timeout-ms',
      '60000',
    ],
    { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
  );
  const lines = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { after: { note: string } });
  expect(lines).toHaveLength(notes.length * compressions.length);
  expect(lines.map((l) => l.after.note).sort()).toEqual([...notes, ...notes, ...notes].sort());
});
