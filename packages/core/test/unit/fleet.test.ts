import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/runtime/engine.js';
import { mayTakeAnother } from '../../src/runtime/fleet.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.dispose();
  h = undefined;
});

const fleetOf = (entries: [string, number, number?][]) => ({
  others: new Map(entries.map(([id, running, capacity]) => [id, { running, capacity: capacity ?? Infinity }])),
});

describe('mayTakeAnother (the balance rule)', () => {
  it('takes a free pipeline only with room and no fewer running elsewhere', () => {
    expect(mayTakeAnother(fleetOf([]), 5, Infinity)).toBe(true);
    expect(mayTakeAnother(fleetOf([['b', 1]]), 1, Infinity)).toBe(true);
    expect(mayTakeAnother(fleetOf([['b', 0]]), 1, Infinity)).toBe(false);
    expect(mayTakeAnother(fleetOf([['b', 3]]), 2, 2)).toBe(false);
    // A server without room does not count as a better place.
    expect(mayTakeAnother(fleetOf([['b', 0, 0]]), 1, Infinity)).toBe(true);
    expect(mayTakeAnother(fleetOf([['b', 2, 2]]), 3, Infinity)).toBe(true);
  });
});

/** Which engine runs each pipeline, asked of `asker`: pipeline → server. */
async function placement(asker: Engine): Promise<Record<string, string | undefined>> {
  return Object.fromEntries((await asker.list()).map((p) => [p.name, p.server]));
}

describe('Engine in a fleet (several servers, one store)', () => {
  it('spreads six pipelines over three servers two each, each run once; every server says where each runs', async () => {
    h = await Harness.create();
    const harness = h;
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const engines = await Promise.all(
      ['s1', 's2', 's3'].map(async (id) => {
        const store = await harness.openStore();
        return harness.engine({ holderId: id, store, leaseTtlMs: 3_000, reconcileIntervalMs: 40 });
      }),
    );
    for (const e of engines) await e.start();
    const names = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
    for (const name of names) {
      const p = h.registry.add(testPipeline(db, { name, type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
      // Everything through one server, as a user's `apply` would.
      await engines[0]!.apply(name, p.definition, p.hash, p.type);
    }
    await until(async () => Object.values(await placement(engines[0]!)).every((s) => s !== undefined), 'all placed');
    for (const name of names) await waitForState(engines[0]!, name, 'LIVE_CDC');
    const placed = await placement(engines[0]!);
    const counts = new Map<string, number>();
    for (const server of Object.values(placed)) counts.set(server!, (counts.get(server!) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({ s1: 2, s2: 2, s3: 2 });
    // The same answer from every server.
    expect(await placement(engines[1]!)).toEqual(placed);
    expect(await placement(engines[2]!)).toEqual(placed);
    // Each pipeline opened its source exactly once.
    expect(db.calls.filter((c) => c.startsWith('open:'))).toHaveLength(6);
    // Each server lists only its own pipelines as running here (the others name their holder).
    const fromS2 = await engines[1]!.list();
    for (const p of fromS2) expect(p.heldBy).toBe(p.server === 's2' ? undefined : p.server);
  });

  it('hands the pipelines of a cleanly stopped server to the others, fewest first', async () => {
    h = await Harness.create();
    const harness = h;
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const [a, b, c] = await Promise.all(
      ['a', 'b', 'c'].map(async (id) =>
        harness.engine({ holderId: id, store: await harness.openStore(), leaseTtlMs: 60_000, reconcileIntervalMs: 40 }),
      ),
    );
    await a!.start();
    const names = ['q1', 'q2', 'q3'];
    for (const name of names) {
      const p = h.registry.add(testPipeline(db, { name, type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
      await a!.apply(name, p.definition, p.hash, p.type);
    }
    for (const name of names) await waitForState(a!, name, 'LIVE_CDC');
    expect(Object.values(await placement(a!))).toEqual(['a', 'a', 'a']);
    await b!.start();
    await c!.start();
    // Running pipelines are not moved to servers that join later.
    expect(Object.values(await placement(b!))).toEqual(['a', 'a', 'a']);
    // A clean stop releases the leases at once (no wait for the 60 s lease): b and c share them.
    await a!.stop();
    await until(async () => Object.values(await placement(b!)).every((s) => s === 'b' || s === 'c'), 'taken over');
    const servers = Object.values(await placement(c!)).sort();
    expect(servers.filter((s) => s === 'b').length).toBeGreaterThanOrEqual(1);
    expect(servers.filter((s) => s === 'c').length).toBeGreaterThanOrEqual(1);
    for (const name of names) await waitForState(b!, name, 'LIVE_CDC');
    // The stopped server left the fleet.
    expect((await h.store.listServers()).map((s) => s.id)).toEqual(['b', 'c']);
  });

  it('keeps to its capacity: a full server leaves a pipeline for one that has room', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const small = h.engine({ holderId: 'small', maxPipelines: 1, reconcileIntervalMs: 40 });
    await small.start();
    for (const name of ['c1', 'c2']) {
      const p = h.registry.add(testPipeline(db, { name, type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
      await small.apply(name, p.definition, p.hash, p.type);
    }
    await waitForState(small, 'c1', 'LIVE_CDC');
    expect(await placement(small)).toEqual({ c1: 'small', c2: undefined });
    expect((await small.status('c2')).state).toBe('CREATED');
    const other = h.engine({ holderId: 'other', store: await h.openStore(), reconcileIntervalMs: 40 });
    await other.start();
    await waitForState(other, 'c2', 'LIVE_CDC');
    expect(await placement(small)).toEqual({ c1: 'small', c2: 'other' });
    expect((await h.store.listServers()).find((s) => s.id === 'small')?.details).toMatchObject({ capacity: 1 });
  });

  it('deletes through any server: the holder stops the pipeline and lets it go, then it is dropped', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders', 2);
    const a = h.engine({ holderId: 'a', leaseTtlMs: 60_000, reconcileIntervalMs: 40 });
    const b = h.engine({ holderId: 'b', store: await h.openStore(), leaseTtlMs: 60_000, reconcileIntervalMs: 40 });
    await a.start();
    const p = h.registry.add(testPipeline(db, { name: 'gone', type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
    await a.apply('gone', p.definition, p.hash, p.type);
    await waitForState(a, 'gone', 'LIVE_CDC');
    await b.start();
    expect((await b.status('gone')).server).toBe('a');
    await b.delete('gone');
    expect(db.calls).toContain('drop');
    // The holder let it go before the drop (its source was closed first), and forgets it.
    const beforeDrop = db.calls.slice(0, db.calls.indexOf('drop'));
    expect(beforeDrop.lastIndexOf('close')).toBeGreaterThan(beforeDrop.findLastIndex((c) => c.startsWith('stream:')));
    expect(await a.list()).toEqual([]);
    expect(await h.store.getPipeline('gone')).toBeUndefined();
  });
});
