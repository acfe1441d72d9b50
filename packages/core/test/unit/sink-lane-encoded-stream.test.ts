import { describe, expect, it } from 'vitest';
import {
  type ChangeEvent,
  type EncodedBatch,
  type EncodedEvents,
  ErrorCode,
  NanosyncError,
  recordError,
  type Sink,
  type TableSchema,
} from '../../src/index.js';
import { createLogger } from '../../src/host.js';
import type { StateStore } from '../../src/state/store.js';
import { DEFAULT_RETRY_POLICY } from '../../src/runtime/backoff.js';
import { type EncodedPart, SinkLane } from '../../src/runtime/sink-lane.js';
import { SinkStats } from '../../src/runtime/stats.js';

// Stream batches a worker encoded reach a lane as parts. Consecutive parts whose records are
// already there are written together (`Sink.writeEncodedParts`): one write instead of one per
// batch, with the checkpoint of the last of them, never past what the write held.

const table: TableSchema = { schema: 'public', name: 't', keyColumns: ['id'], columns: [] };
const position = (i: number) => String(i).padStart(4, '0');
const event = (i: number): ChangeEvent => ({
  op: 'insert',
  table,
  key: { id: String(i) },
  after: { id: String(i) },
  position: position(i),
});

/** A stream part of events `from`..`to`, its records named by its first event; `ready` unless `pending`. */
function part(from: number, to: number, pending = false) {
  const batch: EncodedBatch = { bytes: new ArrayBuffer(from), records: to - from + 1, size: 10 };
  let resolve!: (b: EncodedBatch) => void;
  const p: EncodedPart = {
    stream: true,
    batch: pending
      ? new Promise<EncodedBatch>((r) => {
          resolve = r;
        })
      : Promise.resolve(batch),
    info: { count: to - from + 1, first: position(from), last: position(to) },
    events: () => Array.from({ length: to - from + 1 }, (_, i) => event(from + i)),
    bytes: 64,
    ...(pending ? {} : { ready: batch }),
  };
  const settle = () => {
    p.ready = batch;
    resolve(batch);
  };
  return { part: p, settle, safe: position(to) };
}

function harness(options: { parts?: boolean; refuse?: boolean } = {}) {
  const saves: string[] = [];
  const store = {
    saveCheckpoint: async (_pipeline: string, _sink: string, at: string) => {
      saves.push(at);
    },
  } as unknown as StateStore;
  /** Each write: the first event of each batch in it (`e` for a decoded write). */
  const writes: string[][] = [];
  const releases: (() => void)[] = [];
  let writing: (() => void) | undefined;
  const wait = (what: string[]) =>
    new Promise<void>((resolve) => {
      writes.push(what);
      releases.push(resolve);
      writing?.();
    });
  const name = (b: EncodedBatch) => position(b.bytes.byteLength);
  const sink: Sink = {
    open: async () => {},
    write: (events) => wait(events.map((e) => `e${e.position}`)),
    writeEncoded: (batch: EncodedBatch, _events: EncodedEvents) => wait([name(batch)]),
    ...(options.parts === false
      ? {}
      : {
          writeEncodedParts: (parts: readonly { batch: EncodedBatch; events: EncodedEvents }[]) => {
            if (options.refuse && parts.length > 1)
              return Promise.reject(recordError(new NanosyncError(ErrorCode.SinkWriteFailed, 'too large'), 3));
            return wait(parts.map((p) => name(p.batch)));
          },
        }),
    close: async () => {},
  };
  const stats = new SinkStats('0:s');
  const lane = new SinkLane({
    pipeline: 'p',
    name: '0:s',
    sink,
    store,
    mapper: undefined,
    maxEvents: 1_000,
    maxBytes: 1 << 30,
    maxWriteEvents: 5,
    retry: DEFAULT_RETRY_POLICY,
    stats,
    logger: createLogger({ write: () => {} }),
    checkpoint: undefined,
    onCheckpoint: () => {},
    onFailure: (err) => {
      throw err;
    },
  });
  const nextWrite = () =>
    new Promise<void>((resolve) => {
      writing = resolve;
    });
  const settle = async () => {
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  const finishWrite = async () => {
    releases.shift()!();
    await settle();
  };
  return { lane, saves, writes, stats, nextWrite, finishWrite, settle };
}

describe('encoded stream parts in a sink lane', () => {
  it('writes consecutive parts that are ready in one write, up to the events-per-write bound, and checkpoints the last', async () => {
    const h = harness();
    h.lane.start();
    const first = part(1, 2);
    let started = h.nextWrite();
    h.lane.pushEncoded(first.part, first.safe);
    await started;
    // Queued while the first write is in flight: 2 + 2 events fit in one write of 5, the third
    // part would pass the bound; the last one's records are not there yet.
    const queued = [part(3, 4), part(5, 6), part(7, 8), part(9, 10, true)];
    for (const q of queued) h.lane.pushEncoded(q.part, q.safe);
    started = h.nextWrite();
    await h.finishWrite();
    await started;
    expect(h.writes).toEqual([['0001'], ['0003', '0005']]);
    started = h.nextWrite();
    await h.finishWrite();
    await started;
    // Its follower is not ready: written alone, not waited for.
    expect(h.writes[2]).toEqual(['0007']);
    await h.finishWrite();
    expect(h.writes).toHaveLength(3);
    started = h.nextWrite();
    queued[3]!.settle();
    await started;
    await h.finishWrite();
    expect(h.writes).toEqual([['0001'], ['0003', '0005'], ['0007'], ['0009']]);
    // Writes with more queued behind them defer their checkpoint (as decoded writes do).
    expect(h.saves).toEqual(['0002', '0010']);
    expect(h.stats.rowsWritten).toBe(10);
    await h.lane.drain();
  });

  it('a joined write checkpoints the last safe position of the parts it held', async () => {
    const h = harness();
    h.lane.start();
    const first = part(1, 1);
    let started = h.nextWrite();
    h.lane.pushEncoded(first.part, first.safe);
    await started;
    const mid = part(2, 3);
    const last = part(4, 5);
    // The middle part ends inside a transaction (no safe position); the last ends one.
    h.lane.pushEncoded(mid.part, undefined);
    h.lane.pushEncoded(last.part, last.safe);
    started = h.nextWrite();
    await h.finishWrite();
    await started;
    expect(h.writes).toEqual([['0001'], ['0002', '0004']]);
    expect(h.saves).toEqual(['0001']);
    await h.finishWrite();
    expect(h.saves).toEqual(['0001', '0005']);
    expect(h.lane.checkpoint).toBe('0005');
    await h.lane.drain();
  });

  it('writes one part per write for a sink without writeEncodedParts', async () => {
    const h = harness({ parts: false });
    h.lane.start();
    const parts = [part(1, 1), part(2, 2), part(3, 3)];
    let started = h.nextWrite();
    h.lane.pushEncoded(parts[0]!.part, parts[0]!.safe);
    await started;
    h.lane.pushEncoded(parts[1]!.part, parts[1]!.safe);
    h.lane.pushEncoded(parts[2]!.part, parts[2]!.safe);
    for (let i = 0; i < 2; i++) {
      started = h.nextWrite();
      await h.finishWrite();
      await started;
    }
    await h.finishWrite();
    expect(h.writes).toEqual([['0001'], ['0002'], ['0003']]);
    await h.lane.drain();
  });

  it('a record the sink refuses in a joined write: every joined part is written decoded, in order', async () => {
    const h = harness({ refuse: true });
    h.lane.start();
    const first = part(1, 1);
    let started = h.nextWrite();
    h.lane.pushEncoded(first.part, first.safe);
    await started;
    const queued = [part(2, 3), part(4, 4)];
    for (const q of queued) h.lane.pushEncoded(q.part, q.safe);
    started = h.nextWrite();
    await h.finishWrite();
    await started;
    expect(h.writes[1]).toEqual(['e0002', 'e0003', 'e0004']);
    await h.finishWrite();
    expect(h.saves).toEqual(['0001', '0004']);
    await h.lane.drain();
  });
});
