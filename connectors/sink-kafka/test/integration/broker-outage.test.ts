import { type ChangeEvent, NanosyncError, type TableSchema } from '@nanosync/core';
import { startKafka } from '@nanosync/testcontainers';
import { expect, test } from 'vitest';
import { decodeJsonMessage } from '../../src/formats/json.js';
import { consumeAll, createSink, uniqueName } from './helpers.js';

const table: TableSchema = {
  schema: 'public',
  name: 'outage',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'version', type: { kind: 'int32' }, nullable: false },
  ],
};

let seq = 0;
const upsert = (id: number, version: number): ChangeEvent => {
  seq += 1;
  return {
    table,
    op: version === 0 ? 'insert' : 'update',
    key: { id },
    after: { id, version },
    position: `${seq.toString(16).padStart(16, '0')}:00000000`,
  };
};
const remove = (id: number): ChangeEvent => {
  seq += 1;
  return {
    table,
    op: 'delete',
    key: { id },
    before: { id },
    position: `${seq.toString(16).padStart(16, '0')}:00000000`,
  };
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The broker goes away for 30 s in the middle of the stream. The write in flight must not
 * resolve while nothing is acknowledged (core would checkpoint it), must succeed once the
 * broker is back within the default retry budget, and nothing may be missing afterwards.
 */
test('broker stopped for 30 s mid-stream: write waits, then delivers everything', { timeout: 300_000 }, async () => {
  await using kafka = await startKafka({ fresh: true });
  const topic = uniqueName('ns-it-outage');
  await using handle = createSink({ brokers: kafka.brokers.join(','), topic, num_partitions: 3 });
  await handle.sink.open([table]);

  const expected = new Map<number, number | undefined>();
  const batch = (versions: number[], ids: number[]) =>
    ids.flatMap((id) =>
      versions.map((v) => {
        expected.set(id, v);
        return upsert(id, v);
      }),
    );

  await handle.sink.write(batch([0, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));

  await kafka.stop();
  const during = [...batch([2, 3], [1, 2, 3, 4, 5]), remove(6), remove(7)];
  expected.set(6, undefined);
  expected.set(7, undefined);
  let settled: 'pending' | 'resolved' | 'rejected' = 'pending';
  const inFlight = handle.sink.write(during).then(
    () => {
      settled = 'resolved';
    },
    (err: unknown) => {
      settled = 'rejected';
      throw err;
    },
  );
  await sleep(30_000);
  expect(settled).toBe('pending');
  await kafka.start();
  await inFlight;
  expect(handle.logger.lines.some((l) => l.startsWith('WRN kafka produce failed, retrying'))).toBe(true);

  await handle.sink.write(batch([4], [1, 8, 11]));

  // Oracle: the last record per key (a tombstone removes it) equals the expected final state.
  const records = await consumeAll(kafka.brokers, topic);
  const last = new Map<number, number | undefined>();
  for (const record of records) {
    const [id] = JSON.parse(record.key!) as [number];
    if (record.value === null) {
      last.set(id, undefined);
      continue;
    }
    const decoded = decodeJsonMessage(record.value, { table });
    last.set(id, decoded.op === 'delete' ? undefined : (decoded.after?.version as number));
  }
  expect(Object.fromEntries([...last].filter(([, v]) => v !== undefined))).toEqual(
    Object.fromEntries([...expected].filter(([, v]) => v !== undefined)),
  );
  // Every change is there at least once (replays allowed, gaps not).
  const positions = new Set(records.map((r) => r.headers['ns-position']));
  expect(positions.size).toBe(seq);

  // A broker that stays away longer than the retry budget fails the write for good, so
  // core marks the pipeline ERRORED with the cause instead of retrying forever.
  await using impatient = createSink({
    brokers: kafka.brokers.join(','),
    topic,
    max_retries: 1,
    retry_backoff_ms: 200,
  });
  await impatient.sink.open([table]);
  await kafka.stop();
  const error = await impatient.sink.write([upsert(1, 5)]).catch((e: unknown) => e);
  expect(NanosyncError.is(error, 'NS_K6001')).toBe(true);
  expect((error as NanosyncError).retriable).toBe(false);
  expect((error as Error).message).toContain(`"${topic}"`);
  expect((error as Error).message).toContain('after 1 retries');
});
