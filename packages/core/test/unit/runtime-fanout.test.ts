import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { fakeSlowSink, InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

async function cdcPipeline(db: InMemoryDatabase, sinks: ReturnType<typeof inMemorySink>[], runtime = {}) {
  const p = h.registry.add(testPipeline(db, { name: 'fan', type: 'cdc', sinks: sinks.map((sink) => ({ sink })) }));
  const engine = h.engine({ runtime });
  await engine.start();
  await engine.apply('fan', p.definition, p.hash, p.type);
  await waitForState(engine, 'fan', 'LIVE_CDC');
  await until(() => db.calls.some((c) => c.startsWith('stream:')), 'stream started');
  return engine;
}

describe('fan-out, checkpoints and acknowledgement', () => {
  it('checkpoints each sink after its durable write and acknowledges the minimum over sinks, at transaction ends only', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ maxBatchEvents: 2 });
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const seenAtAck: { ack: string; checkpoints: Record<string, string> }[] = [];
    db.onAcknowledge = async (ack) => {
      seenAtAck.push({ ack, checkpoints: await h.store.getCheckpoints('fan') });
    };
    await cdcPipeline(db, [fast, slow]);

    // A five-event transaction arrives as three batches; only the last one is safe.
    const t1 = db.commit(
      [1, 2, 3, 4, 5].map((id) => ({
        table: 'public.orders',
        op: 'insert' as const,
        row: { id: String(id), status: 'new' },
      })),
    );
    const t2 = db.insert('public.orders', 6);
    await until(() => fast.events.length === 6, 'fast sink has everything');
    await until(async () => (await h.store.getCheckpoints('fan'))['0:mem0'] === t2, 'fast checkpoint');
    // The slow sink has nothing durable yet: no acknowledgement at all.
    expect(db.acks).toEqual([]);
    expect((await h.store.getCheckpoints('fan'))['1:mem1']).toBeUndefined();

    slow.gate.release();
    await until(() => db.acks.includes(t2), 'acknowledged t2');
    expect(slow.positions()).toEqual(fast.positions());
    expect(await h.store.getCheckpoints('fan')).toEqual({ '0:mem0': t2, '1:mem1': t2 });
    expect(db.ackViolations).toEqual([]);
    for (const { ack, checkpoints } of seenAtAck) {
      expect([t1, t2]).toContain(ack);
      // Never past what the store holds for any sink.
      for (const cp of Object.values(checkpoints)) expect(ack <= cp).toBe(true);
      expect(Object.keys(checkpoints)).toHaveLength(2);
    }
  });

  it('lets a fast sink run ahead of a slow one until the slow queue is full, then pauses the source', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const engine = await cdcPipeline(db, [fast, slow], { queue: { maxEvents: 10 }, maxWriteEvents: 3 });
    const pulledBefore = db.batchesPulled;

    for (let id = 1; id <= 5; id++) db.insert('public.orders', id);
    await until(() => fast.events.length === 5, 'fast sink got 5 while the slow one is stuck');
    expect(slow.events).toHaveLength(0);
    expect(slow.waiting).toBe(1);
    const status = await engine.status('fan');
    expect(status.sinks.find((s) => s.name === '1:mem1')?.queueDepth).toBe(5);
    expect(status.sinks.find((s) => s.name === '0:mem0')?.queueDepth).toBe(0);

    for (let id = 6; id <= 25; id++) db.insert('public.orders', id);
    await until(() => fast.events.length >= 10, 'fast sink reached the slow queue bound');
    // Give a broken backpressure every chance to show: the source must stay paused.
    await delay(100);
    expect(db.batchesPulled - pulledBefore).toBe(10);
    expect(fast.events).toHaveLength(10);

    slow.gate.release();
    await until(() => slow.events.length === 25 && fast.events.length === 25, 'both sinks have all 25');
    const ids = (s: typeof fast) => s.events.map((e) => Number(e.key.id));
    expect(ids(fast)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(ids(slow)).toEqual(ids(fast));
  });

  it('acknowledges keepalives so an idle pipeline releases WAL', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const engine = await cdcPipeline(db, [sink]);
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'ack t1');
    const k1 = db.keepalive();
    const k2 = db.keepalive();
    await until(() => db.acks.includes(k2), 'keepalive acknowledged');
    expect(sink.events).toHaveLength(1);
    expect((await h.store.getCheckpoints('fan'))['0:mem0']).toBe(k2);
    expect(db.acks.every((a) => [t1, k1, k2].includes(a))).toBe(true);
    const status = await engine.status('fan');
    expect(status.lagSeconds).toBe(0);
    expect(status.checkpoint).toBe(k2);
  });

  it('keeps a keepalive behind a slow write: no acknowledgement past events not yet durable', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = fakeSlowSink();
    await cdcPipeline(db, [sink]);
    db.insert('public.orders', 1);
    await until(() => sink.waiting === 1, 'write in flight');
    const k = db.keepalive();
    await delay(50);
    expect(db.acks).toEqual([]);
    sink.gate.release();
    await until(() => db.acks.includes(k), 'keepalive acknowledged after the write');
  });

  it('a graceful stop acknowledges the final checkpoint while the change stream is still open, then closes it', async () => {
    // PostgreSQL reports acknowledgements on the stream's own connection: closed first, the
    // last acknowledgement would never reach the slot.
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = fakeSlowSink();
    const openAtAck: number[] = [];
    db.onAcknowledge = () => {
      openAtAck.push(db.openStreams);
    };
    const engine = await cdcPipeline(db, [sink]);
    const t1 = db.insert('public.orders', 1);
    await until(() => sink.waiting === 1, 'write in flight');
    const stopped = engine.stop();
    // Give a stream that would close at once the time to do so before the write finishes.
    await delay(50);
    sink.gate.release();
    await stopped;
    expect(db.acks).toEqual([t1]);
    expect(openAtAck).toEqual([1]);
    expect(db.openStreams).toBe(0);
  });
});
