import { availableParallelism } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import type { EngineStateEvent } from '../../src/runtime/engine.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

describe('Engine', () => {
  it('pauses at a checkpoint and resumes from it', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'pr', sinks: [{ sink }] }));
    const engine = h.engine();
    const states: string[] = [];
    engine.on('state', (e: EngineStateEvent) => states.push(e.state));
    await engine.start();
    await engine.apply('pr', p.definition, p.hash, p.type);
    await waitForState(engine, 'pr', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 4);
    const t2 = db.insert('public.orders', 5);
    await until(() => sink.events.length === 5, 'five events');

    await engine.pause('pr');
    const paused = await engine.status('pr');
    expect(paused.state).toBe('PAUSED');
    expect(paused.workers).toEqual({ setting: 0, threads: 0 });
    expect(paused.checkpoint).toBe(t2);
    expect(await h.store.getPipeline('pr')).toMatchObject({ state: 'PAUSED', paused: true });
    expect(db.acks[db.acks.length - 1]).toBe(t2);
    expect(db.calls[db.calls.length - 1]).toBe('close');
    // One instance was checked at apply and closed; the running one is closed by the pause.
    expect(sink.closed).toBe(2);

    const t3 = db.insert('public.orders', 6);
    await delay(30);
    expect(sink.events).toHaveLength(5);
    const resumeAt = db.calls.length;
    await engine.resume('pr');
    await waitForState(engine, 'pr', 'LIVE_CDC');
    await until(() => sink.events.length === 6, 'the change made while paused');
    expect(db.calls.slice(resumeAt).find((c) => c.startsWith('stream:'))).toBe(`stream:${t2}`);
    expect(db.calls.slice(resumeAt).some((c) => c.startsWith('read:'))).toBe(false);
    expect(sink.events.slice(3).map((e) => e.position)).toEqual([t1, t2, t3]);
    expect(states).toEqual(['SNAPSHOTTING', 'LIVE_CDC', 'PAUSED', 'LIVE_CDC']);
  });

  it("shows the pipeline's workers setting and the threads it gives on this machine in its status", async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 1);
    const p = h.registry.add(testPipeline(db, { name: 'wk', sinks: [{ sink: inMemorySink() }], workers: 'auto' }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('wk', p.definition, p.hash, p.type);
    await waitForState(engine, 'wk', 'LIVE_CDC');
    const threads = Math.max(0, availableParallelism() - 1);
    expect((await engine.status('wk')).workers).toEqual({
      setting: 'auto',
      threads,
      mode: 'inline',
      inlineReason:
        threads === 0 ? 'workers is 0' : 'the source connector in-memory cannot decode rows in a worker thread',
      ...(threads === 0
        ? {}
        : {
            stream: {
              mode: 'inline',
              inlineReason: 'the source connector in-memory cannot decode changes in a worker thread',
            },
          }),
    });
  });

  it('keeps a paused pipeline paused across a server restart', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'pp', type: 'cdc', sinks: [{ sink }] }));
    const first = h.engine();
    await first.start();
    await first.apply('pp', p.definition, p.hash, p.type);
    await waitForState(first, 'pp', 'LIVE_CDC');
    await first.pause('pp');
    await first.stop();
    const opens = db.calls.filter((c) => c.startsWith('open')).length;
    const second = h.engine();
    await second.start();
    expect((await second.status('pp')).state).toBe('PAUSED');
    expect(db.calls.filter((c) => c.startsWith('open')).length).toBe(opens);
  });

  it('deletes a pipeline: stops it, drops the source objects, forgets its state', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'del', sinks: [{ sink }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('del', p.definition, p.hash, p.type);
    await waitForState(engine, 'del', 'LIVE_CDC');
    await engine.delete('del');
    expect(db.calls).toContain('drop');
    expect(db.calls.lastIndexOf('drop')).toBeGreaterThan(db.calls.findIndex((c) => c.startsWith('stream:')));
    expect(db.slot).toBeUndefined();
    expect(await h.store.getPipeline('del')).toBeUndefined();
    expect(await h.store.listPartitions('del')).toEqual([]);
    expect(await h.store.getCheckpoints('del')).toEqual({});
    expect(await engine.list()).toEqual([]);
    await expect(engine.status('del')).rejects.toMatchObject({ code: ErrorCode.PipelineNotFound });
  });

  it('lets only one of two servers on one SQLite store run a pipeline; the other reports the holder and takes over when it is released', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 4);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'shared', sinks: [{ sink }] }));
    const storeB = await h.openStore();
    const a = h.engine({ holderId: 'server-a', leaseTtlMs: 2_000, reconcileIntervalMs: 30 });
    const b = h.engine({ holderId: 'server-b', leaseTtlMs: 2_000, reconcileIntervalMs: 30, store: storeB });
    await a.start();
    await a.apply('shared', p.definition, p.hash, p.type);
    await waitForState(a, 'shared', 'LIVE_CDC');
    await b.start();
    // Several reconcile passes of B go by; it must never open the source.
    await delay(150);
    const statusB = await b.status('shared');
    expect(statusB.heldBy).toBe('server-a');
    expect(statusB.server).toBe('server-a');
    expect(statusB.state).toBe('LIVE_CDC');
    expect(await a.status('shared')).toMatchObject({ server: 'server-a' });
    expect((await a.status('shared')).heldBy).toBeUndefined();
    expect(db.calls.filter((c) => c.startsWith('open:'))).toHaveLength(1);
    expect(h.log.lines).toContain('INF pipeline is run by another server name=shared holder=server-a');

    await a.stop();
    await until(() => db.calls.filter((c) => c.startsWith('open:')).length === 2, 'B took over');
    await waitForState(b, 'shared', 'LIVE_CDC');
    expect((await b.status('shared')).heldBy).toBeUndefined();
    expect((await b.status('shared')).server).toBe('server-b');
    const t = db.insert('public.orders', 5);
    await until(() => db.acks.includes(t), 'B acknowledges');
  });

  it('applies idempotently: created, unchanged, updated (restarting from the checkpoint)', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const sink = inMemorySink();
    const v1 = h.registry.add(testPipeline(db, { name: 'ap', sinks: [{ sink }] }));
    const v2 = h.registry.add(testPipeline(db, { name: 'ap', sinks: [{ sink }], revision: 1 }));
    const engine = h.engine();
    await engine.start();
    expect(await engine.apply('ap', v1.definition, v1.hash, v1.type)).toBe('created');
    expect(await engine.apply('ap', v1.definition, v1.hash, v1.type)).toBe('unchanged');
    await waitForState(engine, 'ap', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 3);
    await until(() => db.acks.includes(t1), 'ack');
    const at = db.calls.length;
    expect(await engine.apply('ap', v2.definition, v2.hash, v2.type)).toBe('updated');
    await waitForState(engine, 'ap', 'LIVE_CDC');
    await until(() => db.calls.slice(at).some((c) => c.startsWith('stream:')), 'restarted');
    expect(db.calls.slice(at).find((c) => c.startsWith('stream:'))).toBe(`stream:${t1}`);
    expect(db.calls.slice(at).some((c) => c.startsWith('read:'))).toBe(false);
    expect((await h.store.getPipeline('ap'))?.definitionHash).toBe(v2.hash);
  });

  it('re-snapshots on cdc → cdc_backfill, and does nothing more on cdc_backfill → cdc', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 8);
    const sink = inMemorySink();
    const cdc = h.registry.add(testPipeline(db, { name: 'sw', type: 'cdc', sinks: [{ sink }] }));
    const backfill = h.registry.add(testPipeline(db, { name: 'sw', type: 'cdc_backfill', sinks: [{ sink }] }));
    const cdcAgain = h.registry.add(testPipeline(db, { name: 'sw', type: 'cdc', sinks: [{ sink }], revision: 2 }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('sw', cdc.definition, cdc.hash, cdc.type);
    await waitForState(engine, 'sw', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 9);
    await until(() => db.acks.includes(t1), 'ack');
    expect(sink.events.filter((e) => e.op === 'read')).toHaveLength(0);

    expect(await engine.apply('sw', backfill.definition, backfill.hash, backfill.type)).toBe('updated');
    await until(() => sink.events.filter((e) => e.op === 'read').length === 9, 'every row read again');
    await waitForState(engine, 'sw', 'LIVE_CDC');
    // The slot is kept (same L0); the read is fresh and the stream resumes from the checkpoint.
    const opens = db.calls.filter((c) => c.startsWith('open:'));
    expect(opens).toHaveLength(2);
    expect(opens[1]).toBe(`open:${db.slot!.start}:true`);
    expect(sink.events.filter((e) => e.op === 'read').every((e) => e.position === t1)).toBe(true);
    expect(db.calls.filter((c) => c.startsWith('read:')).every((c) => c.endsWith(':-'))).toBe(true);
    expect(db.calls.filter((c) => c.startsWith('stream:')).pop()).toBe(`stream:${t1}`);

    const reads = db.calls.filter((c) => c.startsWith('read:')).length;
    expect(await engine.apply('sw', cdcAgain.definition, cdcAgain.hash, cdcAgain.type)).toBe('updated');
    await until(() => db.calls.filter((c) => c.startsWith('open:')).length === 3, 'restarted');
    await waitForState(engine, 'sw', 'LIVE_CDC');
    expect(db.calls.filter((c) => c.startsWith('read:'))).toHaveLength(reads);
    expect((await h.store.listPartitions('sw')).every((x) => x.status === 'done')).toBe(true);
  });

  it('runs a snapshot pipeline once: COMPLETED, no stream, slot dropped, not started again', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 4 });
    db.createTable('public', 'orders', 10);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'once', type: 'snapshot', sinks: [{ sink }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('once', p.definition, p.hash, p.type);
    const status = await waitForState(engine, 'once', 'COMPLETED');
    expect(sink.events).toHaveLength(10);
    expect(db.calls.some((c) => c.startsWith('stream:'))).toBe(false);
    expect(db.calls).toContain('drop');
    expect(status.snapshot).toMatchObject({ partitionsTotal: 3, partitionsDone: 3, rowsRead: 10, done: true });
    await engine.stop();
    const again = h.engine();
    await again.start();
    await delay(30);
    expect(db.calls.filter((c) => c.startsWith('open:'))).toHaveLength(1);
    expect((await again.status('once')).state).toBe('COMPLETED');
  });

  it('runs a query pipeline on its schedule, rows as read events with increasing positions', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.query = {
      sql: 'select * from totals',
      rows: Array.from({ length: 5 }, (_, i) => ({ day: `2024-01-0${i + 1}`, total: i * 10, note: null })),
    };
    const sink = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, {
        name: 'q',
        type: 'query',
        tables: [],
        sinks: [{ sink }],
        query: { sql: 'select * from totals', interval_seconds: 3600 },
      }),
    );
    const engine = h.engine({ runtime: { snapshotChunkRows: 2 } });
    await engine.start();
    await engine.apply('q', p.definition, p.hash, p.type);
    await until(() => sink.events.length === 5, 'first run written');
    await until(
      async () => (await h.store.getCheckpoints('q'))['0:mem0']?.endsWith(':ffffffff') === true,
      'run checkpointed',
    );
    const positions = sink.positions();
    expect([...positions].sort()).toEqual(positions);
    expect(new Set(positions).size).toBe(5);
    expect(sink.events.every((e) => e.op === 'read' && e.table.schema === 'query' && e.table.name === 'q')).toBe(true);
    expect(sink.opened[0]?.[0]?.columns.map((c) => [c.name, c.type.kind])).toEqual([
      ['day', 'string'],
      ['total', 'float64'],
      ['note', 'string'],
    ]);
    expect(db.calls).not.toContain('open:-:false');
    expect((await engine.status('q')).state).toBe('LIVE_CDC');

    // A restart within the interval waits for the schedule instead of running again.
    await engine.stop();
    const again = h.engine();
    await again.start();
    await waitForState(again, 'q', 'LIVE_CDC');
    await delay(50);
    expect(db.queryRuns).toBe(1);
  });

  it('applies each sink’s target_mappings: projection keeps keys, filter drops rows and turns leaving updates into deletes', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 4);
    const all = inMemorySink();
    const paidOnly = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, {
        name: 'map',
        sinks: [
          { sink: all },
          {
            sink: paidOnly,
            mappings: [
              { table: 'public.orders', columns: ['status'], filter: [{ column: 'status', op: 'eq', value: 'paid' }] },
            ],
          },
        ],
      }),
    );
    const engine = h.engine();
    await engine.start();
    await engine.apply('map', p.definition, p.hash, p.type);
    await waitForState(engine, 'map', 'LIVE_CDC');
    db.commit([{ table: 'public.orders', op: 'update', row: { id: '2', status: 'paid' } }]);
    const last = db.commit([{ table: 'public.orders', op: 'update', row: { id: '2', status: 'refunded' } }]);
    await until(() => db.acks.includes(last), 'ack');
    expect(all.events).toHaveLength(6);
    expect(paidOnly.events.map((e) => [e.op, e.key.id, e.after])).toEqual([
      ['update', '2', { id: '2', status: 'paid' }],
      ['delete', '2', undefined],
    ]);
    expect(paidOnly.opened[0]?.[0]?.columns.map((c) => c.name)).toEqual(['id', 'status']);
    expect(all.opened[0]?.[0]?.columns.map((c) => c.name)).toEqual(['id', 'status', 'amount']);
  });

  it('refuses a mapping that names a column the table does not have', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 1);
    const sink = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, {
        name: 'badmap',
        sinks: [{ sink, mappings: [{ table: 'public.orders', columns: ['stauts'] }] }],
      }),
    );
    const engine = h.engine();
    await engine.start();
    await engine.apply('badmap', p.definition, p.hash, p.type);
    const status = await waitForState(engine, 'badmap', 'ERRORED');
    expect(status.error).toContain('"stauts"');
    expect(sink.events).toHaveLength(0);
  });

  it('reports a pipeline whose definition cannot be materialized as ERRORED with the cause', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    const p = testPipeline(db, { name: 'nomat', sinks: [{ sink: inMemorySink() }] });
    const engine = h.engine();
    await engine.start();
    await engine.apply('nomat', p.definition, p.hash, p.type);
    const status = await waitForState(engine, 'nomat', 'ERRORED');
    expect(status.error).toContain('no test pipeline');
  });

  it('stops every pipeline with a final checkpoint and releases the leases', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const s1 = inMemorySink();
    const s2 = inMemorySink();
    const p1 = h.registry.add(testPipeline(db, { name: 'one', type: 'cdc', sinks: [{ sink: s1 }] }));
    const p2 = h.registry.add(testPipeline(db, { name: 'two', type: 'cdc', sinks: [{ sink: s2 }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('one', p1.definition, p1.hash, p1.type);
    await engine.apply('two', p2.definition, p2.hash, p2.type);
    await waitForState(engine, 'one', 'LIVE_CDC');
    await waitForState(engine, 'two', 'LIVE_CDC');
    const t = db.insert('public.orders', 1);
    await until(() => s1.events.length === 1 && s2.events.length === 1, 'written');
    await engine.stop();
    // Each: the instance checked at apply, and the running one.
    expect(s1.closed).toBe(2);
    expect(s2.closed).toBe(2);
    expect(await h.store.getCheckpoints('one')).toEqual({ '0:mem0': t });
    expect(await h.store.acquireLease('one', 'someone-else', 1_000)).toMatchObject({ acquired: true });
    expect(await h.store.acquireLease('two', 'someone-else', 1_000)).toMatchObject({ acquired: true });
    // The stored state is left as it was, so the next start resumes streaming.
    expect((await h.store.getPipeline('one'))?.state).toBe('LIVE_CDC');
  });
  it('stops a runner whose lease was taken over: its checkpoint is refused, nothing acknowledged, the new holder state kept', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'fz', type: 'cdc', sinks: [{ sink }] }));
    // No reconcile pass during the test: like a server frozen past its lease, it does not notice.
    const engine = h.engine({ holderId: 'frozen', reconcileIntervalMs: 600_000 });
    await engine.start();
    await engine.apply('fz', p.definition, p.hash, p.type);
    await waitForState(engine, 'fz', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'first change acknowledged');
    expect(await h.store.getCheckpoints('fz')).toEqual({ '0:mem0': t1 });

    // The lease expires and another server takes it over and records its own progress.
    await h.store.acquireLease('fz', 'frozen', -1);
    const taken = await h.store.acquireLease('fz', 'usurper', 60_000);
    expect(taken.acquired).toBe(true);
    await h.store.saveCheckpoint('fz', '0:mem0', t1);

    const t2 = db.insert('public.orders', 2);
    await until(() => sink.events.length === 2, 'second change written to the sink');
    // The runner stops; this server reports the refusal next to the state the store holds.
    await until(async () => (await engine.status('fz')).error?.includes('refused') === true, 'the refusal');
    const status = await engine.status('fz');
    expect(status.error).toMatch(/refused to save a checkpoint for frozen .* now held by usurper/);
    expect(db.acks).not.toContain(t2);
    // Stopped, not retrying: the source was closed and not opened again.
    await until(() => db.calls[db.calls.length - 1] === 'close', 'the source closed');
    expect(await h.store.getCheckpoints('fz')).toEqual({ '0:mem0': t1 });
    expect(await h.store.getPipeline('fz')).toMatchObject({ state: 'LIVE_CDC' });
    expect((await h.store.getPipeline('fz'))?.error).toBeUndefined();
    expect(await h.store.getLease('fz')).toMatchObject({ holder: 'usurper' });
  });
  it('restarts from the checkpoint when its own lease expired and was taken again (new epoch)', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'ex', type: 'cdc', sinks: [{ sink }] }));
    const engine = h.engine({ holderId: 'slow', reconcileIntervalMs: 20 });
    await engine.start();
    await engine.apply('ex', p.definition, p.hash, p.type);
    await waitForState(engine, 'ex', 'LIVE_CDC');
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'first change acknowledged');
    const opens = db.calls.filter((c) => c.startsWith('open')).length;
    const before = await h.store.getLease('ex');

    // The lease lapses (a store too slow to renew it in time); the next pass takes it again.
    await h.store.acquireLease('ex', 'slow', -1);
    await until(() => db.calls.filter((c) => c.startsWith('open')).length > opens, 'the runner reopened');
    await waitForState(engine, 'ex', 'LIVE_CDC');
    expect((await h.store.getLease('ex'))?.epoch).toBeGreaterThan(before?.epoch ?? 0);
    // The new runner writes with the new epoch: its checkpoints are accepted.
    const t2 = db.insert('public.orders', 2);
    await until(() => db.acks.includes(t2), 'the change after the restart acknowledged');
    expect(await h.store.getCheckpoints('ex')).toEqual({ '0:mem0': t2 });
  });
});
