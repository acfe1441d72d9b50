import { afterEach, describe, expect, it } from 'vitest';
import type { StoredPipelineDefinition } from '../../src/config/types.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.dispose();
  h = undefined;
});

/** A gate the test opens; `reached` once something waits at it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  const state = { reached: false, open, opened };
  return state;
}

describe('Engine: a held lease is renewed on its own schedule', () => {
  it('while the start of the pipeline waits (here: its definition being materialized), for more than three lease times, at the same epoch; the pipeline then runs under that lease', async () => {
    h = await Harness.create();
    const harness = h;
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const p = harness.registry.add(
      testPipeline(db, { name: 'orders', type: 'cdc', sinks: [{ sink: inMemorySink() }] }),
    );
    const start = gate();
    let blocking = false;
    const ttl = 300;
    const engine = harness.engine({
      holderId: 'server-a',
      leaseTtlMs: ttl,
      reconcileIntervalMs: 100,
      materialize: async (definition: StoredPipelineDefinition) => {
        if (blocking) {
          start.reached = true;
          await start.opened;
        }
        return harness.registry.materialize(definition);
      },
    });
    // Stored before the engine starts, so its first pass is what takes the lease and starts it.
    expect(await engine.apply('orders', p.definition, p.hash, p.type)).toBe('created');
    blocking = true;
    const started = engine.start();
    await until(() => start.reached, 'the start to wait');
    const taken = await harness.store.getLease('orders');
    expect(taken?.holder).toBe('server-a');
    await until(async () => {
      const lease = await harness.store.getLease('orders');
      return (
        lease !== undefined &&
        lease.holder === 'server-a' &&
        lease.epoch === taken!.epoch &&
        Date.parse(lease.expiresAt) > Date.parse(taken!.expiresAt) + 3 * ttl
      );
    }, 'the lease to be renewed past three lease times while the start waits');
    start.open();
    await started;
    await waitForState(engine, 'orders', 'LIVE_CDC');
    expect((await harness.store.getLease('orders'))?.epoch).toBe(taken!.epoch);
    expect(harness.log.lines.join('\n')).not.toMatch(/lost the pipeline lease|lease expired and was taken again/);
  });

  it('while another pipeline of the server takes long to stop (its sink does not drain), for more than three lease times, at the same epoch', async () => {
    h = await Harness.create();
    const harness = h;
    const slowDb = new InMemoryDatabase();
    slowDb.createTable('public', 'orders', 0);
    const busyDb = new InMemoryDatabase();
    busyDb.createTable('public', 'orders', 0);
    const slowSink = inMemorySink();
    // Listed (and passed over by the engine's periodic pass) before the other one.
    const slow = harness.registry.add(
      testPipeline(slowDb, { name: 'a-slow', type: 'cdc', sinks: [{ sink: slowSink }] }),
    );
    const busy = harness.registry.add(
      testPipeline(busyDb, { name: 'b-busy', type: 'cdc', sinks: [{ sink: inMemorySink() }] }),
    );
    const ttl = 300;
    const engine = harness.engine({
      holderId: 'server-a',
      leaseTtlMs: ttl,
      reconcileIntervalMs: 100,
      runtime: { stopTimeoutMs: 20_000 },
    });
    await engine.start();
    await engine.apply('a-slow', slow.definition, slow.hash, slow.type);
    await engine.apply('b-busy', busy.definition, busy.hash, busy.type);
    await waitForState(engine, 'a-slow', 'LIVE_CDC');
    await waitForState(engine, 'b-busy', 'LIVE_CDC');
    slowSink.gate.close();
    slowDb.insert('public.orders', 1);
    await until(() => slowSink.waiting > 0, 'a write of a-slow to hang');
    let paused = false;
    const pausing = engine.pause('a-slow').then(() => {
      paused = true;
    });
    const before = await harness.store.getLease('b-busy');
    await until(async () => {
      const lease = await harness.store.getLease('b-busy');
      return (
        lease !== undefined &&
        lease.epoch === before!.epoch &&
        Date.parse(lease.expiresAt) > Date.parse(before!.expiresAt) + 3 * ttl
      );
    }, 'b-busy’s lease to be renewed past three lease times while a-slow stops');
    expect(paused, 'a-slow was still stopping').toBe(false);
    slowSink.gate.release();
    await pausing;
    expect((await engine.status('b-busy')).state).toBe('LIVE_CDC');
    expect(harness.log.lines.join('\n')).not.toMatch(/lost the pipeline lease|lease expired and was taken again/);
  });

  it('stops renewing when the pipeline is paused, and lets the lease go at once', async () => {
    h = await Harness.create();
    const harness = h;
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 3);
    const p = harness.registry.add(
      testPipeline(db, { name: 'orders', type: 'cdc', sinks: [{ sink: inMemorySink() }] }),
    );
    const engine = harness.engine({ holderId: 'server-a', leaseTtlMs: 60_000, reconcileIntervalMs: 20 });
    await engine.start();
    await engine.apply('orders', p.definition, p.hash, p.type);
    await waitForState(engine, 'orders', 'LIVE_CDC');
    await engine.pause('orders');
    expect(await harness.store.getLease('orders')).toBeUndefined();
    // Resumed on another server: it takes the lease, and the first server's keeper (stopped
    // before the release) never takes it back.
    const other = harness.engine({ holderId: 'server-b', leaseTtlMs: 60_000, reconcileIntervalMs: 20 });
    await engine.stop();
    await other.start();
    await other.resume('orders');
    await waitForState(other, 'orders', 'LIVE_CDC');
    expect((await harness.store.getLease('orders'))?.holder).toBe('server-b');
    expect(harness.log.lines.join('\n')).not.toMatch(/lost the pipeline lease/);
  });
});
