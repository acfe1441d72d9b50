import { type ChangeEvent, ErrorCode, NanosyncError, type TableSchema } from '@nanosync/core';
import { startKafka } from '@nanosync/testcontainers';
import { describe, expect, test } from 'vitest';
import { consumeCommitted, createSink, uniqueName } from './helpers.js';

const table: TableSchema = {
  schema: 'public',
  name: 'leased',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: false },
  ],
};

let seq = 0;
const insert = (id: number): ChangeEvent => {
  seq += 1;
  return {
    table,
    op: 'insert',
    key: { id },
    // Enough text that gzip has something to do in zlib's thread pool.
    after: { id, note: `row ${id} `.repeat(40) },
    position: `${seq.toString(16).padStart(16, '0')}:00000000`,
  };
};

/**
 * A lease check that answers yes until `lapseAt` checks have been made, then no: the process
 * "froze" past its lease between two checks of one write.
 */
function lease() {
  const state = { checks: 0, lapseAt: Number.POSITIVE_INFINITY };
  return { state, mayWrite: () => ++state.checks < state.lapseAt };
}

/**
 * The lease runs out after the sink's check at the start of a send and before the request's
 * bytes go out (a gzip request is compressed in zlib's thread pool in between). Nothing of that
 * request may reach the topic, and the write fails with the lease refusal, retriable, as core's
 * own check fails it: a request a frozen server sends when it wakes can land after the new
 * holder's writes (a stale insert after its delete brings a row back).
 */
describe.each([
  ['at_least_once', {}],
  ['exactly_once', { delivery: 'exactly_once' }],
])('%s: the lease is checked on the request compressed and ready to send', (_name, delivery) => {
  test('a request whose lease ran out while it was compressed is not sent', { timeout: 180_000 }, async () => {
    await using kafka = await startKafka();
    const topic = uniqueName('ns-it-lease');
    const { state, mayWrite } = lease();
    await using handle = createSink(
      { brokers: kafka.brokers.join(','), topic, compression: 'gzip', num_partitions: 3, ...delivery },
      { mayWrite },
    );
    await handle.sink.open([table]);
    await handle.sink.write([1, 2, 3, 4].map(insert));
    const before = state.checks;
    expect(before).toBeGreaterThanOrEqual(2); // at the send, and on the request's bytes

    // The first check of this write (at the send) passes; the one on the finished request does not.
    state.lapseAt = before + 2;
    const error = await handle.sink.write([5, 6, 7, 8].map(insert)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(error, ErrorCode.PipelineLeaseHeld)).toBe(true);
    expect((error as NanosyncError).retriable).toBe(true);
    expect((error as Error).message).toContain('lease expired locally; not sending until renewed');
    // Refused once, not retried by the client or the sink.
    expect(state.checks).toBe(before + 2);

    // Every record written, those of aborted transactions too: the refused request's are not there.
    const written = await consumeCommitted(kafka.brokers, topic, { idleMs: 2000, readUncommitted: true });
    const ids = written.map((r) => JSON.parse(r.key!)[0] as number);
    expect(ids.sort((a, b) => a - b)).toEqual([1, 2, 3, 4]);
  });
});
