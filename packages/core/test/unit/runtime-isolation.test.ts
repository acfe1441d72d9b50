import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NanosyncError } from '../../src/errors.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { fakeSlowSink, InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

type Sinks = { sink: ReturnType<typeof inMemorySink>; maxSpillBytes?: number }[];

async function fanPipeline(db: InMemoryDatabase, sinks: Sinks, runtime: Record<string, unknown> = {}) {
  const p = h.registry.add(testPipeline(db, { name: 'iso', type: 'cdc', sinks }));
  const engine = h.engine({ runtime: { dataDir: h.dir, ...runtime } });
  await engine.start();
  await engine.apply('iso', p.definition, p.hash, p.type);
  await waitForState(engine, 'iso', 'LIVE_CDC');
  await until(() => db.calls.some((c) => c.startsWith('stream:')), 'stream started');
  return engine;
}

const ids = (s: ReturnType<typeof inMemorySink>) => s.events.map((e) => Number(e.key.id));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Each id once, in order: replays of a prefix (after a re-read) are allowed, gaps and reordering are not. */
const distinctInOrder = (list: number[]) => list.filter((id, i) => list.indexOf(id) === i);

describe('sink isolation', () => {
  it('a slow sink spills its backlog to disk instead of holding the others back; memory stays at the queue bound', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const engine = await fanPipeline(db, [{ sink: fast }, { sink: slow }], {
      queue: { maxEvents: 10 },
      maxWriteEvents: 3,
    });
    for (let id = 1; id <= 200; id++) db.insert('public.orders', id);
    const last = db.insert('public.orders', 201);
    await until(() => fast.events.length === 201, 'the fast sink has everything while the slow one is stuck');
    const status = await engine.status('iso');
    const slowStatus = status.sinks.find((s) => s.name === '1:mem1')!;
    expect(slowStatus.state).toBe('spilling');
    expect(slowStatus.queueDepth).toBeLessThanOrEqual(11);
    expect(slowStatus.spillEvents! + slowStatus.queueDepth).toBeGreaterThanOrEqual(200);
    expect(slowStatus.spillBytes).toBeGreaterThan(0);
    const spillFolder = path.join(h.dir, 'spill', 'iso', '1_mem1');
    expect(readdirSync(spillFolder).length).toBeGreaterThan(0);
    // The fast sink's checkpoint moved; the slow one has none, so nothing is acknowledged.
    expect((await h.store.getCheckpoints('iso'))['0:mem0']).toBe(last);
    expect(db.acks).toEqual([]);

    slow.gate.release();
    await until(() => slow.events.length === 201, 'the slow sink wrote its backlog from the spill log');
    expect(ids(slow)).toEqual(range(1, 201));
    expect(slow.events.map((e) => e.after)).toEqual(fast.events.map((e) => e.after));
    await until(() => db.acks.includes(last), 'acknowledged once both have it');
    expect((await engine.status('iso')).sinks.find((s) => s.name === '1:mem1')).toMatchObject({
      state: 'running',
      spillEvents: 0,
      spillBytes: 0,
    });
    expect(readdirSync(spillFolder)).toEqual([]);
    expect(db.ackViolations).toEqual([]);
  });

  it('a full spill log pauses that sink (the others go on, the status names it), then it is read again from its checkpoint', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const engine = await fanPipeline(db, [{ sink: fast }, { sink: slow, maxSpillBytes: 2_000 }], {
      queue: { maxEvents: 5 },
      maxWriteEvents: 2,
    });
    for (let id = 1; id <= 100; id++) db.insert('public.orders', id);
    await until(() => fast.events.length === 100, 'the fast sink has everything');
    const paused = await engine.status('iso');
    expect(paused.sinks.find((s) => s.name === '1:mem1')?.state).toBe('paused');
    expect(paused.warnings.some((w) => w.includes('sink 1:mem1 holds the replication slot back'))).toBe(true);
    expect(db.acks).toEqual([]);

    slow.gate.release();
    await until(() => distinctInOrder(ids(slow)).length === 100, 'the slow sink has everything after the re-read');
    expect(distinctInOrder(ids(slow))).toEqual(range(1, 100));
    expect(distinctInOrder(ids(fast))).toEqual(range(1, 100));
    expect(db.calls.filter((c) => c.startsWith('stream:')).length).toBeGreaterThanOrEqual(2);
    expect(h.log.lines.some((l) => l.includes('spill log reached max_spill_bytes'))).toBe(true);
    await until(async () => (await engine.status('iso')).state === 'LIVE_CDC', 'live again');
    expect(db.ackViolations).toEqual([]);
  });

  it('a transaction larger than the queue and the spill budget together still gets past a paused sink: it pauses only at a transaction end, so each re-read moves its checkpoint on', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ maxBatchEvents: 5 });
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const engine = await fanPipeline(db, [{ sink: fast }, { sink: slow, maxSpillBytes: 2_000 }], {
      queue: { maxEvents: 5 },
      maxWriteEvents: 2,
    });
    // 100 events at one commit, in batches of 5 with only the last one safe to checkpoint.
    const big = db.commit(
      range(1, 100).map((id) => ({
        table: 'public.orders',
        op: 'insert' as const,
        row: { id: String(id), status: 'new' },
      })),
    );
    const after = db.insert('public.orders', 101);
    await until(() => fast.events.length === 101, 'the fast sink has everything');
    await until(
      async () => (await engine.status('iso')).sinks.find((s) => s.name === '1:mem1')?.state === 'paused',
      'the slow sink paused',
    );
    const paused = (await engine.status('iso')).sinks.find((s) => s.name === '1:mem1')!;
    // The budget was crossed to reach the transaction's end, no further.
    expect(paused.spillEvents! + paused.queueDepth).toBeGreaterThanOrEqual(100);
    expect(paused.spillEvents! + paused.queueDepth).toBeLessThan(101);
    slow.gate.release();
    await until(
      () => distinctInOrder(ids(slow)).length === 101,
      'the slow sink has the whole transaction and the next',
    );
    expect(distinctInOrder(ids(slow))).toEqual(range(1, 101));
    await until(() => db.acks.includes(after), 'acknowledged past the big transaction');
    expect(db.acks).toContain(big);
    expect(db.ackViolations).toEqual([]);
  });

  it('a sink that fails for good stops alone: the pipeline is DEGRADED, the other sink delivers, the slot stays at the failed checkpoint; resume restarts it from there', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const good = inMemorySink();
    const bad = inMemorySink();
    const engine = await fanPipeline(db, [{ sink: good }, { sink: bad }]);
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'both sinks have t1');
    bad.failures.push(new NanosyncError('NS_K6005', 'topic authorization failed'));
    for (let id = 2; id <= 20; id++) db.insert('public.orders', id);
    const status = await waitForState(engine, 'iso', 'DEGRADED');
    await until(() => good.events.length === 20, 'the healthy sink delivers everything');
    expect(status.error).toContain('sink 1:mem1');
    expect(status.error).toContain('topic authorization failed');
    const badStatus = (await engine.status('iso')).sinks.find((s) => s.name === '1:mem1')!;
    expect(badStatus.state).toBe('errored');
    expect(badStatus.error).toContain('topic authorization failed');
    const warning = (await engine.status('iso')).warnings.find((w) => w.includes('sink 1:mem1 stopped with an error'));
    expect(warning).toContain('`nanosync pipeline resume iso`');
    // The slot never passes what the failed sink has durably.
    expect((await h.store.getCheckpoints('iso'))['1:mem1']).toBe(t1);
    expect(db.acks.every((a) => a <= t1)).toBe(true);

    const t21 = db.insert('public.orders', 21);
    await until(() => good.events.length === 21, 'still delivering');
    expect(db.acks.every((a) => a <= t1)).toBe(true);

    // Repaired: resume brings the failed sink back from its own checkpoint.
    await engine.resume('iso');
    await waitForState(engine, 'iso', 'LIVE_CDC');
    await until(() => db.acks.includes(t21), 'acknowledged once the repaired sink caught up');
    expect(ids(bad)).toEqual(range(1, 21));
    expect(distinctInOrder(ids(good))).toEqual(range(1, 21));
    expect(db.ackViolations).toEqual([]);
  });

  it('with one sink nothing spills: a slow sink holds the source back (plain backpressure) and an old spill folder is removed', async () => {
    h = await Harness.create();
    const stale = path.join(h.dir, 'spill', 'iso', '0_mem0');
    mkdirSync(stale, { recursive: true });
    writeFileSync(path.join(stale, '00000000.spill'), 'left by an earlier run');
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const only = fakeSlowSink();
    const engine = await fanPipeline(db, [{ sink: only }], { queue: { maxEvents: 10 }, maxWriteEvents: 1 });
    expect(existsSync(stale)).toBe(false);
    for (let id = 1; id <= 200; id++) db.insert('public.orders', id);
    await until(async () => (await engine.status('iso')).sinks[0]!.queueDepth >= 10, 'the queue is full');
    // Let the stream loop run as far as it would (it does not wait on anything but the lane).
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    const status = (await engine.status('iso')).sinks[0]!;
    expect(status.state).toBe('running');
    expect(status.spillEvents).toBe(0);
    expect(existsSync(path.join(h.dir, 'spill', 'iso', '0_mem0'))).toBe(false);
    expect(db.batchesPulled).toBeLessThan(20);
    only.gate.release();
    await until(() => only.events.length === 200, 'the sink has everything once it is fast again');
    expect(ids(only)).toEqual(range(1, 200));
  });

  it('a spill folder that cannot be written fails the attempt with NS_R2008 naming the sink and the folder; the pipeline retries and recovers', async () => {
    h = await Harness.create();
    // A regular file where the spill folders must go: a real file-system failure.
    const blocker = path.join(h.dir, 'spill');
    writeFileSync(blocker, 'in the way');
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const fast = inMemorySink();
    const slow = fakeSlowSink();
    const engine = await fanPipeline(db, [{ sink: fast }, { sink: slow }], {
      queue: { maxEvents: 5 },
      maxWriteEvents: 2,
      retry: { baseDelayMs: 5, maxDelayMs: 20 },
    });
    for (let id = 1; id <= 50; id++) db.insert('public.orders', id);
    await until(() => h.log.lines.some((l) => l.includes('NS_R2008')), 'the spill failure in the log');
    const line = h.log.lines.find((l) => l.includes('NS_R2008'))!;
    expect(line).toContain('sink 1:mem1');
    expect(line).toContain(path.join(h.dir, 'spill', 'iso', '1_mem1'));
    expect(db.acks).toEqual([]);

    rmSync(blocker);
    slow.gate.release();
    await until(() => distinctInOrder(ids(slow)).length === 50, 'the slow sink has everything after the retry');
    expect(distinctInOrder(ids(slow))).toEqual(range(1, 50));
    await until(() => distinctInOrder(ids(fast)).length === 50, 'the fast sink too');
    expect(distinctInOrder(ids(fast))).toEqual(range(1, 50));
    await waitForState(engine, 'iso', 'LIVE_CDC');
    expect(db.ackViolations).toEqual([]);
  });

  it('with one sink, a failure is the pipeline’s: ERRORED, not DEGRADED', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const only = inMemorySink();
    only.failures.push(new NanosyncError('NS_K6005', 'denied'));
    const engine = await fanPipeline(db, [{ sink: only }]);
    db.insert('public.orders', 1);
    await waitForState(engine, 'iso', 'ERRORED');
    expect(existsSync(path.join(h.dir, 'spill', 'iso', '0_mem0'))).toBe(false);
  });
});
