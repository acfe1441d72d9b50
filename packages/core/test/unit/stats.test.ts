import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../src/model.js';
import { backoffDelay } from '../../src/runtime/backoff.js';
import { LatencyRecorder, PipelineStats, RateWindow } from '../../src/runtime/stats.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, position, testPipeline } from './fixtures/in-memory.js';

describe('stats building blocks', () => {
  it('keeps a cumulative latency histogram on the prom-client default buckets', () => {
    const h = new LatencyRecorder();
    for (const s of [0.001, 0.02, 0.02, 0.3, 20]) h.observe(s);
    const snap = h.snapshot();
    expect(snap.count).toBe(5);
    expect(snap.sum).toBeCloseTo(20.341);
    expect(snap.buckets.map((b) => b.le)).toEqual([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
    expect(snap.buckets.map((b) => b.count)).toEqual([1, 1, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
  });

  it('computes events per second over a sliding window', () => {
    const w = new RateWindow(10);
    const t0 = 1_000_000;
    w.add(50, t0);
    expect(w.rate(t0)).toBe(50);
    w.add(50, t0 + 1000);
    expect(w.rate(t0 + 1000)).toBe(50);
    expect(w.rate(t0 + 9000)).toBe(10);
    expect(w.rate(t0 + 30_000)).toBe(0);
  });

  it('grows backoff exponentially with jitter, capped', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(1, policy, () => 0)).toBe(50);
    expect(backoffDelay(1, policy, () => 1)).toBe(100);
    expect(backoffDelay(3, policy, () => 1)).toBe(400);
    expect(backoffDelay(10, policy, () => 1)).toBe(1000);
    expect(backoffDelay(10, policy, () => 0)).toBe(500);
  });

  it('measures lag from commit to acknowledgement and drops to 0 on an acknowledged keepalive', () => {
    let now = 10_000;
    const stats = new PipelineStats(() => now);
    const t = stats.table('public.orders');
    const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const event: ChangeEvent = {
      op: 'insert',
      table: { schema: 'public', name: 'orders', columns: [], keyColumns: [] },
      key: {},
      position: position(1),
    };
    stats.onStreamBatch({ events: [event], safePosition: position(1) }, () => t, 7_000);
    expect(stats.lagSeconds()).toBe(3);
    now = 12_000;
    stats.onAcknowledged(position(1), compare);
    expect(stats.lagSeconds()).toBe(5);
    expect(t.lagMs).toBe(5000);
    stats.onStreamBatch({ events: [], safePosition: position(2) }, () => t, undefined);
    stats.onStreamBatch({ events: [], safePosition: position(3) }, () => t, undefined);
    stats.onAcknowledged(position(3), compare);
    expect(stats.lagSeconds()).toBe(0);
    expect(t.lagMs).toBe(0);
  });
});

describe('pipeline status', () => {
  let h: Harness;
  afterEach(async () => {
    await h.dispose();
  });

  it('reports progress, per-table and per-sink figures as plain JSON', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 12);
    db.createTable('public', 'items', 3);
    const sink = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, { name: 'st', tables: ['public.orders', 'public.items'], sinks: [{ sink }] }),
    );
    const engine = h.engine();
    await engine.start();
    await engine.apply('st', p.definition, p.hash, p.type);
    await waitForState(engine, 'st', 'LIVE_CDC');
    db.commit(
      [{ table: 'public.orders', op: 'update', row: { id: '1', status: 'paid' } }],
      new Date(Date.now() - 2_000).toISOString(),
    );
    const k = db.keepalive();
    await until(() => db.acks.includes(k), 'ack');

    const [status] = await engine.list();
    expect(JSON.parse(JSON.stringify(status))).toEqual(status);
    expect(status).toMatchObject({
      name: 'st',
      state: 'LIVE_CDC',
      replicationType: 'cdc_backfill',
      eventsTotal: 16,
      lagSeconds: 0,
      startPosition: db.slot!.start,
      startPositionText: '0/101',
      checkpoint: k,
      acknowledgedPosition: k,
      snapshot: { partitionsTotal: 4, partitionsDone: 4, rowsRead: 15, rowsEstimated: 20, done: true },
      warnings: [],
    });
    expect(status!.eventsPerSecond).toBeGreaterThan(0);
    expect(status!.tables).toEqual([
      {
        table: 'public.orders',
        rowsSnapshotted: 12,
        rowsEstimated: 15,
        events: 1,
        lagSeconds: 0,
        partitionsTotal: 3,
        partitionsDone: 3,
      },
      { table: 'public.items', rowsSnapshotted: 3, rowsEstimated: 5, events: 0, partitionsTotal: 1, partitionsDone: 1 },
    ]);
    expect(status!.sinks).toHaveLength(1);
    expect(status!.sinks[0]).toMatchObject({
      name: '0:mem0',
      rowsWritten: 16,
      writeErrors: 0,
      checkpoint: k,
      queueDepth: 0,
      lagSeconds: 0,
    });
    expect(status!.sinks[0]!.writeLatency.count).toBeGreaterThan(0);
    expect(status!.sinks[0]!.writeLatency.buckets[10]!.count).toBe(status!.sinks[0]!.writeLatency.count);
  });

  it('shows a re-snapshot of one table like a first snapshot: its own progress, the other tables as they were (after a server restart too)', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 12);
    db.createTable('public', 'items', 30);
    const sink = inMemorySink();
    const p = h.registry.add(
      testPipeline(db, { name: 'rs', tables: ['public.orders', 'public.items'], sinks: [{ sink }], concurrency: 1 }),
    );
    const first = h.engine();
    await first.start();
    await first.apply('rs', p.definition, p.hash, p.type);
    await until(async () => (await first.status('rs')).snapshot?.done === true, 'the first snapshot');
    await first.stop();

    // A new server process: its figures start empty, the plans are in the store.
    const engine = h.engine();
    await engine.start();
    await waitForState(engine, 'rs', 'LIVE_CDC');
    const gate = db.gate('public.items', '3');
    expect(await engine.resnapshot('rs', ['public.items'])).toEqual(['public.items']);
    await until(async () => {
      const items = (await engine.status('rs')).tables.find((t) => t.table === 'public.items');
      return items?.partitionsDone === 3 && db.calls.some((c) => c.startsWith('read:public.items:3:'));
    }, 'three partitions of items read again, the fourth held');

    const during = await engine.status('rs');
    expect(during.state).toBe('SNAPSHOTTING');
    expect(during.tables).toEqual([
      // Not read again: as its finished snapshot left it.
      {
        table: 'public.orders',
        rowsSnapshotted: 12,
        rowsEstimated: 15,
        events: 0,
        partitionsTotal: 3,
        partitionsDone: 3,
      },
      {
        table: 'public.items',
        rowsSnapshotted: 15,
        rowsEstimated: 30,
        events: 0,
        partitionsTotal: 6,
        partitionsDone: 3,
      },
    ]);
    // The pipeline's progress is the re-snapshot's: items only.
    expect(during.snapshot).toMatchObject({
      partitionsTotal: 6,
      partitionsDone: 3,
      rowsRead: 15,
      rowsEstimated: 30,
      done: false,
    });

    gate.release();
    await until(async () => (await engine.status('rs')).snapshot?.done === true, 'the re-snapshot done');
    const after = await engine.status('rs');
    expect(after.snapshot).toMatchObject({ partitionsTotal: 9, partitionsDone: 9, rowsRead: 42, done: true });
  });

  it('warns about retained WAL at 50% and 80% of the limit, and about a stalled slot', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'wal', type: 'cdc', sinks: [{ sink }] }));
    const engine = h.engine();
    const warnings: string[] = [];
    engine.on('warning', (w) => warnings.push(w.message));
    db.metricsValue = {
      retainedBytes: 600,
      safeBytes: 400,
      headPosition: position(500),
      confirmedPosition: position(10),
    };
    await engine.start();
    await engine.apply('wal', p.definition, p.hash, p.type);
    await waitForState(engine, 'wal', 'LIVE_CDC');
    await until(async () => (await engine.status('wal')).warnings.some((w) => w.includes('60%')), '50% warning');
    let status = await engine.status('wal');
    expect(status.source).toMatchObject({ retainedWalBytes: 600, safeWalBytes: 400 });
    expect(status.warnings.find((w) => w.includes('retained WAL'))).toContain('over 50%');

    db.metricsValue = {
      retainedBytes: 850,
      safeBytes: 150,
      headPosition: position(501),
      confirmedPosition: position(10),
    };
    await until(
      async () => (await engine.status('wal')).warnings.some((w) => w.includes('85%') && w.includes('over 80%')),
      '80% warning',
    );
    // The confirmed position stays at 10 while the head moved (500 → 501): stalled after stallAfterMs.
    await until(async () => (await engine.status('wal')).warnings.some((w) => w.startsWith('stalled')), 'stalled');
    status = await engine.status('wal');
    expect(status.warnings[0]).toContain('over 80%');
    expect(warnings.some((w) => w.includes('over 50%'))).toBe(true);
    expect(warnings.some((w) => w.includes('over 80%'))).toBe(true);
    expect(h.log.lines.some((l) => l.startsWith('WRN stalled: the confirmed position has not moved'))).toBe(true);

    db.metricsValue = {
      retainedBytes: 10,
      safeBytes: 990,
      headPosition: position(502),
      confirmedPosition: position(502),
    };
    await until(async () => (await engine.status('wal')).warnings.length === 0, 'warnings cleared');
  });

  it('keeps watching the retained WAL of a paused pipeline', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const p = h.registry.add(testPipeline(db, { name: 'pw', type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('pw', p.definition, p.hash, p.type);
    await waitForState(engine, 'pw', 'LIVE_CDC');
    await engine.pause('pw');
    db.metricsValue = {
      retainedBytes: 900,
      safeBytes: 100,
      headPosition: position(900),
      confirmedPosition: position(1),
    };
    await until(
      async () => (await engine.status('pw')).warnings.some((w) => w.includes('over 80%')),
      'warning while paused',
    );
    const status = await engine.status('pw');
    expect(status.state).toBe('PAUSED');
    await delay(150);
    // A paused pipeline is not expected to move: no "stalled".
    expect((await engine.status('pw')).warnings.some((w) => w.startsWith('stalled'))).toBe(false);
  });
});
