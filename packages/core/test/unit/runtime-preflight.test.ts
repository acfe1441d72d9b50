import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/errors.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

async function apply(
  db: InMemoryDatabase,
  sink = inMemorySink(),
  options: { tables?: string[]; concurrency?: number } = {},
) {
  const p = h.registry.add(testPipeline(db, { name: 'p', sinks: [{ sink }], ...options }));
  const engine = h.engine();
  await engine.start();
  await engine.apply('p', p.definition, p.hash, p.type);
  return engine;
}

describe('start-up checks and a failed first start', () => {
  it('refuses an apply whose source check fails, naming the failure and its fix: nothing is stored or opened', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    db.checkResults = [
      { name: 'wal', ok: false, message: 'wal_level is replica', fix: 'ALTER SYSTEM …', severity: 'warning' },
      { name: 'identity', ok: false, message: 'table "public"."orders" has no key', fix: 'ADD PRIMARY KEY' },
    ];
    const p = h.registry.add(testPipeline(db, { name: 'p', sinks: [{ sink: inMemorySink() }] }));
    const engine = h.engine();
    await engine.start();
    await expect(engine.apply('p', p.definition, p.hash, p.type)).rejects.toThrow(
      expect.objectContaining({
        code: 'NS_R2006',
        message: expect.stringMatching(/table "public"."orders" has no key Fix: ADD PRIMARY KEY/),
      }),
    );
    expect(await h.store.getPipeline('p')).toBeUndefined();
    expect(db.calls.filter((c) => c.startsWith('open'))).toEqual([]);
    expect(h.log.lines.some((l) => l.includes('wal_level is replica'))).toBe(true);
  });

  it("stops a start before open when the source's check fails at start (the database changed since apply)", async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const p = h.registry.add(testPipeline(db, { name: 'p', sinks: [{ sink: inMemorySink() }] }));
    const engine = h.engine();
    await engine.apply('p', p.definition, p.hash, p.type);
    db.checkResults = [
      { name: 'identity', ok: false, message: 'table "public"."orders" has no key', fix: 'ADD PRIMARY KEY' },
    ];
    await engine.start();
    const status = await waitForState(engine, 'p', 'ERRORED');
    expect(status.error).toContain(ErrorCode.PreflightFailed);
    expect(status.error).toContain('table "public"."orders" has no key Fix: ADD PRIMARY KEY');
    expect(db.calls.filter((c) => c.startsWith('open'))).toEqual([]);
    expect(db.slot).toBeUndefined();
  });

  it("stops before open when a sink's check fails; a failure that may pass by itself is retried first", async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const sink = inMemorySink();
    sink.checkResults = [{ name: 'kafka reachable', ok: false, message: 'cannot reach Kafka', retriable: true }];
    const engine = await apply(db, sink);
    const status = await waitForState(engine, 'p', 'ERRORED');
    expect(status.error).toContain('sink 0:mem0: cannot reach Kafka');
    // Once at apply (not refused: it may pass by itself), then once per start attempt.
    expect(db.checks).toBe(6);
    expect(db.calls.filter((c) => c.startsWith('open'))).toEqual([]);
  });

  it('removes what a first start created when it fails before any checkpoint, and the next start is a first start again', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    db.openFailures.push(new NanosyncError('NS_P4002', 'no REPLICATION'));
    const engine = await apply(db);
    await waitForState(engine, 'p', 'ERRORED');
    await until(() => db.calls.includes('abandon'), 'abandon called');
    expect(db.slot).toBeUndefined();
    expect((await h.store.getPipeline('p'))?.startPosition).toBeUndefined();

    await engine.resume('p');
    await waitForState(engine, 'p', 'LIVE_CDC');
    expect(db.calls.filter((c) => c.startsWith('open'))).toEqual(['open:-:true', 'open:-:true']);
  });

  it('keeps the slot of a pipeline that already has a checkpoint when it errors later', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const sink = inMemorySink();
    const engine = await apply(db, sink);
    await waitForState(engine, 'p', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 10);
    await until(() => db.acks.includes(t1), 'acknowledged');
    sink.failures.push(new NanosyncError('NS_K6003', 'too large'));
    db.insert('public.orders', 11);
    await waitForState(engine, 'p', 'ERRORED');
    expect(db.calls).not.toContain('abandon');
    expect(db.slot).toBeDefined();
  });

  it('hands out the partitions of all tables in turn, so every table is read from the start', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    for (const t of ['a', 'b', 'c']) db.createTable('public', t, 40);
    const engine = await apply(db, inMemorySink(), { tables: ['public.a', 'public.b', 'public.c'], concurrency: 1 });
    await waitForState(engine, 'p', 'LIVE_CDC');
    const reads = db.calls.filter((c) => c.startsWith('read:')).map((c) => c.split(':')[1]);
    expect(reads.slice(0, 6)).toEqual(['public.a', 'public.b', 'public.c', 'public.a', 'public.b', 'public.c']);
  });
});
