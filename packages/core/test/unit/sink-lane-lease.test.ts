import { expect, it } from 'vitest';
import { type ChangeEvent, ErrorCode, NanosyncError, type Sink, type TableSchema } from '../../src/index.js';
import { isRetriable } from '../../src/errors.js';
import { createLogger } from '../../src/host.js';
import type { StateStore } from '../../src/state/store.js';
import { LEASE_WRITE_MARGIN, LeaseKeeper } from '../../src/runtime/lease-keeper.js';
import { SinkLane } from '../../src/runtime/sink-lane.js';
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
 * A lane over a recording sink and store (stand-ins: only which writes reach the sink
 * matters), whose lease the test declares valid or not. `failNext` makes the sink's next
 * write fail with a retriable error and expire the lease, as a freeze during a send would.
 */
function harness() {
  const lease = { valid: true, expireOnFailure: false };
  const saves: string[] = [];
  const store = {
    saveCheckpoint: async (_pipeline: string, _sink: string, position: string) => {
      saves.push(position);
    },
  } as unknown as StateStore;
  const writes: string[][] = [];
  const lines: string[] = [];
  let failNext = false;
  let written: (() => void) | undefined;
  const sink: Sink = {
    open: async () => {},
    write: async (events) => {
      writes.push(events.map((e) => e.position));
      if (failNext) {
        failNext = false;
        if (lease.expireOnFailure) lease.valid = false;
        throw new NanosyncError(ErrorCode.SinkWriteFailed, 'broker away', { retriable: true });
      }
      written?.();
    },
    close: async () => {},
  };
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<unknown>((resolve) => {
    failed = resolve;
  });
  const lane = new SinkLane({
    pipeline: 'p',
    name: '0:s',
    sink,
    store,
    mapper: undefined,
    maxEvents: 1_000,
    maxBytes: 1 << 30,
    maxWriteEvents: 10,
    retry: { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 1 },
    stats: new SinkStats('0:s'),
    logger: createLogger({ write: (line) => lines.push(line) }),
    checkpoint: undefined,
    onCheckpoint: () => {},
    onFailure: (err) => failed(err),
    leaseValid: () => lease.valid,
  });
  const nextWrite = () =>
    new Promise<void>((resolve) => {
      written = resolve;
    });
  return {
    lane,
    lease,
    saves,
    writes,
    lines,
    failure,
    nextWrite,
    failNextWrite: () => {
      failNext = true;
    },
  };
}

function expectLeaseRefusal(err: unknown): void {
  expect(NanosyncError.is(err, ErrorCode.PipelineLeaseHeld)).toBe(true);
  expect(isRetriable(err)).toBe(true);
  expect((err as Error).message).toContain('lease expired locally; not writing 1 events until renewed');
}

it('a lane whose lease is no longer valid by the local clock does not call sink.write', async () => {
  const h = harness();
  h.lane.start();
  const first = h.nextWrite();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  await first;
  // Frozen past the lease: the next batch must not reach the sink, nor its checkpoint the store.
  h.lease.valid = false;
  h.lane.push([event(2)], event(2).position, 64, undefined);
  expectLeaseRefusal(await h.failure);
  expect(h.writes).toEqual([['0001']]);
  expect(h.saves).toEqual(['0001']);
});

it('a retry after a failed send is not made once the lease expired meanwhile', async () => {
  const h = harness();
  h.lease.expireOnFailure = true;
  h.failNextWrite();
  h.lane.start();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  expectLeaseRefusal(await h.failure);
  // The failed attempt only: no retry after the lease ran out.
  expect(h.writes).toEqual([['0001']]);
  expect(h.saves).toEqual([]);
});

it('a lease refusal while the lane drains (the runner stopping) is logged once, at warn, naming the safeguard', async () => {
  const h = harness();
  h.lane.start();
  const first = h.nextWrite();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  await first;
  h.lease.valid = false;
  h.lane.push([event(2)], event(2).position, 64, undefined);
  await h.lane.drain();
  expectLeaseRefusal(await h.failure);
  expect(h.writes).toEqual([['0001']]);
  const refusals = h.lines.filter((l) => l.includes('lease expired locally'));
  expect(refusals).toEqual([
    'WRN sink write refused: lease expired locally; this server writes nothing more until renewed sink=0:s safeguard="lease expired locally" not_written="1 events" lane=stopping',
  ]);
});

it('a lease refusal of a running lane is logged once too', async () => {
  const h = harness();
  h.lease.valid = false;
  h.lane.start();
  h.lane.push([event(1)], event(1).position, 64, undefined);
  expectLeaseRefusal(await h.failure);
  expect(h.lines.filter((l) => l.startsWith('WRN sink write refused: lease expired locally'))).toHaveLength(1);
  expect(h.lines.some((l) => l.includes('lane=stopping'))).toBe(false);
});

it('the keeper allows writes until TTL less the margin after the last confirmed renewal was asked for', async () => {
  const clock = { ms: 1_000 };
  let renewed: (() => void) | undefined;
  let answer: ((value: { acquired: true; epoch: number }) => void) | undefined;
  let calls = 0;
  // The first renewal answers when the test says so; any later one fails (changes nothing).
  const store = {
    acquireLease: () =>
      ++calls === 1
        ? new Promise((resolve) => {
            answer = resolve;
            renewed?.();
          })
        : Promise.reject(new Error('store away')),
  } as unknown as StateStore;
  const keeper = new LeaseKeeper({
    store,
    pipeline: 'p',
    holder: 'h',
    epoch: 7,
    ttlMs: 10_000,
    intervalMs: 1,
    logger: createLogger({ write: () => {} }),
    onLost: () => {},
    now: () => clock.ms,
  });
  const limit = 10_000 * (1 - LEASE_WRITE_MARGIN);
  clock.ms = 1_000 + limit - 1;
  expect(keeper.mayWrite()).toBe(true);
  clock.ms = 1_000 + limit;
  expect(keeper.mayWrite()).toBe(false);
  // A renewal asked for now and confirmed later counts from when it was asked.
  const asked = new Promise<void>((resolve) => {
    renewed = resolve;
  });
  keeper.start();
  await asked;
  const askedAt = clock.ms;
  clock.ms += 5_000;
  expect(keeper.mayWrite()).toBe(false);
  answer!({ acquired: true, epoch: 7 });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  await keeper.stop();
  expect(keeper.mayWrite()).toBe(true);
  clock.ms = askedAt + limit;
  expect(keeper.mayWrite()).toBe(false);
});
