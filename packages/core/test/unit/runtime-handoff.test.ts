import { afterEach, describe, expect, it } from 'vitest';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

describe('snapshot → stream handoff', () => {
  it('opens the source before any read, persists the plan and L0, and streams from L0 after releasing the snapshot', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 23);
    db.createTable('public', 'items', 7);
    const sink = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, {
        name: 'orders',
        tables: ['public.orders', 'public.items'],
        sinks: [{ sink }],
        concurrency: 3,
      }),
    );
    const engine = h.engine();
    await engine.start();

    expect(await engine.apply('orders', p.definition, p.hash, p.type)).toBe('created');
    await waitForState(engine, 'orders', 'LIVE_CDC');

    const calls = db.calls;
    const open = calls.findIndex((c) => c.startsWith('open:'));
    const reads = calls.flatMap((c, i) => (c.startsWith('read:') ? [i] : []));
    const release = calls.indexOf('release');
    const stream = calls.findIndex((c) => c.startsWith('stream:'));
    expect(calls[open]).toBe('open:-:true');
    expect(reads).toHaveLength(7);
    expect(open).toBeLessThan(reads[0]!);
    expect(release).toBeGreaterThan(reads[reads.length - 1]!);
    expect(stream).toBeGreaterThan(release);
    // Every read of the first run used the exported snapshot.
    expect(reads.map((i) => calls[i]!.split(':').pop())).toEqual(Array(7).fill('snap-1'));

    const record = await h.store.getPipeline('orders');
    const startPosition = db.slot!.start;
    expect(record?.startPosition).toBe(startPosition);
    expect(record?.snapshotDone).toBe(true);
    expect(calls[stream]).toBe(`stream:${startPosition}`);

    const partitions = await h.store.listPartitions('orders');
    expect(partitions.map((x) => `${x.table}/${x.id}/${x.status}`)).toEqual([
      'public.items/0/done',
      'public.items/1/done',
      'public.orders/0/done',
      'public.orders/1/done',
      'public.orders/2/done',
      'public.orders/3/done',
      'public.orders/4/done',
    ]);
    expect(partitions.find((x) => x.table === 'public.orders' && x.id === '4')?.rowsRead).toBe(3);

    expect(sink.events).toHaveLength(30);
    expect(sink.events.every((e) => e.op === 'read' && e.position === startPosition)).toBe(true);
    const orderIds = sink.events.filter((e) => e.table.name === 'orders').map((e) => Number(e.key.id));
    expect(orderIds.sort((a, b) => a - b)).toEqual(Array.from({ length: 23 }, (_, i) => i + 1));
  });

  it('delivers a change committed during the snapshot through the stream (exported snapshot excludes it)', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 10);
    const gate = db.gate('public.orders', '1');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'p1', sinks: [{ sink }], concurrency: 1 }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('p1', p.definition, p.hash, p.type);
    await until(() => db.calls.some((c) => c.startsWith('read:public.orders:1:')), 'partition 1 read');
    const change = db.commit([{ table: 'public.orders', op: 'update', row: { id: '7', status: 'paid' } }]);
    gate.release();
    await waitForState(engine, 'p1', 'LIVE_CDC');
    await until(() => sink.events.some((e) => e.position === change), 'the update');
    const id7 = sink.events.filter((e) => e.key.id === '7');
    expect(id7.map((e) => [e.op, e.after?.status])).toEqual([
      ['read', 'new'],
      ['update', 'paid'],
    ]);
  });

  it('resumes an interrupted snapshot at its incomplete partitions, without re-planning or the old snapshot token', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 23);
    const gate = db.gate('public.orders', '3');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'resume', sinks: [{ sink }], concurrency: 1 }));
    const first = h.engine();
    await first.start();
    await first.apply('resume', p.definition, p.hash, p.type);
    await until(
      async () => (await h.store.listPartitions('resume')).filter((x) => x.status === 'done').length === 3,
      'three partitions done',
    );
    await until(() => db.calls.includes('read:public.orders:3:snap-1'), 'partition 3 started');
    await first.stop();
    const planBefore = await h.store.listPartitions('resume');
    expect(planBefore.map((x) => x.status)).toEqual(['done', 'done', 'done', 'pending', 'pending']);

    // Rows added meanwhile: a new plan would have more partitions; the stored one must be kept.
    for (let id = 24; id <= 40; id++) db.insert('public.orders', id);
    gate.release();
    const restartAt = db.calls.length;
    const second = h.engine();
    await second.start();
    await waitForState(second, 'resume', 'LIVE_CDC');

    const after = db.calls.slice(restartAt);
    expect(after[0]).toBe(`open:${db.slot!.start}:true`);
    expect(after.filter((c) => c.startsWith('read:'))).toEqual(['read:public.orders:3:-', 'read:public.orders:4:-']);
    expect(after).not.toContain('release');
    expect(db.calls.filter((c) => c.startsWith('plan:'))).toEqual(['plan:public.orders']);
    const planAfter = await h.store.listPartitions('resume');
    expect(planAfter.map((x) => [x.id, x.bounds, x.status])).toEqual(planBefore.map((x) => [x.id, x.bounds, 'done']));
    expect(h.log.lines).toContain(
      'INF snapshot in progress table=public.orders completed_partitions=3/5 pipeline=resume',
    );
    expect(h.log.lines).toContain('INF pipeline resuming name=resume lsn=0/101');

    // Nothing is missing: every id is in the sink (as a snapshot row, a stream insert, or both).
    await until(() => new Set(sink.events.map((e) => e.key.id)).size === 40, 'all 40 ids');
    // The stream started at L0, so the inserts made during the pause are replayed too.
    expect(db.calls.slice(restartAt).find((c) => c.startsWith('stream:'))).toBe(`stream:${db.slot!.start}`);
  });

  it('records the snapshot as done on restart when the process ended after the last partition but before the flag', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 12);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'flag', sinks: [{ sink }] }));
    const first = h.engine();
    await first.start();
    await first.apply('flag', p.definition, p.hash, p.type);
    await waitForState(first, 'flag', 'LIVE_CDC');
    await first.stop();
    // The state a kill between the last partition's record and the flag leaves behind.
    await h.store.updatePipeline('flag', { snapshotDone: false });
    expect((await h.store.listPartitions('flag')).every((x) => x.status === 'done')).toBe(true);

    const restartAt = db.calls.length;
    const second = h.engine();
    await second.start();
    await waitForState(second, 'flag', 'LIVE_CDC');
    expect((await h.store.getPipeline('flag'))?.snapshotDone).toBe(true);
    expect(db.calls.slice(restartAt).filter((c) => c.startsWith('read:') || c.startsWith('plan:'))).toEqual([]);
  });

  it('plans an empty table once and counts it done', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 0);
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'empty', sinks: [{ sink }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('empty', p.definition, p.hash, p.type);
    await waitForState(engine, 'empty', 'LIVE_CDC');
    await engine.stop();
    const again = h.engine();
    await again.start();
    await waitForState(again, 'empty', 'LIVE_CDC');
    expect(db.calls.filter((c) => c.startsWith('plan:'))).toHaveLength(1);
    const status = await again.status('empty');
    expect(status.snapshot).toMatchObject({ partitionsTotal: 1, partitionsDone: 1, done: true });
  });
});
