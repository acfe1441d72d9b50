import { type ChangeBatch, type ChangeEvent, ErrorCode, NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { encodePosition } from '../../src/position.js';
import { BatchQueue } from '../../src/stream/batch-queue.js';

const table = { schema: 'public', name: 't', columns: [], keyColumns: [] };
function event(lsn: number, index: number): ChangeEvent {
  return { op: 'insert', table, key: {}, after: {}, position: encodePosition(BigInt(lsn), index) };
}

async function take(queue: BatchQueue): Promise<ChangeBatch> {
  const result = await queue.next();
  if (result.done) throw new Error('queue ended');
  return result.value;
}

/** Resolves to true when `promise` settled within a few macrotasks. */
async function settles(promise: Promise<unknown> | undefined): Promise<boolean> {
  let done = false;
  void Promise.resolve(promise).then(() => {
    done = true;
  });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('BatchQueue', () => {
  it('a large transaction is cut into bounded batches; only the last one carries safePosition', async () => {
    const queue = new BatchQueue({ maxEvents: 3, maxQueuedBatches: 100 });
    for (let i = 1; i <= 7; i++) await queue.push(event(0x100, i), 10);
    queue.commit(encodePosition(0x100n, 7), 0x180n);
    const batches = [await take(queue), await take(queue), await take(queue)];
    expect(batches.map((b) => b.events.length)).toEqual([3, 3, 1]);
    expect(batches.map((b) => b.safePosition)).toEqual([undefined, undefined, encodePosition(0x100n, 7)]);
    expect(batches.flatMap((b) => b.events.map((e) => e.position))).toEqual(
      [1, 2, 3, 4, 5, 6, 7].map((i) => encodePosition(0x100n, i)),
    );
  });

  it('a transaction whose last batch is full still gets safePosition on that batch', async () => {
    const queue = new BatchQueue({ maxEvents: 2, maxQueuedBatches: 100 });
    const received: ChangeBatch[] = [];
    const consumer = (async () => {
      while (received.reduce((n, b) => n + b.events.length, 0) < 4) received.push(await take(queue));
    })();
    for (let i = 1; i <= 4; i++) {
      await queue.push(event(0x100, i), 1);
      await new Promise((resolve) => setImmediate(resolve));
    }
    queue.commit(encodePosition(0x100n, 4), 0x180n);
    await consumer;
    expect(received.map((b) => [b.events.length, b.safePosition])).toEqual([
      [2, undefined],
      [2, encodePosition(0x100n, 4)],
    ]);
  });

  it('a transaction that fills a batch exactly marks that batch at its commit', async () => {
    const queue = new BatchQueue({ maxEvents: 2, maxQueuedBatches: 100 });
    await queue.push(event(0x100, 1), 1);
    await queue.push(event(0x100, 2), 1);
    queue.commit(encodePosition(0x100n, 2), 0x180n);
    expect(await take(queue)).toEqual({
      events: [event(0x100, 1), event(0x100, 2)],
      safePosition: encodePosition(0x100n, 2),
    });
    expect(queue.depth).toEqual({ pendingEvents: 0, queuedBatches: 0 });
  });

  it('a full batch is cut at the last commit inside it, the rest stays pending', async () => {
    const queue = new BatchQueue({ maxEvents: 4, maxQueuedBatches: 100 });
    await queue.push(event(0x100, 1), 1);
    await queue.push(event(0x100, 2), 1);
    queue.commit(encodePosition(0x100n, 2), 0x180n);
    await queue.push(event(0x200, 1), 1);
    await queue.push(event(0x200, 2), 1);
    const first = await take(queue);
    expect(first).toEqual({ events: [event(0x100, 1), event(0x100, 2)], safePosition: encodePosition(0x100n, 2) });
    expect(queue.depth.pendingEvents).toBe(2);
  });

  it('a waiting consumer gets each commit at once; a busy one gets several transactions per batch', async () => {
    const queue = new BatchQueue({ maxEvents: 100, maxQueuedBatches: 100 });
    const waiting = queue.next();
    await queue.push(event(0x100, 1), 1);
    queue.commit(encodePosition(0x100n, 1), 0x180n);
    expect((await waiting).value).toEqual({ events: [event(0x100, 1)], safePosition: encodePosition(0x100n, 1) });
    for (const lsn of [0x200, 0x300, 0x400]) {
      await queue.push(event(lsn, 1), 1);
      queue.commit(encodePosition(BigInt(lsn), 1), BigInt(lsn + 0x80));
    }
    await queue.push(event(0x500, 1), 1);
    const batch = await take(queue);
    expect(batch.events.map((e) => e.position)).toEqual(
      [0x200, 0x300, 0x400].map((lsn) => encodePosition(BigInt(lsn), 1)),
    );
    expect(batch.safePosition).toBe(encodePosition(0x400n, 1));
  });

  it('a waiting consumer gets every transaction committed in the same turn of the event loop as one batch', async () => {
    const queue = new BatchQueue({ maxEvents: 100, maxQueuedBatches: 100 });
    const waiting = queue.next();
    // As the stream handles the messages of one socket read: in microtasks, one after another.
    for (const lsn of [0x100, 0x200, 0x300]) {
      await queue.push(event(lsn, 1), 1);
      queue.commit(encodePosition(BigInt(lsn), 1), BigInt(lsn + 0x80));
    }
    const batch = (await waiting).value as ChangeBatch;
    expect(batch.events.map((e) => e.position)).toEqual(
      [0x100, 0x200, 0x300].map((lsn) => encodePosition(BigInt(lsn), 1)),
    );
    expect(batch.safePosition).toBe(encodePosition(0x300n, 1));
    // Asked again with one commit pending: it comes a turn later, with what committed meanwhile.
    await queue.push(event(0x400, 1), 1);
    queue.commit(encodePosition(0x400n, 1), 0x480n);
    const next = queue.next();
    await queue.push(event(0x500, 1), 1);
    queue.commit(encodePosition(0x500n, 1), 0x580n);
    expect(((await next).value as ChangeBatch).events.map((e) => e.position)).toEqual(
      [0x400, 0x500].map((lsn) => encodePosition(BigInt(lsn), 1)),
    );
  });

  it('committed events still pending when the queue fails go out before the failure', async () => {
    const queue = new BatchQueue({ maxEvents: 100, maxQueuedBatches: 100 });
    await queue.push(event(0x100, 1), 1);
    queue.commit(encodePosition(0x100n, 1), 0x180n);
    queue.fail(new Error('connection lost'));
    expect((await take(queue)).safePosition).toBe(encodePosition(0x100n, 1));
    await expect(queue.next()).rejects.toThrow('connection lost');
  });

  it('reports each safePosition with its flush LSN as it leaves', async () => {
    const queue = new BatchQueue({ maxEvents: 100 });
    const seen: [string, bigint][] = [];
    queue.onSafePosition = (position, flush) => seen.push([position, flush]);
    await queue.push(event(0x100, 1), 1);
    queue.commit(encodePosition(0x100n, 1), 0x180n);
    expect(seen).toEqual([]);
    await take(queue);
    expect(seen).toEqual([[encodePosition(0x100n, 1), 0x180n]]);
    queue.keepalive(encodePosition(0x900n, 0), 0x900n);
    expect(seen.at(-1)).toEqual([encodePosition(0x900n, 0), 0x900n]);
    expect(await take(queue)).toEqual({ events: [], safePosition: encodePosition(0x900n, 0) });
  });

  it('push blocks while maxQueuedBatches are waiting, and resumes when the consumer takes one', async () => {
    const queue = new BatchQueue({ maxEvents: 1, maxQueuedBatches: 2 });
    expect(await settles(queue.push(event(0x100, 1), 1))).toBe(true);
    expect(await settles(queue.push(event(0x100, 2), 1))).toBe(true);
    const blocked = queue.push(event(0x100, 3), 1);
    expect(await settles(blocked)).toBe(false);
    expect(queue.depth.queuedBatches).toBe(2);
    await take(queue);
    expect(await settles(blocked)).toBe(true);
  });

  it('memory stays bounded while a producer outruns a slow consumer', async () => {
    const queue = new BatchQueue({ maxEvents: 10, maxQueuedBatches: 3 });
    let produced = 0;
    let maxHeld = 0;
    const producer = (async () => {
      for (let i = 1; i <= 5000; i++) {
        await queue.push(event(0x100, i), 100);
        produced++;
        const { pendingEvents, queuedBatches } = queue.depth;
        maxHeld = Math.max(maxHeld, pendingEvents + queuedBatches * 10);
      }
      queue.commit(encodePosition(0x100n, 5000), 0x200n);
    })();
    let consumed = 0;
    let safe: string | undefined;
    while (consumed < 5000 || safe === undefined) {
      const batch = await take(queue);
      consumed += batch.events.length;
      safe = batch.safePosition;
      if (safe === undefined) expect(consumed).toBeLessThan(5000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await producer;
    expect(produced).toBe(5000);
    expect(safe).toBe(encodePosition(0x100n, 5000));
    expect(maxHeld).toBeLessThanOrEqual(40);
  });

  it('cuts by bytes as well as by count', async () => {
    const queue = new BatchQueue({ maxEvents: 1000, maxBytes: 250, maxQueuedBatches: 100 });
    for (let i = 1; i <= 5; i++) await queue.push(event(0x100, i), 100);
    expect((await take(queue)).events).toHaveLength(2);
    expect((await take(queue)).events).toHaveLength(2);
  });

  it('a failure reaches the consumer after the batches already queued; close ends the iteration', async () => {
    const queue = new BatchQueue({ maxEvents: 1 });
    await queue.push(event(0x100, 1), 1);
    await queue.push(event(0x100, 2), 1);
    queue.fail(new Error('boom'));
    expect((await take(queue)).events).toHaveLength(1);
    await expect(queue.next()).rejects.toThrow('boom');
    const closed = new BatchQueue();
    const waiting = closed.next();
    closed.close();
    expect(await waiting).toEqual({ done: true, value: undefined });
  });

  it('refuses a keepalive while events are pending', async () => {
    const queue = new BatchQueue();
    await queue.push(event(0x100, 1), 1);
    expect(() => queue.keepalive(encodePosition(0x900n, 0), 0x900n)).toThrow(/pending/);
    try {
      queue.keepalive(encodePosition(0x900n, 0), 0x900n);
    } catch (err) {
      expect(err).toBeInstanceOf(NanosyncError);
      expect((err as NanosyncError).code).toBe(ErrorCode.Internal);
    }
  });

  it('refuses a watermark inside an open transaction, as a NanosyncError', async () => {
    const queue = new BatchQueue();
    await queue.push(event(0x100, 1), 1);
    const refused = queue.watermark('w1', encodePosition(0x200n, 0));
    await expect(refused).rejects.toBeInstanceOf(NanosyncError);
    await expect(refused).rejects.toThrow(/open transaction/);
  });

  it('a watermark waits for room in the queue like an event does', async () => {
    const queue = new BatchQueue({ maxEvents: 1, maxQueuedBatches: 1 });
    await queue.push(event(0x100, 1), 1);
    queue.commit(encodePosition(0x100n, 1), 0x180n);
    const watermark = queue.watermark('w1', encodePosition(0x200n, 0));
    // The committed batch was queued, then the watermark batch: two waiting, room for one.
    expect(await settles(watermark)).toBe(false);
    expect((await take(queue)).safePosition).toBe(encodePosition(0x100n, 1));
    expect(await settles(watermark)).toBe(false);
    expect((await take(queue)).watermark).toEqual({ id: 'w1', position: encodePosition(0x200n, 0) });
    expect(await settles(watermark)).toBe(true);
  });
});
