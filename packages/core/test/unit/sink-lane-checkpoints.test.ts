import { expect, it } from 'vitest';
import {
  type ChangeEvent,
  ErrorCode,
  eventError,
  NanosyncError,
  type Sink,
  type TableSchema,
} from '../../src/index.js';
import { createLogger } from '../../src/host.js';
import type { StateStore } from '../../src/state/store.js';
import { DEFAULT_RETRY_POLICY } from '../../src/runtime/backoff.js';
import { CHECKPOINT_MAX_DEFER_MS, SinkLane } from '../../src/runtime/sink-lane.js';
import { SinkStats } from '../../src/runtime/stats.js';

const table: TableSchema = { schema: 'public', name: 't', keyColumns: ['id'], columns: [] };
const event = (i: number): ChangeEvent => ({
  op: 'insert',
  table,
  key: { id: String(i) },
  after: { id: String(i) },
  position: String(i).padStart(4, '0'),
});

/**
 * A lane whose sink writes only when the test lets it, over a store that records every
 * checkpoint it is asked to save (a stand-in for the SQLite store: only the order and the
 * number of saves matter here), on a clock the test moves.
 */
function harness() {
  const saves: string[] = [];
  const store = {
    saveCheckpoint: async (_pipeline: string, _sink: string, position: string) => {
      saves.push(position);
    },
  } as unknown as StateStore;
  const writes: string[][] = [];
  const releases: (() => void)[] = [];
  let writing: (() => void) | undefined;
  const sink: Sink = {
    open: async () => {},
    write: (events) =>
      new Promise<void>((resolve) => {
        writes.push(events.map((e) => e.position));
        releases.push(resolve);
        writing?.();
      }),
    close: async () => {},
  };
  const clock = { ms: 10_000 };
  let checkpointCalls = 0;
  const lane = new SinkLane({
    pipeline: 'p',
    name: '0:s',
    sink,
    store,
    mapper: undefined,
    maxEvents: 1_000,
    maxBytes: 1 << 30,
    maxWriteEvents: 2,
    retry: DEFAULT_RETRY_POLICY,
    stats: new SinkStats('0:s'),
    logger: createLogger({ write: () => {} }),
    checkpoint: undefined,
    onCheckpoint: () => {
      checkpointCalls++;
    },
    onFailure: (err) => {
      throw err;
    },
    now: () => clock.ms,
  });
  /** Resolves once the sink's next write has started. */
  const nextWrite = () =>
    new Promise<void>((resolve) => {
      writing = resolve;
    });
  /** Let the oldest pending write finish and the lane go on until its next write or idle. */
  const finishWrite = async () => {
    releases.shift()!();
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  return { lane, saves, writes, clock, nextWrite, finishWrite, checkpoints: () => checkpointCalls };
}

it('an idle lane saves each transaction checkpoint right after its write', async () => {
  const h = harness();
  h.lane.start();
  for (let i = 1; i <= 3; i++) {
    const started = h.nextWrite();
    h.lane.push([event(i)], event(i).position, 64, undefined);
    await started;
    await h.finishWrite();
    expect(h.saves).toEqual(Array.from({ length: i }, (_, j) => event(j + 1).position));
    expect(h.lane.checkpoint).toBe(event(i).position);
  }
  expect(h.checkpoints()).toBe(3);
  await h.lane.drain();
});

it('with batches waiting, the checkpoint is saved once the queue is empty, not after every write', async () => {
  const h = harness();
  h.lane.start();
  let started = h.nextWrite();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  await started;
  // Six transactions arrive while the first write is in flight: three writes of two.
  for (let i = 2; i <= 7; i++) h.lane.push([event(i)], event(i).position, 64, undefined);
  for (let w = 0; w < 3; w++) {
    started = h.nextWrite();
    await h.finishWrite();
    await started;
    // The lane's first checkpoint is saved at once; after that, a write with more queued
    // behind it is not saved (and the source is not acknowledged past what is saved).
    expect(h.saves).toEqual(['0001']);
    expect(h.lane.checkpoint).toBe('0001');
  }
  await h.finishWrite();
  // Queue empty: the newest durable position is saved, once.
  expect(h.writes).toEqual([['0001'], ['0002', '0003'], ['0004', '0005'], ['0006', '0007']]);
  expect(h.saves).toEqual(['0001', '0007']);
  expect(h.lane.checkpoint).toBe('0007');
  expect(h.checkpoints()).toBe(2);
  await h.lane.drain();
});

it('under a continuous load the checkpoint is still saved at least every CHECKPOINT_MAX_DEFER_MS', async () => {
  const h = harness();
  h.lane.start();
  let started = h.nextWrite();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  await started;
  h.lane.push([event(2)], event(2).position, 64, undefined);
  h.lane.push([event(3)], event(3).position, 64, undefined);
  // The first write ends with work queued: the first save is due at once (none saved yet).
  started = h.nextWrite();
  await h.finishWrite();
  await started;
  expect(h.saves).toEqual(['0001']);
  h.lane.push([event(4)], event(4).position, 64, undefined);
  // Still busy, the clock has not moved: deferred.
  started = h.nextWrite();
  await h.finishWrite();
  await started;
  expect(h.saves).toEqual(['0001']);
  h.lane.push([event(5)], event(5).position, 64, undefined);
  h.clock.ms += CHECKPOINT_MAX_DEFER_MS;
  started = h.nextWrite();
  await h.finishWrite();
  await started;
  expect(h.saves).toEqual(['0001', '0004']);
  await h.finishWrite();
  expect(h.saves).toEqual(['0001', '0004', '0005']);
  await h.lane.drain();
});

it('draining saves the last durable position', async () => {
  const h = harness();
  h.lane.start();
  const started = h.nextWrite();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  await started;
  h.lane.push([event(2)], event(2).position, 64, undefined);
  const drained = h.lane.drain();
  await h.finishWrite();
  await h.finishWrite();
  await drained;
  expect(h.saves.at(-1)).toBe('0002');
  expect(h.lane.checkpoint).toBe('0002');
});

it('an event set aside from a snapshot chunk keeps the rest of the chunk in one write for a sink that skips its last committed chunk', async () => {
  const run = async (skipsCommittedChunk: boolean) => {
    const writes: string[][] = [];
    const read = (i: number): ChangeEvent => ({ ...event(i), op: 'read', chunk: 'c1' });
    const sink: Sink = {
      skipsCommittedChunk,
      open: async () => {},
      write: async (events) => {
        writes.push(events.map((e) => e.position));
        const bad = events.findIndex((e) => e.position === '0002');
        if (bad >= 0)
          throw eventError(
            new NanosyncError(ErrorCode.SinkWriteFailed, 'cannot write event 2', { retriable: false }),
            bad,
          );
      },
      close: async () => {},
    };
    const lane = new SinkLane({
      pipeline: 'p',
      name: '0:s',
      sink,
      store: { saveCheckpoint: async () => {} } as unknown as StateStore,
      mapper: undefined,
      maxEvents: 1_000,
      maxBytes: 1 << 30,
      maxWriteEvents: 100,
      retry: DEFAULT_RETRY_POLICY,
      onError: 'skip',
      stats: new SinkStats('0:s'),
      logger: createLogger({ write: () => {} }),
      checkpoint: undefined,
      onCheckpoint: () => {},
      onFailure: (err) => {
        throw err;
      },
    });
    lane.start();
    lane.push([1, 2, 3, 4].map(read), '0004', 0, undefined);
    await lane.drain();
    return writes;
  };
  expect(await run(true)).toEqual([
    ['0001', '0002', '0003', '0004'],
    ['0001', '0003', '0004'],
  ]);
  // Other sinks: the events before it, then the rest (as for stream events).
  expect(await run(false)).toEqual([['0001', '0002', '0003', '0004'], ['0001'], ['0003', '0004']]);
});
